"""The command line without a server: parsing, where the admin API is, tables, signing.

``send``'s signatures are checked against hookgate's own inbound verifiers (a round
trip per scheme) and, where a provider publishes a library, against that library.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
import standardwebhooks.webhooks
import stripe
from multidict import CIMultiDict
from slack_sdk.signature import SignatureVerifier

import hookgate.addresses  # noqa: F401 - loaded before check_config_as forks (config imports it)
from hookgate import cli, config, providers
from hookgate.admin import answers
from hookgate.cli import admin_commands, client, tools
from hookgate.errors import ConfigError, VerificationFailed
from hookgate.outbound import signing

from ..config.samples import THREE_MISTAKES
from ..providers import samples

BODY = b'{"type": "invoice.paid", "id": "evt_1", "data": {"amount": 1200}}'
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def now() -> int:
    """The current time, read when each test runs, never at import.

    The official libraries check signed timestamps against the real clock, so a value
    taken at import goes stale once the suite has run for the tolerance (5 minutes).
    """
    return int(time.time())


def parse(*argv: str) -> argparse.Namespace:
    return cli._parser().parse_args(argv)


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run ``argv``, expect exit code 2 (a bad command line) and return stderr."""
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = int(str(exc.code))
    assert code == 2
    return capsys.readouterr().err


# -- parsing ------------------------------------------------------------------------


def test_messages_list_takes_every_filter() -> None:
    args = parse(
        "messages", "list", "--source", "shop", "--event-type", "order.created",
        "--event-id", "evt_1", "--destination", "crm", "--state", "dead",
        "--since", "2026-11-27T09:00:00Z", "--until", "1795770000",
        "--limit", "20", "--cursor", "msg_0000000000000001", "--json",
    )  # fmt: skip
    assert (args.command, args.action) == ("messages", "list")
    assert args.source == "shop"
    assert args.event_type == "order.created"
    assert args.event_id == "evt_1"
    assert args.destination == "crm"
    assert args.state == "dead"
    assert args.since == "2026-11-27T09:00:00Z"
    assert args.until == "1795770000"
    assert args.limit == 20
    assert args.cursor == "msg_0000000000000001"
    assert args.json is True
    assert args.handler is admin_commands._messages_list


def test_a_duration_means_that_long_ago() -> None:
    before = int(time.time())
    since = int(parse("messages", "list", "--since", "2h").since)
    assert before - 7200 - 1 <= since <= int(time.time()) - 7200


@pytest.mark.parametrize("where", ["before", "after"])
def test_config_option_before_or_after_the_command(where: str) -> None:
    argv = ["status", "-c", "x.toml"] if where == "after" else ["-c", "x.toml", "status"]
    assert parse(*argv).config == "x.toml"


def test_config_option_between_messages_and_its_action() -> None:
    assert parse("messages", "-c", "x.toml", "list").config == "x.toml"
    assert parse("-c", "y.toml", "messages", "show", "msg_1").config == "y.toml"


def test_admin_options_on_every_admin_command() -> None:
    for argv in (
        ["status"],
        ["messages", "list"],
        ["messages", "show", "msg_1"],
        ["retry", "7"],
        ["replay", "msg_1"],
        ["pause", "orders"],
        ["resume", "orders"],
    ):
        args = parse(*argv, "--admin-url", "http://h:1", "--token", "t", "-c", "c.toml")
        assert (args.admin_url, args.token, args.config) == ("http://h:1", "t", "c.toml")


def test_retry_replay_pause_resume_arguments() -> None:
    assert parse("retry", "17").delivery_id == 17
    args = parse("retry", "--destination", "orders", "--since", "1795770000")
    assert (args.delivery_id, args.destination, args.since) == (None, "orders", "1795770000")
    args = parse("replay", "msg_1", "--destination", "orders")
    assert (args.message_id, args.destination) == ("msg_1", "orders")
    assert parse("pause", "orders").handler is admin_commands._pause
    assert parse("resume", "orders").handler is admin_commands._resume


@pytest.mark.parametrize(
    "argv",
    [
        ["retry"],
        ["retry", "17", "--destination", "orders"],
        ["retry", "17", "--since", "1h"],
        ["retry", "zero"],
        ["retry", "0"],
        ["messages", "list", "--state", "lost"],
        ["messages", "list", "--limit", "0"],
        ["messages"],
        ["pause"],
    ],
)
def test_bad_admin_command_lines_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert "Traceback" not in usage_error(capsys, *argv)


