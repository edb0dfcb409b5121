"""The admin commands: status, messages, retry, replay, pause and resume, over the admin API."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from hookgate import config
from hookgate.admin import answers
from hookgate.cli import client
from hookgate.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    TIMES,
    TOKEN_ENV,
    UsageError,
    load_admin,
    positive,
    show,
    time_argument,
)
from hookgate.wire import DELIVERY_STATES


def add_admin_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    options = admin_options(common)
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
    retry.add_argument("delivery_id", metavar="DELIVERY_ID", nargs="?", type=positive)
    retry.add_argument("--destination", metavar="NAME", help="retry its dead deliveries")
    retry.add_argument(
        "--since", metavar="TIME", type=time_argument, help="only those dead since" + TIMES
    )
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


def admin_options(common: argparse.ArgumentParser) -> argparse.ArgumentParser:
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
    listing.add_argument("--event-id", metavar="ID", help="only with this event id")
    listing.add_argument(
        "--destination", metavar="NAME", help="only with a delivery to this destination"
    )
    listing.add_argument("--state", choices=DELIVERY_STATES, help="with a delivery in this state")
    listing.add_argument(
        "--since", metavar="TIME", type=time_argument, help="received since" + TIMES
    )
    listing.add_argument(
        "--until", metavar="TIME", type=time_argument, help="received until" + TIMES
    )
    listing.add_argument("--limit", metavar="N", type=positive, help="at most N (API: 50)")
    listing.add_argument("--cursor", metavar="C", help="the next page, as printed by a listing")
    listing.set_defaults(handler=_messages_list)
    show = actions.add_parser(
        "show", parents=[options], help="a message with its deliveries and attempts"
    )
    show.add_argument("message_id", metavar="ID")
    show.set_defaults(handler=_messages_show)


def admin_client(args: argparse.Namespace) -> client.AdminClient:
    """The admin API client: flags and environment first, then the config."""
    token = args.token or os.environ.get(TOKEN_ENV) or None
    url: str | None = args.admin_url
    if url is None or (token is None and _config_named(args)):
        admin = load_admin(args)
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


def _status(args: argparse.Namespace) -> int:
    api = admin_client(args)
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

    show(args, {"readyz": readiness, "stats": stats}, render)
    if failure is not None:
        print(f"hookgate: {failure}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK if ready else EXIT_FAILURE


def _messages_list(args: argparse.Namespace) -> int:
    query = {
        "source": args.source,
        "event_type": args.event_type,
        "event_id": args.event_id,
        "destination": args.destination,
        "state": args.state,
        "since": args.since,
        "until": args.until,
        "limit": args.limit,
        "cursor": args.cursor,
    }
    page = admin_client(args).get(client.API + "/messages", query)
    show(args, page, lambda: client.messages_text(client.shape(page, answers.MessagePage)))
    return EXIT_OK


def _messages_show(args: argparse.Namespace) -> int:
    message = admin_client(args).get(f"{client.API}/messages/{client.segment(args.message_id)}")
    show(args, message, lambda: client.message_text(client.shape(message, answers.MessageDetail)))
    return EXIT_OK


def _retry(args: argparse.Namespace) -> int:
    if (args.delivery_id is None) == (args.destination is None):
        raise UsageError("give either a DELIVERY_ID or --destination NAME")
    if args.since is not None and args.destination is None:
        raise UsageError("--since needs --destination")
    api = admin_client(args)
    if args.destination is not None:
        path = f"{client.API}/destinations/{client.segment(args.destination)}/retry"
        retried = api.post(path, {"since": args.since})
        show(args, retried, lambda: _retried_text(args.destination, retried))
        return EXIT_OK
    delivery = api.post(f"{client.API}/deliveries/{args.delivery_id}/retry")

    def render() -> str:
        parsed = client.shape(delivery, answers.Delivery)
        return f"retried delivery {parsed.id}:\n" + client.deliveries_text([parsed])

    show(args, delivery, render)
    return EXIT_OK


def _retried_text(destination: str, payload: Any) -> str:
    count = client.shape(payload, answers.RetryResult).retried
    retried = client.plural(count, "dead delivery", "dead deliveries")
    return f"{client.printable(destination)}: {retried} made pending again"


def _replay(args: argparse.Namespace) -> int:
    path = f"{client.API}/messages/{client.segment(args.message_id)}/replay"
    replayed = admin_client(args).post(path, {"destination": args.destination})

    def render() -> str:
        deliveries = client.shape(replayed, answers.ReplayResult).deliveries
        name = client.printable(args.message_id)
        if not deliveries:
            return f"{name}: no destination matches it now; nothing replayed"
        count = client.plural(len(deliveries), "new delivery", "new deliveries")
        return f"replayed {name}: {count}\n" + client.deliveries_text(deliveries)

    show(args, replayed, render)
    return EXIT_OK


def _pause(args: argparse.Namespace) -> int:
    return _set_paused(args, "pause")


def _resume(args: argparse.Namespace) -> int:
    return _set_paused(args, "resume")


def _set_paused(args: argparse.Namespace, action: str) -> int:
    path = f"{client.API}/destinations/{client.segment(args.name)}/{action}"
    destination = admin_client(args).post(path)
    show(
        args,
        destination,
        lambda: client.destination_text(client.shape(destination, answers.Destination)),
    )
    return EXIT_OK
