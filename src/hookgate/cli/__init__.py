"""The ``hookgate`` command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import orjson

from hookgate import __version__, config, providers
from hookgate.admin import answers
from hookgate.cli import client
from hookgate.errors import ConfigError, StartupError
from hookgate.wire import DELIVERY_STATES

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2  # as argparse exits on a bad command line
# EX_CONFIG from sysexits.h: the unit's RestartPreventExitStatus= names it, so a
# bad config does not become a restart loop.
EXIT_CONFIG = 78
EXIT_INTERRUPTED = 130
TOKEN_ENV = "HOOKGATE_ADMIN_TOKEN"  # noqa: S105 - the name of a variable, not a token
SCHEMES = ("none", "hmac", "standard", "github", "stripe", "shopify", "slack", "gitlab", "basic")
_T = TypeVar("_T")
Handler = Callable[[argparse.Namespace], int]
_TIMES = " (ISO 8601, unix seconds, or a duration ago such as 30m, 2h, 7d)"


class UsageError(Exception):
    """The command line asks for something that cannot be done."""


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


# -- the parser ---------------------------------------------------------------------


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
    _add_admin_commands(commands, common)
    _add_send(commands, common)
    _add_listen(commands, common)
    return parser


def _admin_options(common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False, parents=[common])
    options.add_argument(
        "--admin-url",
        metavar="URL",
        help="the admin API (default: from the config's admin.listen)",
    )
    options.add_argument(
        "--token",
        help=f"the admin bearer token (default: ${TOKEN_ENV}, else the config's admin.token)",
    )
    options.add_argument("--json", action="store_true", help="print the API's JSON")
    return options


def _add_admin_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    options = _admin_options(common)
    status = commands.add_parser(
        "status", parents=[options], help="readiness, queue and destinations; exit 1 if not ready"
    )
    status.set_defaults(handler=_status)
    _add_messages(commands, common, options)
    retry = commands.add_parser(
        "retry",
        parents=[options],
        help="make a delivery, or every dead delivery of a destination, pending again",
    )
    retry.add_argument("delivery_id", metavar="DELIVERY_ID", nargs="?", type=_positive)
    retry.add_argument("--destination", metavar="NAME", help="retry its dead deliveries")
    retry.add_argument("--since", metavar="TIME", type=_time, help="only those dead since" + _TIMES)
    retry.set_defaults(handler=_retry)
    replay = commands.add_parser(
        "replay", parents=[options], help="deliver a message again, as new deliveries"
    )
    replay.add_argument("message_id", metavar="MESSAGE_ID")
    replay.add_argument("--destination", metavar="NAME", help="only to this destination")
    replay.set_defaults(handler=_replay)
    for name, handler, text in (
        ("pause", _pause, "pause a destination: its deliveries wait"),
        ("resume", _resume, "resume a paused destination"),
    ):
        command = commands.add_parser(name, parents=[options], help=text)
        command.add_argument("name", metavar="NAME", help="the destination")
        command.set_defaults(handler=handler)


def _add_messages(
    commands: Any, common: argparse.ArgumentParser, options: argparse.ArgumentParser
) -> None:
    # Only -c here: its default is suppressed, so the action's parser cannot reset it.
    messages = commands.add_parser(
        "messages", parents=[common], help="list and show stored messages"
    )
    actions = messages.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", parents=[options], help="list messages, newest first")
    listing.add_argument("--source", metavar="S", help="only from this source")
    listing.add_argument("--event-type", metavar="T", help="only of this event type")
    listing.add_argument("--state", choices=DELIVERY_STATES, help="with a delivery in this state")
    listing.add_argument("--since", metavar="TIME", type=_time, help="received since" + _TIMES)
    listing.add_argument("--until", metavar="TIME", type=_time, help="received until" + _TIMES)
    listing.add_argument("--limit", metavar="N", type=_positive, help="at most N (API: 50)")
    listing.add_argument("--cursor", metavar="C", help="the next page, as printed by a listing")
    listing.set_defaults(handler=_messages_list)
    show = actions.add_parser(
        "show", parents=[options], help="a message with its deliveries and attempts"
    )
    show.add_argument("message_id", metavar="ID")
    show.set_defaults(handler=_messages_show)


def _add_send(commands: Any, common: argparse.ArgumentParser) -> None:
    send = commands.add_parser(
        "send", parents=[common], help="send a test webhook, signed as a provider signs"
    )
    send.add_argument("url", metavar="URL")
    send.add_argument("--scheme", choices=providers.SCHEMES, default="none", help="default: none")
    send.add_argument("--secret", metavar="S", help='the signing secret ("user:pass" for basic)')
    hmac_options = send.add_argument_group("the hmac scheme (as in a source's [verify] table)")
    hmac_options.add_argument("--header", metavar="NAME", help="the signature header")
    hmac_options.add_argument("--prefix", metavar="P", default="", help="before the signature")
    hmac_options.add_argument("--algorithm", choices=("sha1", "sha256", "sha512"), default="sha256")
    hmac_options.add_argument("--encoding", choices=("hex", "base64"), default="hex")
    hmac_options.add_argument("--timestamp-header", metavar="NAME", help="send a timestamp here")
    hmac_options.add_argument(
        "--signed-payload", metavar="TEMPLATE", default="{body}", help="default: {body}"
    )
    send.add_argument("--body-file", metavar="FILE", help="the body (default: stdin; - for stdin)")
    send.add_argument(
        "--content-type", default="application/json", metavar="TYPE", help="default: %(default)s"
    )
    send.add_argument(
        "-H",
        dest="extra_headers",
        metavar="'NAME: VALUE'",
        action="append",
        type=_header_line,
        default=[],
        help="an extra header, sent last (repeatable)",
    )
    send.set_defaults(handler=_send)


def _add_listen(commands: Any, common: argparse.ArgumentParser) -> None:
    listen = commands.add_parser(
        "listen", parents=[common], help="receive webhooks, print them, check signatures"
    )
    listen.add_argument(
        "--listen",
        default="127.0.0.1:5000",
        metavar="HOST:PORT",
        help="default: 127.0.0.1:5000 (port 0: any free port)",
    )
    listen.add_argument("--path", default="/", help="the path to answer (others: 404)")
    secret = listen.add_mutually_exclusive_group()
    secret.add_argument("--secret", metavar="whsec_...", help='check sign = "standard"')
    secret.add_argument("--hmac-secret", metavar="S", help='check sign = "hmac-sha256"')
    listen.add_argument("--status", type=_status_code, default=200, help="answer (default 200)")
    listen.set_defaults(handler=_listen)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _status_code(text: str) -> int:
    if not (text.isdigit() and 200 <= int(text) <= 599):
        raise argparse.ArgumentTypeError(f"expected an HTTP status from 200 to 599, got {text!r}")
    return int(text)


def _time(text: str) -> str:
    """ISO 8601 and unix seconds go to the API as given; a duration means that long ago."""
    try:
        ago = config.parse_duration(text)
    except ValueError:
        return text
    return str(int(time.time() - ago))


def _header_line(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


# -- serve and check-config -------------------------------------------------------------


def _load(args: argparse.Namespace) -> config.Config | None:
    return _reporting_errors(config.load, args)


def _load_admin(args: argparse.Namespace) -> config.AdminConfig | None:
    return _reporting_errors(config.load_admin, args)


def _reporting_errors(loader: Callable[[Path], _T], args: argparse.Namespace) -> _T | None:
    """Load the config named by the arguments; print each error, one per line."""
    path = config.config_path(getattr(args, "config", None))
    try:
        return loader(path)
    except ConfigError as exc:
        for line in exc.errors:
            print(f"hookgate: config error: {line}", file=sys.stderr)
        return None


def _check_config(args: argparse.Namespace) -> int:
    storage_check: bool = args.storage_check
    loaded = _reporting_errors(lambda path: config.load(path, check_storage=storage_check), args)
    if loaded is None:
        return EXIT_FAILURE
    sys.stdout.buffer.write(orjson.dumps(config.redacted(loaded), option=orjson.OPT_INDENT_2))
    sys.stdout.buffer.write(b"\n")
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if loaded is None:
        return EXIT_CONFIG
    # Imported here, not at the top: the server (aiohttp, structlog) is most of hookgate's
    # import time, and `hookgate --help`, check-config and the admin commands need none of it.
    from hookgate import daemon, logs

    logs.configure(loaded.log)

    try:
        return _run(daemon.Daemon(loaded).run())
    except StartupError as exc:
        print(f"hookgate: cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _run(coroutine: Coroutine[Any, Any, _T]) -> _T:
    try:
        import uvloop
    except ImportError:  # uvloop is not built for every platform; asyncio's loop works too
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


# -- admin commands -------------------------------------------------------------------


def _admin(args: argparse.Namespace) -> client.AdminClient:
    """The admin API client: flags and environment first, then the config."""
    token = args.token or os.environ.get(TOKEN_ENV) or None
    url: str | None = args.admin_url
    if url is None or (token is None and _config_named(args)):
        admin = _load_admin(args)
        if admin is None:
            raise client.CommandError(
                "the admin address and token come from the config; or pass --admin-url and --token"
            )
        url = url or client.admin_url(admin.listen)
        token = token or admin.token or None
    return client.AdminClient(url, token)


def _config_named(args: argparse.Namespace) -> bool:
    """Is there a config to read: one named by -c or $HOOKGATE_CONFIG, or the default file?"""
    explicit = getattr(args, "config", None) or os.environ.get("HOOKGATE_CONFIG")
    return bool(explicit) or Path(config.DEFAULT_PATH).exists()


def _show(args: argparse.Namespace, payload: Any, render: Callable[[], str]) -> None:
    print(client.json_text(payload) if args.json else render())


def _status(args: argparse.Namespace) -> int:
    api = _admin(args)
    ready, readiness = api.readiness()
    failure: client.ErrorAnswer | None = None
    try:
        stats = api.get(client.API + "/stats")
    except client.ErrorAnswer as exc:
        stats, failure = None, exc

    def render() -> str:
        parsed = None if stats is None else client.shape(stats, answers.Stats)
        return client.status_text(
            api.base_url, ready, client.shape(readiness, answers.Readiness), parsed
        )

    _show(args, {"readyz": readiness, "stats": stats}, render)
    if failure is not None:
        print(f"hookgate: {failure}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK if ready else EXIT_FAILURE


def _messages_list(args: argparse.Namespace) -> int:
    query = {
        "source": args.source,
        "event_type": args.event_type,
        "state": args.state,
        "since": args.since,
        "until": args.until,
        "limit": args.limit,
        "cursor": args.cursor,
    }
    page = _admin(args).get(client.API + "/messages", query)
    _show(args, page, lambda: client.messages_text(client.shape(page, answers.MessagePage)))
    return EXIT_OK


def _messages_show(args: argparse.Namespace) -> int:
    message = _admin(args).get(f"{client.API}/messages/{client.segment(args.message_id)}")
    _show(args, message, lambda: client.message_text(client.shape(message, answers.MessageDetail)))
    return EXIT_OK


def _retry(args: argparse.Namespace) -> int:
    if (args.delivery_id is None) == (args.destination is None):
        raise UsageError("give either a DELIVERY_ID or --destination NAME")
    if args.since is not None and args.destination is None:
        raise UsageError("--since needs --destination")
    api = _admin(args)
    if args.destination is not None:
        path = f"{client.API}/destinations/{client.segment(args.destination)}/retry"
        retried = api.post(path, {"since": args.since})
        _show(args, retried, lambda: _retried_text(args.destination, retried))
        return EXIT_OK
    delivery = api.post(f"{client.API}/deliveries/{args.delivery_id}/retry")

    def render() -> str:
        parsed = client.shape(delivery, answers.Delivery)
        return f"retried delivery {parsed.id}:\n" + client.deliveries_text([parsed])

    _show(args, delivery, render)
    return EXIT_OK


def _retried_text(destination: str, payload: Any) -> str:
    count = client.shape(payload, answers.RetryResult).retried
    retried = client.plural(count, "dead delivery", "dead deliveries")
    return f"{client.printable(destination)}: {retried} made pending again"


def _replay(args: argparse.Namespace) -> int:
    path = f"{client.API}/messages/{client.segment(args.message_id)}/replay"
    replayed = _admin(args).post(path, {"destination": args.destination})

    def render() -> str:
        deliveries = client.shape(replayed, answers.ReplayResult).deliveries
        name = client.printable(args.message_id)
        if not deliveries:
            return f"{name}: no destination matches it now; nothing replayed"
        count = client.plural(len(deliveries), "new delivery", "new deliveries")
        return f"replayed {name}: {count}\n" + client.deliveries_text(deliveries)

    _show(args, replayed, render)
    return EXIT_OK


def _pause(args: argparse.Namespace) -> int:
    return _set_paused(args, "pause")


def _resume(args: argparse.Namespace) -> int:
    return _set_paused(args, "resume")


def _set_paused(args: argparse.Namespace, action: str) -> int:
    path = f"{client.API}/destinations/{client.segment(args.name)}/{action}"
    destination = _admin(args).post(path)
    _show(
        args,
        destination,
        lambda: client.destination_text(client.shape(destination, answers.Destination)),
    )
    return EXIT_OK


# -- send and listen --------------------------------------------------------------------


def _send(args: argparse.Namespace) -> int:
    from hookgate.cli import tools  # aiohttp: loaded only by the commands that use it

    signing = _signing_options(args)
    outgoing = tools.Outgoing(
        url=args.url,
        body=_read_body(args.body_file),
        signing=signing,
        content_type=args.content_type,
        extra_headers=tuple(args.extra_headers),
    )
    response = tools.send(outgoing)
    print(f"HTTP {response.status} {response.reason}".rstrip())
    if response.body:
        print(client.printable(response.body.decode("utf-8", errors="replace"), multiline=True))
    return EXIT_OK if response.ok else EXIT_FAILURE


def _signing_options(args: argparse.Namespace) -> config.VerifyConfig:
    from hookgate.cli import tools  # aiohttp: loaded only by the commands that use it

    needs_secret = providers.get(args.scheme).needs_secret
    if not needs_secret and args.secret:
        raise UsageError("--secret needs a --scheme")
    if needs_secret and not args.secret:
        raise UsageError(f"--scheme {args.scheme} needs --secret")
    options = config.VerifyConfig(
        scheme=args.scheme,
        secrets=[args.secret] if args.secret else [],
        header=args.header,
        algorithm=args.algorithm,
        encoding=args.encoding,
        prefix=args.prefix,
        timestamp_header=args.timestamp_header,
        signed_payload=args.signed_payload,
    )
    try:
        tools.check_signing(options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return options


def _read_body(name: str | None) -> bytes:
    if name is not None and name != "-":
        try:
            return Path(name).read_bytes()
        except OSError as exc:
            raise client.CommandError(f"cannot read {name}: {exc.strerror}") from None
    if sys.stdin.isatty():
        print("hookgate: reading the body from stdin, end with Ctrl-D", file=sys.stderr)
    return sys.stdin.buffer.read()


def _listen(args: argparse.Namespace) -> int:
    from hookgate.cli import tools  # aiohttp: loaded only by the commands that use it

    try:
        host, port = config.parse_listen(args.listen)
        verifier = tools.outbound_verifier(args.secret, args.hmac_secret)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not args.path.startswith("/"):
        raise UsageError(f'expected a --path starting with "/", got {args.path!r}')
    receiver = tools.Receiver(host, port, args.path, args.status, verifier)
    try:
        _run(tools.listen(receiver))
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise client.CommandError(f"cannot listen on {args.listen}: {reason}") from None
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
