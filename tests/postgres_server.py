"""A private PostgreSQL server for the tests: Debian's binaries, a temp folder, a free port.

``PostgresServer.start()`` runs ``initdb`` in a new temp folder and ``postgres`` on a
free port of 127.0.0.1 (its unix socket in the same folder), and ``stop()`` ends it
and removes the folder. initdb and postgres refuse to run as root, so as root (CI)
they run as the ``postgres`` user Debian's package creates (or ``nobody``), and the
folder is theirs. ``new_database()`` hands each test a database of its own.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

HOST = "127.0.0.1"
USER = "hookgate"
START_TIMEOUT = 30.0


def find_binaries() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin with initdb and postgres, if any."""
    found = [
        Path(folder)
        for folder in glob.glob("/usr/lib/postgresql/*/bin")
        if os.access(Path(folder) / "initdb", os.X_OK)
        and os.access(Path(folder) / "postgres", os.X_OK)
    ]
    return max(found, key=lambda p: int(p.parent.name), default=None) if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _server_user() -> pwd.struct_passwd | None:
    """Who runs the server: None (ourselves) unless we are root."""
    if os.getuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root, and neither user postgres nor nobody exists")


class PostgresServer:
    def __init__(self, binaries: Path, *, durable: bool = False) -> None:
        self.binaries = binaries
        self.durable = durable
        self.folder = Path(tempfile.mkdtemp(prefix="hookgate-pg-"))
        self.port = _free_port()
        self._user = _server_user()
        self._process: subprocess.Popen[bytes] | None = None
        self._databases = 0

    @property
    def admin_url(self) -> str:
        return f"postgresql://{USER}@{HOST}:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://{USER}@{HOST}:{self.port}/{database}"

    def _as_user(self) -> dict[str, object]:
        """Popen arguments that run the process as the server's user."""
        if self._user is None:
            return {}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}

    def start(self) -> None:
        data = self.folder / "data"
        if self._user is not None:
            os.chown(self.folder, self._user.pw_uid, self._user.pw_gid)
        initdb = [str(self.binaries / "initdb"), "-D", str(data), "-U", USER]
        subprocess.run(
            [*initdb, "-A", "trust", "-E", "UTF8", "--no-sync"],
            check=True,
            capture_output=True,
            cwd=self.folder,
            **self._as_user(),  # type: ignore[call-overload]
        )
        log = open(self.folder / "server.log", "wb")
        settings = {
            "listen_addresses": HOST,
            "unix_socket_directories": str(self.folder),
            "max_connections": "300",  # room for several daemons' pools at once
        }
        if not self.durable:
            # Tests prove what hookgate does, not the disk (a benchmark keeps fsync on).
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        options = [arg for name, value in settings.items() for arg in ("-c", f"{name}={value}")]
        self._process = subprocess.Popen(
            [str(self.binaries / "postgres"), "-D", str(data), "-p", str(self.port), *options],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.folder,
            **self._as_user(),  # type: ignore[call-overload]
        )
        log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(
                    "postgres exited at start: " + (self.folder / "server.log").read_text()
                )
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def new_database(self) -> str:
        """The URL of a new, empty database."""
        self._databases += 1
        name = f"test_{self._databases}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")  # a name made here, not input
        return self.url(name)

    def stop(self) -> None:
        if self._process is not None:
            # SIGINT is PostgreSQL's fast shutdown; SIGTERM's "smart" one waits for clients.
            self._process.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=1)
            if self._process.poll() is None:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
