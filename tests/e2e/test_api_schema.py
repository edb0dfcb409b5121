"""schemathesis against the live daemon's admin API, driven by its own OpenAPI document."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from hookgate.admin import api

from .conftest import Daemon, Downstream

TOKEN = "schema-test-token"
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    ]
)


@pytest.mark.slow  # schemathesis generates and sends hundreds of requests
async def test_schemathesis_finds_no_server_error_and_no_schema_break(
    start_daemon: Callable[..., Awaitable[Daemon]], downstream: Downstream
) -> None:
    daemon = await start_daemon(
        admin={"token": TOKEN},
        sources={"shop": {"path": "/hooks/shop", "event_type": "json:type"}},
        destinations={
            "orders": {"url": downstream.url(), "sources": ["shop"]},
            "gone": {"url": downstream.url("/gone"), "sources": ["shop"], "max_attempts": 1},
        },
    )
    async with aiohttp.ClientSession() as http:
        for i in range(5):
            body = f'{{"type": "order.created", "n": {i}}}'
            async with http.post(daemon.url("/hooks/shop"), data=body) as response:
                assert response.status == 202
        # The document served is the one generated from the route table (no token needed).
        async with http.get(daemon.admin_url("/api/v1/openapi.json")) as response:
            assert response.status == 200
            assert await response.json() == api.openapi_document()
    await downstream.wait_count(5)

    st = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert st is not None, "schemathesis is a test dependency: pip install -e '.[test]'"
    proc = await asyncio.create_subprocess_exec(
        st,
        "run",
        daemon.admin_url("/api/v1/openapi.json"),
        "-H",
        f"Authorization: Bearer {TOKEN}",
        "--checks",
        CHECKS,
        "--max-examples",
        "25",
        "--workers",
        "1",
        "--seed",
        "1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=240)
    report = out.decode(errors="replace")
    assert proc.returncode == 0, report
    assert "passed" in report
    assert "Traceback" not in daemon.stdout() + daemon.stderr()
