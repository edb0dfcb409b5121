"""dist/hookgate, the one-file download, run the way a user runs it.

Copied alone into an empty folder and run by Debian's /usr/bin/python3, in an
environment with no venv on PATH and no PYTHONPATH: it must bring every library
itself (unpacked into $HOME/.shiv on first use).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

HOST = "127.0.0.1"
WAIT = 20.0  # a bound for waiting, not an expectation of speed


@pytest.fixture
def zipapp(release, tmp_path: Path) -> Path:
    """The zipapp, alone in a fresh folder."""
    folder = tmp_path / "download"
    folder.mkdir()
    return Path(shutil.copy2(release.zipapp, folder / "hookgate"))


def run_zipapp(
    python: str, zipapp: Path, *args: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, str(zipapp), *args],
        env=env,
        cwd=zipapp.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def test_version_with_nothing_but_the_system_python(
    release, zipapp: Path, system_python: str, bare_env: dict[str, str]
) -> None:
    assert "VIRTUAL_ENV" not in bare_env and "PYTHONPATH" not in bare_env
    result = run_zipapp(system_python, zipapp, "--version", env=bare_env)
    assert (result.returncode, result.stdout) == (0, f"hookgate {release.version}\n"), result.stderr
    # Its shebang finds python3 on PATH: /usr/bin here.
    direct = subprocess.run(
        [str(zipapp), "--version"], env=bare_env, capture_output=True, text=True, check=False
    )
    assert direct.stdout == result.stdout, direct.stderr
    assert list((Path(bare_env["HOME"]) / ".shiv").glob("hookgate_*/site-packages"))


def test_libraries_come_from_the_zipapp_not_the_venv(
    zipapp: Path, system_python: str, bare_env: dict[str, str]
) -> None:
    """SHIV_INTERPRETER=1 makes the zipapp a Python prompt with its own libraries."""
    probe = (
        "import json, sys, aiohttp, hookgate, msgspec, orjson, uvloop\n"
        "print(json.dumps({'prefix': sys.prefix, 'executable': sys.executable,"
        " 'modules': [m.__file__ for m in (aiohttp, hookgate, msgspec, orjson, uvloop)]}))"
    )
    env = {**bare_env, "SHIV_INTERPRETER": "1"}
    result = run_zipapp(system_python, zipapp, "-c", probe, env=env)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert Path(found["prefix"]).resolve() != Path(sys.prefix).resolve()
    assert found["executable"] == system_python
    shiv_root = Path(bare_env["HOME"]) / ".shiv"
    for module in found["modules"]:
        assert Path(module).is_relative_to(shiv_root), module
    # python -m hookgate works inside it too.
    module_run = run_zipapp(system_python, zipapp, "-m", "hookgate", "--version", env=env)
    assert module_run.stdout.startswith("hookgate "), module_run.stderr


def relay_config(folder: Path, ingress: int, admin: int, receiver: int, secret: str) -> Path:
    path = folder / "config.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [server]
            listen = "{HOST}:{ingress}"
            shutdown_grace = "5s"

            [admin]
            listen = "{HOST}:{admin}"

            [storage]
            path = "hookgate.db"

            [sources.shop]
            path = "/hooks/shop"
            [sources.shop.verify]
            scheme = "hmac"
            header = "X-Signature"
            secrets = ["shop-secret"]

            [destinations.receiver]
            url = "http://{HOST}:{receiver}/in"
            sources = ["shop"]
            sign = "standard"
            secret = "{secret}"
            """
        ),
        encoding="utf-8",
    )
    return path


def test_check_config(zipapp: Path, system_python: str, bare_env: dict[str, str]) -> None:
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    config = relay_config(zipapp.parent, 8080, 9090, 5000, secret)
    result = run_zipapp(system_python, zipapp, "check-config", "-c", str(config), env=bare_env)
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)
    assert list(resolved["sources"]) == ["shop"]
    assert resolved["destinations"]["receiver"]["secret"] == "***"

    config.write_text(config.read_text() + "\n[sources.shop.typo]\nx = 1\n", encoding="utf-8")
    broken = run_zipapp(system_python, zipapp, "check-config", "-c", str(config), env=bare_env)
    assert broken.returncode == 1
    assert "typo" in broken.stderr + broken.stdout


def test_a_transform_runs_in_a_worker_started_from_the_zipapp(
    zipapp: Path, system_python: str, bare_env: dict[str, str]
) -> None:
    """Transform workers are `python -m hookgate.transform` children: from the zipapp
    too (they must find hookgate and jq in its unpacked folder), and filters load."""
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    config = relay_config(zipapp.parent, 8080, 9090, 5000, secret)
    config.write_text(
        config.read_text()
        + "transform = '{body: {n: (.body.n + 1)}}'\n"
        + 'filter = { body = { name = { "$regex" = "^a+$" } } }\n',
        encoding="utf-8",
    )
    body = zipapp.parent / "body.json"
    body.write_text('{"n": 41, "name": "aaa"}', encoding="utf-8")
    result = run_zipapp(
        system_python, zipapp, "transform", "-c", str(config), "--destination", "receiver",
        "--file", str(body), "--json", env=bare_env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(json.loads(result.stdout)["body"]) == {"n": 42}


class Receiver:
    """A destination on 127.0.0.1 that records what it is sent."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, dict[str, str]]] = asyncio.Queue()
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        await self.received.put((await request.read(), dict(request.headers)))
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    app = web.Application()
    app.router.add_post("/in", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    server.port = runner.addresses[0][1]
    yield server
    await runner.cleanup()


async def wait_ready(
    session: aiohttp.ClientSession, url: str, proc: asyncio.subprocess.Process, log: Path
) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            output = log.read_text(errors="replace")
            raise AssertionError(f"hookgate exited {proc.returncode} before ready:\n{output}")
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(url) as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never answered 200 within {WAIT}s")


async def test_serve_relays_a_webhook_and_stops_on_sigterm(
    zipapp: Path, system_python: str, bare_env: dict[str, str], receiver: Receiver
) -> None:
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    ingress, admin = free_port(), free_port()
    config = relay_config(zipapp.parent, ingress, admin, receiver.port, secret)
    log_path = zipapp.parent / "hookgate.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            system_python, str(zipapp), "serve", "-c", str(config),
            env=bare_env, cwd=zipapp.parent, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, f"http://{HOST}:{admin}/readyz", proc, log_path)
            body = b'{"type": "order.created", "id": "evt_1"}'
            signature = hmac.new(b"shop-secret", body, hashlib.sha256).hexdigest()
            async with session.post(
                f"http://{HOST}:{ingress}/hooks/shop",
                data=body,
                headers={"Content-Type": "application/json", "X-Signature": signature},
            ) as response:
                assert response.status == 202, await response.text()
            # Package data (admin/openapi.json), read beside the module in the unpacked copy.
            async with session.get(f"http://{HOST}:{admin}/api/v1/openapi.json") as response:
                assert response.status == 200
                assert "openapi" in await response.json()
        delivered, headers = await asyncio.wait_for(receiver.received.get(), WAIT)
        assert delivered == body
        Webhook(secret).verify(delivered, headers)

        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), WAIT)
        assert code == 0, log_path.read_text(errors="replace")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