def test_send_arguments() -> None:
    args = parse(
        "send", "http://h/hook", "--scheme", "hmac", "--secret", "s", "--header", "X-Sig",
        "--prefix", "sha256=", "--algorithm", "sha512", "--encoding", "base64",
        "--body-file", "b.json", "--content-type", "text/plain",
        "-H", "X-One: 1", "-H", "X-Two:two words ",
    )  # fmt: skip
    assert args.url == "http://h/hook"
    assert (args.scheme, args.secret, args.header, args.prefix) == ("hmac", "s", "X-Sig", "sha256=")
    assert (args.algorithm, args.encoding) == ("sha512", "base64")
    assert (args.body_file, args.content_type) == ("b.json", "text/plain")
    assert args.extra_headers == [("X-One", "1"), ("X-Two", "two words")]


def test_send_defaults() -> None:
    args = parse("send", "http://h/")
    assert (args.scheme, args.secret, args.body_file) == ("none", None, None)
    assert args.content_type == "application/json"
    assert (args.algorithm, args.encoding, args.signed_payload) == ("sha256", "hex", "{body}")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scheme", "github"], "needs --secret"),
        (["--provider", "discord"], "--scheme discord needs --key-file"),
        (["--provider", "paypal", "--secret", "s"], "--scheme paypal needs --key-file"),
        (["--secret", "s"], "--secret needs a --scheme"),
        (["--scheme", "hmac", "--secret", "s"], "header"),
        (["--scheme", "standard", "--secret", "whsec_!!"], "whsec_"),
        (["--scheme", "basic", "--secret", "nocolon"], "user:password"),
        (["--scheme", "strpe", "--secret", "s"], "invalid choice"),
        (["-H", "no colon here"], "Name: value"),
    ],
)
def test_bad_send_command_lines_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert message in usage_error(capsys, "send", "http://127.0.0.1:9/", *argv)


def test_listen_arguments() -> None:
    args = parse("listen")
    assert (args.listen, args.path, args.status) == ("127.0.0.1:5000", "/", 200)
    assert (args.secret, args.hmac_secret) == (None, None)
    args = parse("listen", "--listen", "[::1]:0", "--path", "/in", "--status", "503")
    assert (args.listen, args.path, args.status) == ("[::1]:0", "/in", 503)


@pytest.mark.parametrize(
    "argv",
    [
        ["--secret", STANDARD_SECRET, "--hmac-secret", "s"],
        ["--status", "99"],
        ["--status", "ok"],
        ["--listen", "nonsense"],
        ["--path", "in"],
        ["--secret", "whsec_***"],
    ],
)
def test_bad_listen_command_lines_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert "Traceback" not in usage_error(capsys, "listen", *argv)


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 1
    assert "status" in capsys.readouterr().out


# -- where the admin API is ---------------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "url"),
    [
        ("127.0.0.1:9090", "http://127.0.0.1:9090"),
        ("0.0.0.0:9090", "http://127.0.0.1:9090"),
        (":9090", "http://127.0.0.1:9090"),
        ("[::]:9090", "http://[::1]:9090"),
        ("[::1]:9091", "http://[::1]:9091"),
        ("10.1.2.3:80", "http://10.1.2.3:80"),
        ("admin.internal:9090", "http://admin.internal:9090"),
    ],
)
def test_admin_url_from_listen(listen: str, url: str) -> None:
    assert client.admin_url(listen) == url


@pytest.fixture
def admin_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("HOOKGATE_CONFIG", raising=False)
    monkeypatch.delenv(cli.TOKEN_ENV, raising=False)
    path = tmp_path / "hookgate.toml"
    path.write_text('[admin]\nlisten = "0.0.0.0:9191"\ntoken = "from-config"\n')
    return path


def connect(*argv: str) -> client.AdminClient:
    return admin_commands.admin_client(parse("status", *argv))


def bearer(api: client.AdminClient) -> str | None:
    return api._headers.get("Authorization")


