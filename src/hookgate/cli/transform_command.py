"""`hookgate transform`: what a destination's transform makes of a message, not sent.

The program comes from the config file as it is now (so a change can be tried
before the reload), the message from the admin API (``--message``) or a file. The
program runs as the daemon runs it: in a worker process, within its limits.
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from hookgate import config
from hookgate.admin import answers
from hookgate.cli import admin_commands, client
from hookgate.cli.common import EXIT_FAILURE, EXIT_OK, UsageError, load, run, show
from hookgate.outbound import requests
from hookgate.transform import Transformed, TransformFailed, TransformInput, TransformPool

_FILE_MESSAGE_ID = "msg_transform_test"


def add_transform(commands: Any, common: argparse.ArgumentParser) -> None:
    command = commands.add_parser(
        "transform",
        parents=[admin_commands.admin_options(common)],
        help="print the request a destination's transform makes of a message, without sending",
        description="Run the transform of a destination, as the config file has it now, on a "
        "stored message (read through the admin API) or on a JSON file, and print the request "
        "that would be sent. Nothing is sent or changed. Exit 1 if the transform fails.",
    )
    command.add_argument("--destination", metavar="NAME", required=True)
    what = command.add_mutually_exclusive_group(required=True)
    what.add_argument("--message", metavar="ID", help="a stored message, by id")
    what.add_argument("--file", metavar="PATH", help="a JSON body ('-' for stdin)")
    for_file = command.add_argument_group("with --file")
    for_file.add_argument(
        "-H",
        dest="extra_headers",
        metavar="'NAME: VALUE'",
        action="append",
        default=[],
        help="an inbound header (repeatable)",
    )
    for_file.add_argument("--event-type", metavar="TYPE", help="the message's event type")
    command.set_defaults(handler=_transform)


def _transform(args: argparse.Namespace) -> int:
    loaded = load(args)
    if loaded is None:
        return EXIT_FAILURE
    destination = loaded.destinations.get(args.destination)
    if destination is None:
        raise UsageError(f"no destination named {args.destination!r} in the config")
    if destination.transform is None:
        raise UsageError(f"destination {args.destination!r} has no transform")
    message = _from_api(args) if args.message else _from_file(args, destination)
    try:
        transformed = run(_run_once(destination, message))
    except TransformFailed as exc:
        print(f"hookgate transform: transform failed: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    request = requests.preview(destination, message, transformed, int(time.time()))
    url = config.masked_url(destination.url)
    headers = {str(name): value for name, value in request.headers.items()}
    payload = {"url": url, "headers": headers, "body": request.body.decode(errors="replace")}
    show(args, payload, lambda: _request_text(url, headers, request.body))
    return EXIT_OK


async def _run_once(destination: config.DestinationConfig, message: TransformInput) -> Transformed:
    pool = TransformPool(workers=1)
    try:
        assert destination.transform is not None  # noqa: S101 - checked by the caller
        return await pool.run(
            destination.transform,
            message,
            timeout=destination.transform_timeout,
            max_size=destination.transform_max_size,
        )
    finally:
        await pool.close()


def _from_api(args: argparse.Namespace) -> TransformInput:
    path = f"{client.API}/messages/{client.segment(args.message)}"
    message = client.shape(admin_commands.admin_client(args).get(path), answers.MessageDetail)
    if message.body is not None:
        body = message.body.encode()
    else:
        body = base64.b64decode(message.body_base64 or "")
    return TransformInput(
        body=body,
        headers=orjson.dumps(message.headers),
        source=message.source,
        event_type=message.event_type,
        message_id=message.id,
    )


def _from_file(args: argparse.Namespace, destination: config.DestinationConfig) -> TransformInput:
    try:
        body = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    headers = {"content-type": "application/json"}
    for line in args.extra_headers:
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise UsageError(f"expected 'Name: value', got {line!r}")
        headers[name.strip().lower()] = value.strip()
    return TransformInput(
        body=body,
        headers=orjson.dumps(headers),
        source=destination.sources[0],
        event_type=args.event_type,
        message_id=_FILE_MESSAGE_ID,
    )


def _request_text(url: str, headers: dict[str, str], body: bytes) -> str:
    lines = [f"POST {url}", *(f"{name}: {value}" for name, value in headers.items()), ""]
    try:
        lines.append(orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2).decode())
    except orjson.JSONDecodeError:
        lines.append(client.printable(body.decode(errors="replace"), multiline=True))
    return "\n".join(lines)
