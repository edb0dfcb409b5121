"""The ``hookgate`` command line: the parser, ``serve`` and ``check-config``.

The admin commands are in ``admin_commands``, ``send`` and ``listen`` in
``tool_commands``, ``transform`` in ``transform_command``. Nothing here imports the
server at module level: ``serve`` loads it when it runs, so ``hookgate --help`` and
the admin commands start fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

import orjson

from hookgate import __version__, config
from hookgate.cli import (
    admin_commands,
    client,
    migrate_command,
    tool_commands,
    transform_command,
)
from hookgate.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    TOKEN_ENV,
    UsageError,
    load,
    reporting_errors,
    run,
)
from hookgate.errors import StartupError

__all__ = ["TOKEN_ENV", "main"]
Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in ``argv`` (default: ``sys.argv``); return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_FAILURE
    handler: Handler = args.handler
    try:
        return handler(args)
    except UsageError as exc:
        print(f"hookgate {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except client.CommandError as exc:
        print(f"hookgate: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`... | head`); stop quietly, and keep Python from
        # failing again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        default=argparse.SUPPRESS,
        help=f"config file (default: $HOOKGATE_CONFIG or {config.DEFAULT_PATH})",
    )
    parser = argparse.ArgumentParser(
        prog="hookgate", description="A durable webhook relay.", parents=[common]
    )
    parser.add_argument("--version", action="version", version=f"hookgate {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser("serve", parents=[common], help="run the relay daemon")
    serve.set_defaults(handler=_serve)
    check = commands.add_parser(
        "check-config",
        parents=[common],
        help="validate the config and print it resolved, secrets redacted",
        description="Validate the config and print it resolved, secrets redacted. Every "
        "error is printed, one per line, with its key and line; exit 1 if there is any. "
        "Also checks that storage.path's directory exists and is writable by the user "
        "running the check: run it as the service's user.",
    )
    check.add_argument(
        "--no-storage-check",
        dest="storage_check",
        action="store_false",
        help="skip the storage.path check (e.g. before systemd creates StateDirectory=)",
    )
    check.set_defaults(handler=_check_config)
    admin_commands.add_admin_commands(commands, common)
    tool_commands.add_send(commands, common)
    tool_commands.add_listen(commands, common)
    transform_command.add_transform(commands, common)
    migrate_command.add_migrate(commands, common)
    return parser


def _check_config(args: argparse.Namespace) -> int:
    storage_check: bool = args.storage_check
    loaded = reporting_errors(lambda path: config.load(path, check_storage=storage_check), args)
    if loaded is None:
        return EXIT_FAILURE
    sys.stdout.buffer.write(orjson.dumps(config.redacted(loaded), option=orjson.OPT_INDENT_2))
    sys.stdout.buffer.write(b"\n")
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    loaded = load(args)
    if loaded is None:
        return EXIT_CONFIG
    # Imported here, not at the top: the server (aiohttp, structlog) is most of hookgate's
    # import time, and `hookgate --help`, check-config and the admin commands need none of it.
    from hookgate import daemon, logs

    logs.configure(loaded.log)

    try:
        return run(daemon.Daemon(loaded).run())
    except StartupError as exc:
        print(f"hookgate: cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