def test_address_and_token_from_the_config(admin_config: Path) -> None:
    api = connect("-c", str(admin_config))
    assert api.base_url == "http://127.0.0.1:9191"
    assert bearer(api) == "Bearer from-config"


def test_config_from_the_environment(admin_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKGATE_CONFIG", str(admin_config))
    assert connect().base_url == "http://127.0.0.1:9191"


def test_token_flag_then_environment_then_config(
    admin_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cli.TOKEN_ENV, "from-env")
    assert bearer(connect("-c", str(admin_config))) == "Bearer from-env"
    assert bearer(connect("-c", str(admin_config), "--token", "from-flag")) == "Bearer from-flag"


def test_admin_url_flag_overrides_the_config(admin_config: Path) -> None:
    api = connect("-c", str(admin_config), "--admin-url", "http://10.0.0.1:7/")
    assert api.base_url == "http://10.0.0.1:7"
    assert bearer(api) == "Bearer from-config"


def test_url_and_token_given_need_no_config(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.toml")
    api = connect("-c", missing, "--admin-url", "http://127.0.0.1:7", "--token", "t")
    assert (api.base_url, bearer(api)) == ("http://127.0.0.1:7", "Bearer t")


def test_unreadable_config_is_a_one_line_error_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(cli.TOKEN_ENV, raising=False)
    assert cli.main(["status", "-c", str(tmp_path / "missing.toml")]) == 1
    err = capsys.readouterr().err
    assert "missing.toml" in err
    assert "--admin-url" in err
    assert all(line.startswith("hookgate: ") for line in err.splitlines())


# -- printing -----------------------------------------------------------------------


def test_table_pads_and_aligns() -> None:
    text = client.table(("NAME", "N"), [("a", 1), ("longer", 100)], right={1})
    assert text.splitlines() == ["NAME      N", "a         1", "longer  100"]


def test_table_escapes_control_characters() -> None:
    text = client.table(("X",), [("evil\x1b[2Jtype\nnext",)])
    assert "\x1b" not in text
    assert "\n" not in text.splitlines()[1]
    assert "\\x1b[2J" in text


def test_printable_keeps_newlines_only_when_asked() -> None:
    assert client.printable("a\nb\x07", multiline=True) == "a\nb\\x07"
    assert client.printable("a\nb") == "a\\nb"
    assert client.printable("caf\u00e9 \u2713") == "caf\u00e9 \u2713"


def test_when_shortens_api_times() -> None:
    assert client.when("2026-11-27T09:30:28.843Z") == "2026-11-27 09:30:28Z"
    assert client.when("2026-11-27T09:30:28Z") == "2026-11-27 09:30:28Z"
    assert client.when(None) == "-"


def message(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "msg_0190c2a8f0000001",
        "source": "shop",
        "event_type": "order.created",
        "event_id": None,
        "received_at": "2026-11-27T09:30:28.843Z",
        "size": 42,
        "deliveries": {"pending": 1, "delivered": 2, "dead": 0},
    }
    return {**base, **fields}


def test_messages_table_with_next_page() -> None:
    page = client.shape(
        {"items": [message(), message(id="msg_2", event_type=None)], "next_cursor": "msg_2"},
        answers.MessagePage,
    )
    lines = client.messages_text(page).splitlines()
    assert lines[0].split() == [
        "ID", "RECEIVED", "SOURCE", "EVENT", "TYPE", "SIZE", "PENDING", "DELIVERED", "DEAD"
    ]  # fmt: skip
    assert lines[1].split() == [
        "msg_0190c2a8f0000001", "2026-11-27", "09:30:28Z", "shop", "order.created",
        "42", "1", "2", "0",
    ]  # fmt: skip
    assert lines[2].split()[4] == "-"
    assert lines[-1] == "more: --cursor msg_2"


def test_empty_messages_page() -> None:
    page = client.shape({"items": [], "next_cursor": None}, answers.MessagePage)
    assert client.messages_text(page) == "no messages"


def delivery(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 7,
        "message_id": "msg_0190c2a8f0000001",
        "destination": "orders",
        "state": "dead",
        "attempts": 3,
        "next_attempt_at": "2026-11-27T09:31:00.000Z",
        "last_status": None,
        "last_error": "connection refused",
        "updated_at": "2026-11-27T09:31:00.000Z",
    }
    return {**base, **fields}


def test_message_detail_shows_body_deliveries_and_attempts() -> None:
    attempt = {
        "started_at": "2026-11-27T09:30:29.000Z",
        "duration_ms": 12.25,
        "status": 503,
        "error": None,
        "response_snippet": "busy\nsecond line",
    }
    detail = message(
        headers={"content-type": "application/json"},
        body='{"type": "order.created"}\n',
        body_base64=None,
        deliveries=[
            delivery(attempt_log=[attempt]),
            delivery(id=8, destination="audit", state="pending", last_error=None, attempt_log=[]),
        ],
    )
    text = client.message_text(client.shape(detail, answers.MessageDetail))
    assert "event id:   -" in text
    assert "  content-type: application/json" in text
    assert 'body:\n{"type": "order.created"}\n\ndeliveries:' in text
    rows = [line.split() for line in text.splitlines()]
    assert [
        "7",
        "msg_0190c2a8f0000001",
        "orders",
        "dead",
        "3",
        "-",
        "connection",
        "refused",
    ] in rows
    assert [
        "8",
        "msg_0190c2a8f0000001",
        "audit",
        "pending",
        "3",
        "2026-11-27",
        "09:31:00Z",
        "-",
    ] in rows
    assert "attempts of delivery 7 (orders):" in text
    assert ["2026-11-27", "09:30:29Z", "12.2ms", "503", "busy"] in rows
    assert "attempts of delivery 8" not in text


def test_message_detail_binary_body_and_no_deliveries() -> None:
    detail = message(headers={}, body=None, body_base64="AAEC", deliveries=[])
    text = client.message_text(client.shape(detail, answers.MessageDetail))
    assert "body (not UTF-8, base64):\nAAEC" in text
    assert "headers: none" in text
    assert "deliveries: none" in text


def test_message_detail_shows_skipped_destinations_and_a_transform_death() -> None:
    dead = delivery(
        dead_reason="transform",
        last_error="transform failed: jq: boom",
        attempt_log=[
            {
                "started_at": "2026-11-27T09:30:29.000Z",
                "duration_ms": 0.5,
                "status": None,
                "error": "transform failed: jq: boom",
                "response_snippet": "",
            }
        ],
    )
    detail = message(
        headers={},
        body="{}",
        body_base64=None,
        deliveries=[dead],
        skipped=[
            {"destination": "v1", "reason": "filter"},
            {"destination": "refunds", "reason": "event_type"},
        ],
    )
    text = client.message_text(client.shape(detail, answers.MessageDetail))
    assert text.endswith(
        "skipped:\n"
        "  v1: its filter did not match\n"
        "  refunds: its events do not include this event type"
    )
    assert "dead: transform (its transform failed; fix it, reload, then retry)" in text


def test_an_answer_without_skipped_still_reads() -> None:
    """An older hookgate's answer has no "skipped": none were recorded."""
    detail = message(headers={}, body="{}", body_base64=None, deliveries=[])
    assert client.shape(detail, answers.MessageDetail).skipped == []


READY = {
    "status": "ok",
    "checks": {"database": "ok", "delivery": "ok"},
    "queue": {"pending": 3, "oldest_pending_age_s": 4.5, "dead": 1},
    "destinations": {
        "orders": {"state": "ok", "pending": 3},
        "crm": {"state": "open", "pending": 0},
    },
}
STATS = {
    "messages": 10,
    "deliveries": {"pending": 3, "delivered": 6, "dead": 1},
    "oldest_pending_age_s": 4.5,
    "destinations": {"orders": {"pending": 3, "dead": 0}, "old": {"pending": 0, "dead": 1}},
}


def test_status_summary() -> None:
    readiness = client.shape(READY, answers.Readiness)
    stats = client.shape(STATS, answers.Stats)
    lines = client.status_text("http://127.0.0.1:9090", True, readiness, stats).splitlines()
    assert lines[:4] == [
        "hookgate at http://127.0.0.1:9090: ready",
        "checks: database ok, delivery ok",
        "messages: 10",
        "deliveries: 3 pending (oldest 4.5s), 6 delivered, 1 dead",
    ]
    rows = [line.split() for line in lines[5:]]
    assert rows == [
        ["DESTINATION", "STATE", "PENDING", "DEAD"],
        ["crm", "open", "0", "0"],
        ["old", "-", "0", "1"],
        ["orders", "ok", "3", "0"],
    ]


def test_status_not_ready_without_stats() -> None:
    failing = {"status": "failing", "checks": {"database": "failing: disk full"}}
    readiness = client.shape(failing, answers.Readiness)
    text = client.status_text("http://h:1", False, readiness, None)
    assert text.splitlines() == [
        "hookgate at http://h:1: NOT READY",
        "checks: database failing: disk full",
    ]


def test_destination_line() -> None:
    paused = {
        "name": "orders", "url": "http://x/", "state": "paused", "paused": True,
        "configured": True, "pending": 4, "dead": 1,
    }  # fmt: skip
    line = client.destination_text(client.shape(paused, answers.Destination))
    assert line == "orders: paused, state paused (4 pending, 1 dead)"
    resumed = {**paused, "state": "ok", "paused": False, "url": None}
    assert client.destination_text(client.shape(resumed, answers.Destination)).startswith(
        "orders: resumed, state ok"
    )


def test_unexpected_answer_is_a_command_error() -> None:
    with pytest.raises(client.CommandError, match="unexpected answer"):
        client.shape({"items": "nope"}, answers.MessagePage)


# -- send: signing as each provider does --------------------------------------------

SECRETS: dict[str, str] = {
    "none": "",
    "hmac": "generic-secret",
    "standard": STANDARD_SECRET,
    "github": "gh-secret",
    "stripe": "whsec_stripe_test_0123456789",
    "shopify": "shpss_0123456789",
    "slack": "8f742231b10e8888abcd99yyyzzz85a5",
    "gitlab": "gitlab-token",
    "basic": "relay:p\u00e4ss:word",
}


def signing_options(scheme: config.Scheme, secret: str, **options: Any) -> config.VerifyConfig:
    if scheme == "hmac":
        options.setdefault("header", "X-Signature")
    return config.VerifyConfig(
        scheme=scheme, secrets=[secret] if secret else [], tolerance=config.Duration(300), **options
    )


SEND_URL = "https://hooks.example.com/hooks/x"


def round_trip(options: config.VerifyConfig, now: int, body: bytes = BODY) -> dict[str, str]:
    """Sign with ``send``'s signer, verify with the ingress check for the same table."""
    tools.check_signing(options)
    body = tools.prepared_body(options, body, now)
    headers = tools.signature_headers(options, body, now, SEND_URL)
    check = providers.get(options.scheme).check(options)
    check(providers.Request("POST", SEND_URL, {}, CIMultiDict(headers), body), now)
    return headers


def sending_options(scheme: config.Scheme) -> config.VerifyConfig:
    """What ``hookgate send`` is given for ``scheme``."""
    if scheme in samples.TABLES:
        return samples.table(scheme)
    return signing_options(scheme, SECRETS[scheme])


def sendable(scheme: config.Scheme, body: bytes) -> bool:
    """Can ``body`` be sent as ``scheme`` (Twilio signs form bodies; some providers sign
    fields of a JSON object)?"""
    if scheme == "twilio":
        return body == b""  # the only one of these bodies that is a form
    return scheme not in samples.BODY_FIELDS or body == BODY


def test_every_scheme_has_a_signer() -> None:
    assert set(providers.SCHEMES) == set(get_args(config.Scheme))


@pytest.mark.parametrize("scheme", list(get_args(config.Scheme)))
@pytest.mark.parametrize("body", [BODY, b"", "caf\u00e9 \u2713".encode(), b"\x00\xff binary"])
def test_every_scheme_round_trips(scheme: config.Scheme, body: bytes, now: int) -> None:
    if sendable(scheme, body):
        round_trip(sending_options(scheme), now, body)
    else:
        with pytest.raises(ValueError, match=r"JSON|form"):
            round_trip(sending_options(scheme), now, body)


def test_twilio_round_trips_a_form_body_and_a_json_body_by_its_hash(now: int) -> None:
    options = samples.table("twilio")
    form = b"From=%2B15551234567&Body=hello"
    headers = tools.signature_headers(options, form, now, SEND_URL)
    request = providers.Request(
        "POST",
        SEND_URL,
        {},
        CIMultiDict({**headers, "Content-Type": "application/x-www-form-urlencoded"}),
        form,
    )
    providers.get("twilio").check(options)(request, now)
    hashed_url = SEND_URL + "?bodySHA256=" + hashlib.sha256(BODY).hexdigest()
    headers = tools.signature_headers(options, BODY, now, hashed_url)
    request = providers.Request("POST", hashed_url, {}, CIMultiDict(headers), BODY)
    providers.get("twilio").check(options)(request, now)


@pytest.mark.parametrize("scheme", [s for s in get_args(config.Scheme) if s != "none"])
def test_another_secret_does_not_verify(scheme: config.Scheme, now: int) -> None:
    if scheme == "twilio":
        return  # signs form bodies only: test_twilio_round_trips_...
    options = sending_options(scheme)
    body = tools.prepared_body(options, BODY, now)
    headers = tools.signature_headers(options, body, now, SEND_URL)
    if scheme in samples.TABLES:
        other_options = samples.table(scheme, other=True)
    else:
        other = "whsec_" + base64.b64encode(b"someone else").decode()
        other_options = signing_options(scheme, other if scheme == "standard" else "x:y")
    request = providers.Request("POST", SEND_URL, {}, CIMultiDict(headers), body)
    with pytest.raises(VerificationFailed):
        providers.get(scheme).check(other_options)(request, now)


@pytest.mark.parametrize(
    "options",
    [
        {"algorithm": "sha1"},
        {"algorithm": "sha512", "encoding": "base64"},
        {"prefix": "sha256="},
        {"timestamp_header": "X-Timestamp", "signed_payload": "{timestamp}.{body}"},
        {"timestamp_header": "X-Ts", "signed_payload": "v1:{timestamp}:{body}:end"},
    ],
)
def test_generic_hmac_variants_round_trip(options: dict[str, Any], now: int) -> None:
    headers = round_trip(signing_options("hmac", "generic-secret", **options), now)
    if "timestamp_header" in options:
        assert headers[options["timestamp_header"]] == str(now)


def test_provider_headers(now: int) -> None:
    assert set(round_trip(signing_options("github", "s"), now)) == {"X-Hub-Signature-256"}
    assert set(round_trip(signing_options("shopify", "s"), now)) == {"X-Shopify-Hmac-Sha256"}
    assert set(round_trip(signing_options("gitlab", "s"), now)) == {"X-Gitlab-Token"}
    assert set(round_trip(signing_options("basic", "u:p"), now)) == {"Authorization"}
    assert tools.signature_headers(signing_options("none", ""), BODY, now) == {}


def test_standard_uses_a_fresh_id_each_time(now: int) -> None:
    options = signing_options("standard", STANDARD_SECRET)
    first = round_trip(options, now)
    second = round_trip(options, now)
    assert first["webhook-id"] != second["webhook-id"]
    assert first["webhook-timestamp"] == str(now)


def test_standard_verifies_with_the_official_library(now: int) -> None:
    headers = tools.signature_headers(signing_options("standard", STANDARD_SECRET), BODY, now)
    standardwebhooks.webhooks.Webhook(STANDARD_SECRET).verify(BODY, headers)


def test_stripe_verifies_with_the_official_library(now: int) -> None:
    secret = SECRETS["stripe"]
    headers = tools.signature_headers(signing_options("stripe", secret), BODY, now)
    stripe.WebhookSignature.verify_header(
        BODY.decode(), headers["Stripe-Signature"], secret, tolerance=300
    )


def test_slack_verifies_with_the_official_library(now: int) -> None:
    secret = SECRETS["slack"]
    headers = tools.signature_headers(signing_options("slack", secret), BODY, now)
    assert SignatureVerifier(secret).is_valid_request(BODY, headers)


def test_request_headers_extra_headers_come_last(now: int) -> None:
    outgoing = tools.Outgoing(
        url="http://h/",
        body=BODY,
        signing=signing_options("github", "s"),
        content_type="text/plain",
        extra_headers=(("X-GitHub-Event", "ping"), ("Content-Type", "application/x-custom")),
    )
    headers = tools.request_headers(outgoing, now)
    assert headers["X-GitHub-Event"] == "ping"
    assert headers["Content-Type"] == "application/x-custom"
    assert headers["X-Hub-Signature-256"].startswith("sha256=")
    assert headers["User-Agent"].startswith("hookgate-cli/")


# -- listen: what it prints -----------------------------------------------------------


def test_verdicts_of_the_outbound_verifiers() -> None:
    standard = tools.outbound_verifier(STANDARD_SECRET, None)
    msg_headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(time.time()))}
    signed = signing.Signer("standard", STANDARD_SECRET).headers(
        "msg_1", int(msg_headers["webhook-timestamp"]), BODY
    )
    assert tools.verdict(standard, CIMultiDict({**msg_headers, **signed}), BODY) == "valid"
    assert tools.verdict(standard, CIMultiDict({**msg_headers, **signed}), BODY + b" ") == (
        "INVALID (no signature matched)"
    )
    hmac_verifier = tools.outbound_verifier(None, "k")
    hex_signed = signing.Signer("hmac-sha256", "k").headers("msg_1", 0, BODY)
    assert tools.verdict(hmac_verifier, CIMultiDict(hex_signed), BODY) == "valid"
    assert tools.verdict(hmac_verifier, CIMultiDict(), BODY) == "INVALID (missing header)"
    assert tools.verdict(None, CIMultiDict(), BODY) == "not checked"


