"""The transform pool: jq in real worker processes, stopped at its time and memory limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest

from hookgate.transform import TransformFailed, TransformInput, TransformPool

REQUEST = TransformInput(
    body=orjson.dumps({"id": 7, "items": [1, 2, 3]}),
    headers=orjson.dumps({"content-type": "application/json"}),
    source="shop",
    event_type="order.created",
    message_id="msg_1",
)
RESHAPE = "{body: {order: .body.id, count: (.body.items | length)}}"


@pytest.fixture
async def pool() -> AsyncIterator[TransformPool]:
    running = TransformPool(workers=2)
    yield running
    await running.close()


async def run(pool: TransformPool, program: str, timeout: float = 30.0) -> bytes | None:
    return (await pool.run(program, REQUEST, timeout=timeout, max_size=1 << 20)).body


async def test_a_program_runs_in_a_worker(pool: TransformPool) -> None:
    assert orjson.loads(await run(pool, RESHAPE) or b"") == {"order": 7, "count": 3}


async def test_an_infinite_loop_is_stopped_and_the_worker_replaced(pool: TransformPool) -> None:
    with pytest.raises(TransformFailed, match=r"ran longer than transform_timeout \(0.3s\)"):
        await run(pool, "def forever: forever; forever", timeout=0.3)
    with pytest.raises(TransformFailed, match="ran longer than transform_timeout"):
        await run(pool, "last(repeat(1))", timeout=0.3)
    # Both slots work again: the killed processes were replaced.
    results = await asyncio.gather(*(run(pool, RESHAPE) for _ in range(4)))
    assert {orjson.loads(r or b"")["order"] for r in results} == {7}


async def test_a_program_that_eats_memory_is_stopped(pool: TransformPool) -> None:
    with pytest.raises(TransformFailed, match="the transform process died"):
        await run(pool, '{body: ("x" * 2000000000)}')
    assert await run(pool, RESHAPE) is not None


async def test_runs_beyond_the_workers_wait_their_turn(pool: TransformPool) -> None:
    """Six runs on two workers: one loops until stopped, the others all complete."""
    slow = asyncio.ensure_future(run(pool, "def forever: forever; forever", timeout=1.0))
    quick = await asyncio.gather(*(run(pool, RESHAPE) for _ in range(5)))
    assert all(orjson.loads(r or b"")["count"] == 3 for r in quick)
    with pytest.raises(TransformFailed):
        await slow


async def test_a_jq_error_leaves_the_worker_in_service() -> None:
    pool = TransformPool(workers=1)
    try:
        with pytest.raises(TransformFailed, match="jq: boom"):
            await run(pool, 'error("boom")')
        (worker,) = pool._workers
        assert await run(pool, RESHAPE) is not None
        assert pool._workers == [worker]  # the same process, not a replacement
    finally:
        await pool.close()


async def test_close_stops_every_worker() -> None:
    pool = TransformPool(workers=2)
    await asyncio.gather(run(pool, RESHAPE), run(pool, RESHAPE))
    transports = [w.transport for w in pool._workers if w.transport is not None]
    assert transports
    await pool.close()
    assert all(t.get_returncode() is not None for t in transports)
