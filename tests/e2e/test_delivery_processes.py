"""The process model's own guarantees, on the real daemon with delivery processes.

- A delivery process killed mid-request loses nothing: its requests come back as
  failed attempts, are retried, and a new process is started; the daemon (same PID)
  keeps serving.
- SIGTERM to the daemon stops it and its delivery processes; so does SIGKILL.
- systemd's READY=1, WATCHDOG=1 and STOPPING=1 come from the daemon's PID only.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import struct
from pathlib import Path
from typing import Any

import aiohttp

from .conftest import Daemon, Downstream, Reply, post, serve_command, wait_for

SOURCE = {"load": {"path": "/hooks/load", "event_type": "json:type", "event_id": "json:id"}}
QUICK_RETRIES = {"initial_backoff": "50ms", "max_backoff": "200ms", "max_attempts": 100}


def config(url: str, processes: int = 1) -> dict[str, Any]:
    return {
        "server": {"delivery_processes": processes},
        "delivery": QUICK_RETRIES,
        "sources": SOURCE,
        "destinations": {"sink": {"url": url, "sources": ["load"], "concurrency": 8}},
    }


def child_pids(daemon: Daemon) -> list[int]:
    """The delivery processes the daemon logged as started, in order."""
    return [e["pid"] for e in daemon.log_events() if e["event"] == "delivery_process.started"]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


async def send(client: aiohttp.ClientSession, daemon: Daemon, count: int, start: int) -> set[str]:
    ids = set()
    for n in range(start, start + count):
        body = json.dumps({"id": f"evt_{n}", "type": "load.test"}).encode()
        status, answer = await post(client, daemon.url("/hooks/load"), body)
        assert status == 202, answer
        ids.add(answer["id"])
    return ids


async def test_a_killed_delivery_process_loses_nothing_and_is_restarted(
    start_daemon: Any, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    # Slow answers: requests are in flight in the child when it is killed.
    downstream.default = Reply(delay=0.2)
    daemon = await start_daemon(**config(downstream.url()))
    first = (await wait_for(lambda: child_pids(daemon)))[0]
    sent = await send(client, daemon, 40, 0)
    await downstream.wait_count(8)
    os.kill(first, signal.SIGKILL)

    restarted = await wait_for(lambda: child_pids(daemon)[1:])
    assert restarted[0] != first
    assert alive(restarted[0])
    sent |= await send(client, daemon, 10, 40)
    await wait_for(lambda: daemon.delivery_states() == {"delivered": 50}, 60)
    assert daemon.running
    assert {r.webhook_id for r in downstream.requests} == sent
    exited = [e for e in daemon.log_events() if e["event"] == "delivery_process.exited"]
    assert [e["pid"] for e in exited] == [first]
    # The requests the killed process had are attempts that failed, and were retried.
    lost = daemon.query(
        "SELECT count(*) FROM attempts WHERE error = ?", ("the delivery process exited",)
    )
    assert lost[0][0] >= 1


async def test_sigterm_stops_the_daemon_and_its_delivery_processes(
    start_daemon: Any, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(**config(downstream.url(), processes=2))
    children = await wait_for(lambda: len(child_pids(daemon)) == 2 and child_pids(daemon))
    sent = await send(client, daemon, 5, 0)
    await downstream.wait_count(5)
    assert {r.webhook_id for r in downstream.requests} == sent
    assert await daemon.stop() == 0
    await wait_for(lambda: not any(alive(pid) for pid in children))


async def test_delivery_processes_die_with_a_killed_daemon(
    start_daemon: Any, downstream: Downstream
) -> None:
    daemon = await start_daemon(**config(downstream.url(), processes=2))
    children = await wait_for(lambda: len(child_pids(daemon)) == 2 and child_pids(daemon))
    daemon.kill()
    await wait_for(lambda: not any(alive(pid) for pid in children))


class CredentialedNotifySocket:
    """A NOTIFY_SOCKET that records each datagram's sender PID (SO_PASSCRED)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[tuple[int, str]] = []

    def drain(self) -> list[tuple[int, str]]:
        space = socket.CMSG_SPACE(struct.calcsize("3i"))
        while True:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(4096, space)
            except BlockingIOError:
                return self.messages
            pid = next(
                struct.unpack("3i", payload)[0]
                for level, kind, payload in ancillary
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
            )
            self.messages += [(pid, line) for line in data.decode().splitlines()]

    def senders(self, message: str) -> list[int]:
        return [pid for pid, line in self.drain() if line == message]


async def test_systemd_notifications_come_from_the_daemon_only(
    tmp_path: Path, downstream: Downstream
) -> None:
    notify = CredentialedNotifySocket(tmp_path / "notify.sock")
    folder = tmp_path / "daemon"
    folder.mkdir()
    daemon = Daemon(folder, config(downstream.url(), processes=2))
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "200000"}
    proc = await asyncio.create_subprocess_exec(
        *serve_command(daemon.config_path),
        cwd=folder,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await wait_for(lambda: notify.senders("READY=1"))
        await wait_for(lambda: len(notify.senders("WATCHDOG=1")) >= 3)
        await wait_for(lambda: len(_children_of(proc.pid)) == 2)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        await wait_for(lambda: notify.senders("STOPPING=1"))
        senders = {pid for pid, _ in notify.drain()}
        assert senders == {proc.pid}
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        notify.sock.close()


def _children_of(pid: int) -> list[int]:
    """The PIDs whose parent is ``pid`` (from /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
    return children