def test_describe_shows_hookgate_headers_only() -> None:
    headers = CIMultiDict(
        {
            "Host": "x",
            "webhook-id": "msg_1",
            "Hookgate-Attempt": "2",
            "X-Webhook-Signature": "ab",
            "Content-Type": "application/json",
            "Authorization": "Bearer never-printed",
        }
    )
    text = tools.describe("POST", "/in", headers, b'{"a": "\x1b[31m"}\n', "valid")
    assert text.splitlines() == [
        "--- POST /in",
        "webhook-id: msg_1",
        "Hookgate-Attempt: 2",
        "X-Webhook-Signature: ab",
        "Content-Type: application/json",
        "signature: valid",
        "body (15 bytes):",
        '{"a": "\\x1b[31m"}',
    ]


def test_admin_settings_load_without_the_services_other_secrets(tmp_path: Path) -> None:
    """An operator's shell lacks ${STRIPE_SECRET}; the admin commands still find the API."""
    path = tmp_path / "hookgate.toml"
    path.write_text(
        '[admin]\nlisten = "127.0.0.1:9191"\ntoken = "${ADMIN_TOKEN}"\n'
        '[sources.stripe]\npath = "/s"\n[sources.stripe.verify]\nscheme = "stripe"\n'
        'secrets = ["${STRIPE_SECRET}"]\n'
    )
    admin = config.load_admin(path, {"ADMIN_TOKEN": "t0k"})
    assert (admin.listen, admin.token) == ("127.0.0.1:9191", "t0k")
    with pytest.raises(ConfigError) as failure:
        config.load(path, {"ADMIN_TOKEN": "t0k"})
    assert "STRIPE_SECRET" in str(failure.value)
    with pytest.raises(ConfigError) as missing:
        config.load_admin(path, {})
    assert missing.value.errors == [
        "admin.token: environment variable ADMIN_TOKEN is not set (line 3)"
    ]


