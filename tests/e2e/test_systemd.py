"""hookgate under systemd: the sd_notify protocol, and the unit in systemd/.

- The real daemon is started with ``NOTIFY_SOCKET`` pointing at a datagram socket
  the test binds (a path, and an abstract ``@name``) and ``WATCHDOG_USEC`` set, as
  systemd does for ``Type=notify`` with ``WatchdogSec=``.
- ``systemd-analyze verify`` and ``security --offline`` check the unit file.
- The daemon relays a webhook under the unit's own system-call filter, address
  families and MemoryDenyWriteExecute (applied with seccomp and PR_SET_MDWE, as
  systemd applies them before exec), so the hardening cannot stop it working.

``systemd-analyze`` (Debian package systemd) and the libseccomp bindings
(python3-seccomp) are installed by ``.ci/setup``; when missing the tests fail.
"""

from __future__ import annotations

import base64
import ctypes
import errno
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO

import aiohttp
import pytest
from standardwebhooks.webhooks import Webhook

from hookgate import cli, config

from .conftest import (
    HOST,
    START_TIMEOUT,
    STOP_TIMEOUT,
    Downstream,
    free_port,
    post,
    to_toml,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "hookgate.service"
# The console script of this venv, which the copied unit's ExecStart= points at.
HOOKGATE = Path(sys.executable).parent / "hookgate"
# The interpreter that has Debian's python3-seccomp (the venv's may be another build).
SYSTEM_PYTHON = "/usr/bin/python3"
WATCHDOG_USEC = 200_000
PR_GET_MDWE = 66  # linux/prctl.h, Linux >= 6.3


def require_systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze is not installed: run .ci/setup (Debian package systemd)")
    return path


# -- the notify socket ----------------------------------------------------------------


class NotifySocket:
    """The service manager's end: an AF_UNIX datagram socket that collects messages."""

    def __init__(self, address: str) -> None:
        """``address`` is what NOTIFY_SOCKET holds: a path, or "@name" (abstract)."""
        self.address = address
        self.messages: list[str] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.setblocking(False)

    def close(self) -> None:
        self.sock.close()

    def drain(self) -> list[str]:
        """Read what has arrived; each datagram holds newline-separated assignments."""
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return self.messages
            self.messages += data.decode().splitlines()

    def count(self, message: str) -> int:
        return self.drain().count(message)

    async def wait(self, message: str, times: int = 1, *, daemon: Spawned) -> None:
        def arrived() -> bool:
            if self.count(message) >= times:
                return True
            if daemon.proc.poll() is not None:
                raise AssertionError(f"hookgate exited before {message}: {daemon.describe()}")
            return False

        await wait_for(
            arrived,
            START_TIMEOUT,
            message=lambda: f"{times}x {message}; got {self.messages}; {daemon.describe()}",
        )


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NotifySocket]:
    if request.param == "path":
        address = str(tmp_path / "notify.sock")
        if len(address.encode()) >= 108:  # sun_path is 108 bytes
            pytest.fail(f"tmp_path too long for an AF_UNIX address: {address}")
    else:
        address = f"@hookgate-test-{secrets.token_hex(8)}"
    sock = NotifySocket(address)
    yield sock
    sock.close()


# -- the daemon -----------------------------------------------------------------------


