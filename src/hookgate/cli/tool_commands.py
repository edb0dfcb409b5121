"""`hookgate send` and `hookgate listen`: a signed test webhook out, a checking receiver in.

``hookgate.cli.tools`` (aiohttp) is imported inside the commands, so that the rest
of the CLI starts without it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from hookgate import config, providers
from hookgate.cli import client
from hookgate.cli.common import EXIT_FAILURE, EXIT_OK, UsageError, run, status_code


def add_send(commands: Any, common: argparse.ArgumentParser) -> None:
    send = commands.add_parser(
        "send", parents=[common], help="send a test webhook, signed as a provider signs"
    )
    send.add_argument("url", metavar="URL")
    send.add_argument(
        "--provider",
        "--scheme",
        dest="scheme",
        choices=providers.SCHEMES,
        default="none",
        metavar="NAME",
        help="sign as this provider (a scheme name; default: none): "
        + ", ".join(providers.SCHEMES),
    )
    send.add_argument("--secret", metavar="S", help='the signing secret ("user:pass" for basic)')
    send.add_argument(
        "--key-file",
        metavar="PEM",
        help="the private key to sign with, for the key-pair schemes "
        "(sendgrid, discord, ed25519, paypal)",
    )
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


def add_listen(commands: Any, common: argparse.ArgumentParser) -> None:
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
    listen.add_argument("--status", type=status_code, default=200, help="answer (default 200)")
    listen.set_defaults(handler=_listen)


def _header_line(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


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
    try:
        response = tools.send(outgoing)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(f"HTTP {response.status} {response.reason}".rstrip())
    if response.body:
        print(client.printable(response.body.decode("utf-8", errors="replace"), multiline=True))
    return EXIT_OK if response.ok else EXIT_FAILURE


def _signing_options(args: argparse.Namespace) -> config.VerifyConfig:
    from hookgate.cli import tools  # aiohttp: loaded only by the commands that use it

    if args.scheme == "none" and args.secret:
        raise UsageError("--secret needs a --scheme")
    provider = providers.get(args.scheme)
    if "public_keys" in provider.verify_keys and not args.key_file:
        raise UsageError(f"--scheme {args.scheme} needs --key-file (its private key, PEM)")
    if provider.needs_secret and not args.secret:
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
        public_keys=[_read_key(args.key_file)] if args.key_file else [],
    )
    try:
        tools.check_signing(options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return options


def _read_key(name: str) -> str:
    try:
        return Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise client.CommandError(f"cannot read {name}: {exc}") from None


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
        run(tools.listen(receiver))
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise client.CommandError(f"cannot listen on {args.listen}: {reason}") from None
    return EXIT_OK
