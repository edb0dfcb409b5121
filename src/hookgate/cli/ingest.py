"""The main of an ingest process, which the daemon starts (inbound/processes.py).

Not a subcommand: the daemon runs it as ``python -c ... FD LISTEN_FDS LEVEL FORMAT``
with the socket it talks over, the ingress's listening sockets and its log settings.
"""

from __future__ import annotations

import sys
from typing import Any, cast

from hookgate import children, logs
from hookgate.cli.common import run
from hookgate.config import LogConfig
from hookgate.inbound import processes


def main() -> None:
    fd, listen_fds = int(sys.argv[1]), [int(n) for n in sys.argv[2].split(",")]
    level, form = sys.argv[3], sys.argv[4]
    children.prepare_child()
    logs.configure(LogConfig(level=cast("Any", level), format=cast("Any", form)))
    run(processes.serve_child(fd, listen_fds))
