"""The daemon's garbage collector: what start-up made is set aside once it is ready."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .conftest import Daemon, wait_for


async def test_start_up_objects_are_frozen_out_of_the_collectors_way(
    start_daemon: Callable[..., Awaitable[Daemon]],
) -> None:
    # A full collection walked every object of the heap, start-up's included, and
    # stalled the event loop for tens of milliseconds under load (docs/benchmarks.md).
    daemon = await start_daemon()

    def ready() -> list[int]:
        return [e["frozen_objects"] for e in daemon.log_events() if e["event"] == "daemon.ready"]

    frozen = await wait_for(ready)
    # aiohttp, structlog, msgspec and hookgate's own modules: many thousands of objects.
    assert frozen[0] > 10_000


async def test_a_delivery_process_freezes_its_start_up_objects(
    start_daemon: Callable[..., Awaitable[Daemon]],
) -> None:
    # Its full collections paused its sends for 17-28 ms under load (docs/benchmarks.md).
    daemon = await start_daemon(server={"delivery_processes": 1})

    def serving() -> list[int]:
        return [
            e["frozen_objects"]
            for e in daemon.log_events()
            if e["event"] == "delivery_process.serving"
        ]

    frozen = await wait_for(serving)
    assert frozen[0] > 10_000