class Spawned:
    """``hookgate serve`` started as systemd would: environment and, optionally, a sandbox."""

    def __init__(self, folder: Path, settings: dict[str, object]) -> None:
        self.folder = folder
        self.ingress_port = free_port()
        self.admin_port = free_port()
        base: dict[str, object] = {
            "server": {"listen": f"{HOST}:{self.ingress_port}", "shutdown_grace": "5s"},
            "admin": {"listen": f"{HOST}:{self.admin_port}"},
            # Absolute, as the unit's config must be (StateDirectory=).
            "storage": {"path": str(folder / "state" / "hookgate.db")},
            "sources": {"shop": {"path": "/hooks/shop"}},
        }
        base.update(settings)
        (folder / "state").mkdir()
        self.config_path = folder / "hookgate.toml"
        self.config_path.write_text(to_toml(base), encoding="utf-8")
        self.stdout_path = folder / "daemon.stdout"
        self.stderr_path = folder / "daemon.stderr"
        self._files: list[IO[bytes]] = []
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        assert self._proc is not None, "not started"
        return self._proc

    def start(self, env: dict[str, str], prefix: tuple[str, ...] = ()) -> Spawned:
        stdout, stderr = self.stdout_path.open("wb"), self.stderr_path.open("wb")
        self._files += [stdout, stderr]
        environ = {
            k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")
        }
        self._proc = subprocess.Popen(
            [*prefix, str(HOOKGATE), "serve", "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            cwd=self.folder,
            env={**environ, **env},
        )
        return self

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.ingress_port}{path}"

    async def wait_exit(self) -> int:
        await wait_for(lambda: self.proc.poll() is not None, STOP_TIMEOUT, message=self.describe)
        return int(self.proc.returncode)

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        for file in self._files:
            file.close()

    def describe(self) -> str:
        code = self.proc.poll()
        stdout = self.stdout_path.read_text(errors="replace")[-3000:]
        stderr = self.stderr_path.read_text(errors="replace")[-3000:]
        return f"exit code {code};\nstderr:\n{stderr}\nstdout:\n{stdout}"


@pytest.fixture
def spawned() -> Iterator[list[Spawned]]:
    daemons: list[Spawned] = []
    yield daemons
    for daemon in daemons:
        daemon.close()


def accepts_connections(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=2).close()
    except OSError:
        return False
    return True


# -- sd_notify ------------------------------------------------------------------------


async def test_ready_watchdog_and_stopping_notifications(
    notify_socket: NotifySocket, spawned: list[Spawned], tmp_path: Path
) -> None:
    daemon = Spawned(tmp_path, {})
    spawned.append(daemon)
    daemon.start({"NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": str(WATCHDOG_USEC)})

    await notify_socket.wait("READY=1", daemon=daemon)
    # READY=1 means listening: both ports take connections now, with no retrying.
    assert accepts_connections(daemon.ingress_port), daemon.describe()
    assert accepts_connections(daemon.admin_port), daemon.describe()
    async with aiohttp.ClientSession() as session:
        status, answer = await post(session, daemon.url("/hooks/shop"), b'{"n": 1}')
    assert status == 202, answer

    # Pings at WATCHDOG_USEC / 2 (how fast is not asserted: only that they keep coming).
    await notify_socket.wait("WATCHDOG=1", times=2, daemon=daemon)

    daemon.proc.send_signal(signal.SIGTERM)
    assert await daemon.wait_exit() == 0, daemon.describe()
    messages = notify_socket.drain()
    assert messages.count("READY=1") == 1, messages
    assert messages.count("STOPPING=1") == 1, messages
    assert messages.index("READY=1") < messages.index("STOPPING=1"), messages


async def test_no_watchdog_pings_unless_asked(
    notify_socket: NotifySocket, spawned: list[Spawned], tmp_path: Path
) -> None:
    daemon = Spawned(tmp_path, {})
    spawned.append(daemon)
    daemon.start({"NOTIFY_SOCKET": notify_socket.address})
    await notify_socket.wait("READY=1", daemon=daemon)
    daemon.proc.send_signal(signal.SIGTERM)
    assert await daemon.wait_exit() == 0, daemon.describe()
    assert "WATCHDOG=1" not in notify_socket.drain()


async def test_bad_config_exits_78_without_ready(
    notify_socket: NotifySocket, spawned: list[Spawned], tmp_path: Path
) -> None:
    """Exit 78 is what the unit's RestartPreventExitStatus= names: no restart loop."""
    daemon = Spawned(tmp_path, {"unknown_table": {"key": 1}})
    spawned.append(daemon)
    daemon.start({"NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": str(WATCHDOG_USEC)})
    assert await daemon.wait_exit() == cli.EXIT_CONFIG, daemon.describe()
    # Everything sent before the exit is queued on our socket already.
    assert notify_socket.drain() == []


# -- the unit file --------------------------------------------------------------------


