"""The main of a delivery process, which the daemon starts (outbound/processes.py).

Not a subcommand: the daemon runs it as ``python -c ... FD LEVEL FORMAT`` with the
socket it talks over and its own log settings.
"""

from __future__ import annotations

import sys
from typing import Any, cast

from hookgate import children, logs
from hookgate.cli.common import run
from hookgate.config import LogConfig
from hookgate.outbound import processes


def main() -> None:
    fd, level, form = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    children.prepare_child()
    logs.configure(LogConfig(level=cast("Any", level), format=cast("Any", form)))
    run(processes.serve_child(fd))