# -- check-config: every error, and the storage directory (issue 8) ------------------------


def check_config(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command: ``python -m hookgate check-config ARGS``."""
    return subprocess.run(
        [sys.executable, "-m", "hookgate", "check-config", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_check_config_prints_every_error_at_once(tmp_path: Path) -> None:
    path = tmp_path / "hookgate.toml"
    path.write_text(THREE_MISTAKES)
    result = check_config("-c", str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        'hookgate: config error: server.listen: expected "host:port" or "[::]:port", '
        "got '0.0.0.0:99999' (line 2)",
        "hookgate: config error: delivery.timeout: expected a duration with a unit such as "
        '"250ms", "10s", "5m", got \'soon\' (line 5)',
        "hookgate: config error: destinations.y.max_atempts: unknown key (line 13)",
    ]


def test_check_config_names_a_missing_storage_directory(tmp_path: Path) -> None:
    path = tmp_path / "hookgate.toml"
    path.write_text('[storage]\npath = "state/hookgate.db"\n')
    result = check_config("-c", str(path))
    assert result.returncode == 1
    assert result.stderr == (
        f"hookgate: config error: storage.path: directory {tmp_path.resolve() / 'state'} "
        "does not exist (line 2)\n"
    )
    skipped = check_config("--no-storage-check", "-c", str(path))
    assert skipped.returncode == 0, skipped.stderr
    assert json.loads(skipped.stdout)["storage"]["path"].endswith("state/hookgate.db")
    (tmp_path / "state").mkdir()
    assert check_config("-c", str(path)).returncode == 0


NOBODY = 65534


def check_config_as(uid: int, path: Path) -> tuple[int, str, str]:
    """``hookgate check-config -c PATH`` as ``uid`` (every uid and gid of the process).

    Run by ``cli.main`` in a forked child that drops to ``uid``, not by exec: this
    interpreter may live where that user cannot read it (a pyenv under /root).
    """
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads, 3.12+
        pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        result: dict[str, Any] = {"code": 99, "out": "", "err": ""}
        try:
            os.close(read_end)
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            out, err = io.BytesIO(), io.BytesIO()
            sys.stdout = io.TextIOWrapper(out, encoding="utf-8")
            sys.stderr = io.TextIOWrapper(err, encoding="utf-8")
            result["code"] = cli.main(["check-config", "-c", str(path)])
            sys.stdout.flush()
            sys.stderr.flush()
            result["out"], result["err"] = out.getvalue().decode(), err.getvalue().decode()
        except BaseException as exc:
            result["err"] += f"child failed: {exc!r}"
        finally:
            os.write(write_end, json.dumps(result).encode())
            os._exit(0)
    os.close(write_end)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_end], [], [], 1.0)
            if ready:
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
        else:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("check-config as another user did not finish")
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    result = json.loads(b"".join(chunks))
    return result["code"], result["out"], result["err"]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder any user may read (pytest's tmp_path is private to root when root runs it)."""
    folder = Path(tempfile.mkdtemp(prefix="hookgate-storage-check-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_unprivileged(path: Path) -> tuple[int, str, str, int]:
    """check-config by a user that file permissions apply to: exit code, out, err, uid.

    As root (the test containers), chmod denies nothing, so the check runs as
    nobody (65534); as anyone else it runs as that user.
    """
    if os.geteuid() == 0:
        return (*check_config_as(NOBODY, path), NOBODY)
    result = check_config("-c", str(path))
    return result.returncode, result.stdout, result.stderr, os.getuid()


def test_check_config_names_an_unwritable_storage_directory(shared_dir: Path) -> None:
    path = shared_dir / "hookgate.toml"
    path.write_text('[storage]\npath = "state/hookgate.db"\n')
    path.chmod(0o644)
    state = shared_dir / "state"
    state.mkdir()
    # Root's 0755 folder is not nobody's to write; for an ordinary user, take write away.
    state.chmod(0o755 if os.geteuid() == 0 else 0o555)
    code, out, err, uid = run_unprivileged(path)
    assert (code, out) == (1, "")
    assert err == (
        f"hookgate: config error: storage.path: directory {state.resolve()} is not "
        f"writable by uid {uid} (line 2)\n"
    )
    # The same user, once the folder is theirs: the check passes, so the refusal above
    # was about the folder and nothing else (the config was readable, the code ran).
    if os.geteuid() == 0:
        os.chown(state, NOBODY, NOBODY)
    else:
        state.chmod(0o755)
    code, out, err, _ = run_unprivileged(path)
    assert (code, err) == (0, "")
    assert json.loads(out)["storage"]["path"] == str(state.resolve() / "hookgate.db")


def test_check_config_names_a_database_file_it_cannot_write(shared_dir: Path) -> None:
    path = shared_dir / "hookgate.toml"
    path.write_text('[storage]\npath = "state/hookgate.db"\n')
    path.chmod(0o644)
    state = shared_dir / "state"
    state.mkdir(mode=0o777)
    state.chmod(0o777)  # the folder is fine; the file is read-only to the user checking
    database = state / "hookgate.db"
    database.write_bytes(b"")
    database.chmod(0o444)
    code, _, err, uid = run_unprivileged(path)
    assert code == 1
    assert err == (
        f"hookgate: config error: storage.path: {database.resolve()} is not readable and "
        f"writable by uid {uid} (line 2)\n"
    )