def unit_directives(text: str) -> dict[str, list[str]]:
    """Key → values of the active lines (comments and section headers left out)."""
    directives: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            directives.setdefault(key.strip(), []).append(value.strip())
    return directives


def copy_unit(folder: Path, *, enable_optional: bool = False) -> Path:
    """The unit, with ExecStart= pointing at this venv's hookgate (which exists here).

    ``enable_optional`` also uncomments every "#Key=value" line: the optional
    directives the unit offers must parse too.
    """
    text = UNIT.read_text(encoding="utf-8")
    exec_start = "ExecStart=/usr/local/bin/hookgate "
    assert text.count(exec_start) == 1, "the unit's ExecStart= changed: update this test"
    text = text.replace(exec_start, f"ExecStart={HOOKGATE} ")
    if enable_optional:
        text = re.sub(r"(?m)^#(?=[A-Z][A-Za-z]+=)", "", text)
    path = folder / "hookgate.service"
    path.write_text(text, encoding="utf-8")
    return path


def verify(analyze: str, unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [analyze, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def require_verify_works(analyze: str, folder: Path) -> None:
    """Skip only when systemd-analyze cannot verify even a trivial unit here."""
    control = folder / "control" / "control.service"
    control.parent.mkdir()
    control.write_text("[Service]\nType=oneshot\nExecStart=/bin/true\n", encoding="utf-8")
    result = verify(analyze, control)
    if result.returncode != 0 or result.stdout or result.stderr:
        pytest.skip(
            "systemd-analyze verify fails on a trivial known-good unit in this environment"
            f" (exit {result.returncode}): {(result.stderr or result.stdout).strip()[:500]}"
        )


@pytest.mark.parametrize("enable_optional", [False, True], ids=["as-shipped", "optional-on"])
def test_unit_verifies_cleanly(tmp_path: Path, enable_optional: bool) -> None:
    analyze = require_systemd_analyze()
    require_verify_works(analyze, tmp_path)
    unit = copy_unit(tmp_path, enable_optional=enable_optional)
    result = verify(analyze, unit)
    # Unknown keys and bad values are only warnings (exit 0): any output fails.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_unit_sandbox_exposure_stays_low(tmp_path: Path) -> None:
    """systemd's own hardening score (0 = locked down, 10 = none): guards against losing it."""
    analyze = require_systemd_analyze()
    unit = copy_unit(tmp_path)
    result = subprocess.run(
        [analyze, "security", "--offline=yes", "--threshold=20", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    summary = [line for line in result.stdout.splitlines() if "Overall exposure" in line]
    assert result.returncode == 0, f"exposure above 2.0: {summary}\n{result.stdout}{result.stderr}"
    assert summary, result.stdout


def test_unit_matches_the_daemon() -> None:
    """The unit's promises about the daemon hold: notify, exit codes, paths, timeouts."""
    unit = unit_directives(UNIT.read_text(encoding="utf-8"))
    assert unit["Type"] == ["notify"]
    assert unit["ExecStart"] == [f"/usr/local/bin/hookgate serve -c {config.DEFAULT_PATH}"]
    assert unit["RestartPreventExitStatus"] == [str(cli.EXIT_CONFIG)]
    assert unit["Restart"] == ["on-failure"]
    assert unit["StateDirectory"] == ["hookgate"]
    assert unit["DynamicUser"] == ["yes"]
    # SIGTERM drains the ingress and then the deliveries, each for up to
    # shutdown_grace: systemd must not SIGKILL during that.
    grace = float(config.ServerConfig().shutdown_grace)
    assert seconds(unit["TimeoutStopSec"][0]) > 2 * grace
    # The watchdog ping comes every WatchdogSec/2 from the event loop.
    assert seconds(unit["WatchdogSec"][0]) >= 10


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", value)
    assert match, f"unexpected time span {value!r}"
    return int(match[1]) * (60 if match[2] == "min" else 1)


# -- the sandbox ----------------------------------------------------------------------

# Runs under the system Python (which has python3-seccomp), applies the filter and
# the MDWE flag, then execs hookgate: seccomp filters and MDWE survive execve, so
# hookgate starts exactly as systemd would start it with these settings.
SANDBOX = textwrap.dedent(
    """
    import ctypes, errno, json, os, sys
    import seccomp

    PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1  # linux/prctl.h, Linux >= 6.3

    spec = json.loads(sys.argv[1])
    # Anything outside the allow list kills: stricter than the unit's EPERM, so an
    # unplanned system call shows up as a crash instead of a silent fallback.
    rules = seccomp.SyscallFilter(defaction=seccomp.KILL_PROCESS)
    for name in spec["allow"]:
        if name == "socket":
            continue  # allowed per address family below
        try:
            rules.add_rule(seccomp.ALLOW, name)
        except (RuntimeError, ValueError, OSError):
            pass  # not a system call on this architecture / libseccomp
    for name in spec["deny"]:
        try:
            rules.add_rule(seccomp.ERRNO(spec["deny_errno"]), name)
        except (RuntimeError, ValueError, OSError):
            pass
    # RestrictAddressFamilies=: other families fail with EAFNOSUPPORT, as systemd does.
    for family in range(64):
        allowed = family in spec["families"]
        action = seccomp.ALLOW if allowed else seccomp.ERRNO(errno.EAFNOSUPPORT)
        rules.add_rule(action, "socket", seccomp.Arg(0, seccomp.EQ, family))
    if spec["mdwe"]:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
            sys.exit(f"sandbox: PR_SET_MDWE failed, errno {ctypes.get_errno()}")
    rules.load()  # also sets no_new_privs, as NoNewPrivileges=yes does
    os.execv(sys.argv[2], sys.argv[2:])
    """
)


def syscall_group(analyze: str, name: str) -> set[str]:
    """The system calls of a systemd group such as @system-service, nested groups expanded."""
    if not name.startswith("@"):
        return {name}
    listing = subprocess.run(
        [analyze, "syscall-filter", "--no-pager", name],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    calls: set[str] = set()
    for line in listing.splitlines()[1:]:
        entry = line.strip()
        if entry and not entry.startswith("#"):
            calls |= syscall_group(analyze, entry)
    return calls


def sandbox_spec(analyze: str) -> dict[str, object]:
    """The unit's SystemCallFilter=, RestrictAddressFamilies= and MemoryDenyWriteExecute=."""
    unit = unit_directives(UNIT.read_text(encoding="utf-8"))
    allow: set[str] = set()
    deny: set[str] = set()
    for value in unit["SystemCallFilter"]:
        target = deny if value.startswith("~") else allow
        for name in value.removeprefix("~").split():
            target |= syscall_group(analyze, name)
    families = [getattr(socket, name) for name in unit["RestrictAddressFamilies"][0].split()]
    error_number = getattr(errno, unit["SystemCallErrorNumber"][0])
    assert unit["SystemCallArchitectures"] == ["native"]  # libseccomp's default too
    return {
        "allow": sorted(allow - deny),
        "deny": sorted(deny),
        "deny_errno": error_number,
        "families": families,
        "mdwe": unit["MemoryDenyWriteExecute"] == ["yes"],
    }


def require_sandbox_tools() -> None:
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import seccomp"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        pytest.fail(
            f"{SYSTEM_PYTHON} cannot import seccomp: run .ci/setup (Debian package"
            f" python3-seccomp)\n{probe.stderr[-500:]}"
        )
    if unit_directives(UNIT.read_text(encoding="utf-8"))["MemoryDenyWriteExecute"] == ["yes"]:
        libc = ctypes.CDLL(None, use_errno=True)
        # PR_GET_MDWE answers -1/EINVAL on kernels without the feature.
        if libc.prctl(PR_GET_MDWE, 0, 0, 0, 0) < 0:
            pytest.skip(
                f"this kernel ({os.uname().release}) has no PR_SET_MDWE (Linux >= 6.3),"
                " so MemoryDenyWriteExecute= cannot be reproduced outside systemd"
            )


@pytest.fixture
async def downstream_server() -> AsyncIterator[Downstream]:
    server = await Downstream().start()
    yield server
    await server.close()


async def test_daemon_relays_under_the_units_sandbox(
    notify_socket: NotifySocket,
    spawned: list[Spawned],
    downstream_server: Downstream,
    tmp_path: Path,
) -> None:
    """Start, receive, deliver (DNS name, signed with a LoadCredential= secret), reload, stop."""
    analyze = require_systemd_analyze()
    require_sandbox_tools()
    sandbox = tmp_path / "sandbox.py"
    sandbox.write_text(SANDBOX, encoding="utf-8")
    credentials = tmp_path / "credentials"  # what LoadCredential= makes
    credentials.mkdir()
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    (credentials / "receiver.key").write_text(secret + "\n", encoding="utf-8")
    daemon = Spawned(
        tmp_path,
        {
            "destinations": {
                "receiver": {
                    # A host name, so the resolver runs inside the sandbox too.
                    "url": f"http://localhost:{downstream_server.port}/in",
                    "sources": ["shop"],
                    "sign": "standard",
                    "secret_file": "receiver.key",
                }
            },
        },
    )
    spawned.append(daemon)
    spec = json.dumps(sandbox_spec(analyze))
    daemon.start(
        {
            "NOTIFY_SOCKET": notify_socket.address,
            "WATCHDOG_USEC": str(WATCHDOG_USEC),
            "CREDENTIALS_DIRECTORY": str(credentials),
        },
        prefix=(SYSTEM_PYTHON, str(sandbox), spec),
    )

    await notify_socket.wait("READY=1", daemon=daemon)
    await notify_socket.wait("WATCHDOG=1", times=2, daemon=daemon)
    body = b'{"type": "order.created", "n": 1}'
    async with aiohttp.ClientSession() as session:
        status, answer = await post(session, daemon.url("/hooks/shop"), body)
    assert status == 202, answer
    (received,) = await downstream_server.wait_count(1)
    assert received.body == body
    Webhook(secret).verify(body, dict(received.headers))

    # ExecReload= sends SIGHUP: the config is re-read inside the sandbox too.
    daemon.proc.send_signal(signal.SIGHUP)
    await wait_for(
        lambda: '"config.reloaded"' in daemon.stdout_path.read_text(errors="replace"),
        START_TIMEOUT,
        message=daemon.describe,
    )
    assert daemon.proc.poll() is None, daemon.describe()

    daemon.proc.send_signal(signal.SIGTERM)
    code = await daemon.wait_exit()
    assert code != -signal.SIGSYS, f"a system call outside the unit's filter: {daemon.describe()}"
    assert code == 0, daemon.describe()
    assert notify_socket.count("STOPPING=1") == 1


def test_sandbox_would_catch_a_forbidden_call(tmp_path: Path) -> None:
    """The sandbox is real: a call outside the filter kills, a W+X mapping is refused."""
    analyze = require_systemd_analyze()
    require_sandbox_tools()
    sandbox = tmp_path / "sandbox.py"
    sandbox.write_text(SANDBOX, encoding="utf-8")
    spec = json.dumps(sandbox_spec(analyze))
    probes = {
        # syslog(2) (here only asking the kernel log's size) is in no group the unit
        # allows: killed by SIGSYS.
        "import ctypes; ctypes.CDLL(None).klogctl(10, None, 0)": -signal.SIGSYS,
        # chroot(2) is in @privileged, which the unit takes out again: EPERM.
        "import os\ntry:\n os.chroot('/')\nexcept OSError as e:\n raise SystemExit(e.errno)": (
            errno.EPERM
        ),
        # AF_PACKET is not in RestrictAddressFamilies=: EAFNOSUPPORT.
        "import socket\ntry:\n socket.socket(socket.AF_PACKET)\nexcept OSError as e:\n"
        " raise SystemExit(e.errno)": errno.EAFNOSUPPORT,
        # An anonymous mapping both writable and executable: refused by MDWE.
        "import mmap\ntry:\n mmap.mmap(-1, 4096, prot=7)\nexcept OSError as e:\n"
        " raise SystemExit(e.errno)": errno.EACCES,
    }
    for code, expected in probes.items():
        result = subprocess.run(
            [SYSTEM_PYTHON, str(sandbox), spec, sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == expected, (code, result.returncode, result.stderr[-1000:])
