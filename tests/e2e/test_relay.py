"""End to end: a webhook in, the same webhook out, through the real daemon.

Covers interfaces.md sections 1 (ingress), 2 (outbound headers and signatures),
3 (health) and 4/5 (command line, SIGTERM).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from .conftest import Daemon, Downstream, Reply, free_port, post, run_cli, to_toml, wait_for

StartDaemon = Callable[..., Awaitable[Daemon]]
MESSAGE_ID = re.compile(r"^msg_[0-9a-f]{16}$")


def whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def one_route(downstream: Downstream, **destination: Any) -> dict[str, Any]:
    """Source "shop" at /hooks/shop → destination "orders"."""
    return {
        "sources": {"shop": {"path": "/hooks/shop", "event_type": "json:type"}},
        "destinations": {
            "orders": {"url": downstream.url("/orders"), "sources": ["shop"], **destination}
        },
    }


def message_count(daemon: Daemon, source: str | None = None) -> int:
    if source is None:
        return int(daemon.query("SELECT count(*) FROM messages")[0][0])
    return int(daemon.query("SELECT count(*) FROM messages WHERE source = ?", (source,))[0][0])


def assert_error(status: int, body: dict[str, Any], expected_status: int, code: str) -> None:
    assert status == expected_status, body
    assert body.get("error") == code, body
    assert isinstance(body.get("detail"), str), body
    assert body["detail"], body


# -- the relay ----------------------------------------------------------------------


async def test_webhook_arrives_byte_identical_with_headers(
    start_daemon: StartDaemon, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(
        **one_route(
            downstream,
            forward_headers=["X-Request-Id", "X-Not-Sent"],
            headers={"X-Env": "e2e", "X-Team": "payments"},
        )
    )
    # Odd spacing, key order, escapes and a trailing newline: any re-serialisation shows.
    body = b'{"type":"order.created",  "amount": 1.50, "name":"Z\\u00fcrich \xc3\xa9", "n":[1,2]}\n'
    content_type = "application/vnd.shop+json; charset=utf-8"
    status, answer = await post(
        client,
        daemon.url("/hooks/shop"),
        body,
        {"Content-Type": content_type, "X-Request-Id": "req-42", "X-Private": "not-forwarded"},
    )
    assert status == 202, answer
    assert set(answer) == {"id"}
    assert MESSAGE_ID.match(answer["id"]), answer

    (received,) = await downstream.wait_count(1)
    assert received.method == "POST"
    assert received.path == "/orders"
    assert received.body == body
    headers = received.headers
    assert headers["Content-Type"] == content_type
    assert headers["webhook-id"] == answer["id"]
    assert headers["webhook-timestamp"].isdigit()
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 3600  # unix seconds
    assert headers["Hookgate-Source"] == "shop"
    assert headers["Hookgate-Event-Type"] == "order.created"
    assert headers["Hookgate-Attempt"] == "1"
    assert re.match(r"^hookgate/\S+$", headers["User-Agent"]), headers["User-Agent"]
    assert headers["X-Request-Id"] == "req-42"
    assert headers["X-Env"] == "e2e"
    assert headers["X-Team"] == "payments"
    assert "X-Not-Sent" not in headers
    assert "X-Private" not in headers
    assert "webhook-signature" not in headers  # sign = "none"
    assert "X-Webhook-Signature" not in headers

    await wait_for(lambda: daemon.delivery_rows(answer["id"]) == [("orders", "delivered", 1, 200)])


async def test_standard_outbound_signature_verifies_with_official_library(
    start_daemon: StartDaemon, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    secret = whsec()
    daemon = await start_daemon(
        delivery={"initial_backoff": "100ms", "max_backoff": "500ms"},
        **one_route(downstream, sign="standard", secret=secret),
    )
    downstream.reply(Reply(status=500))  # the retry is signed afresh
    body = json.dumps({"type": "order.paid", "total": 12}).encode()
    status, answer = await post(client, daemon.url("/hooks/shop"), body)
    assert status == 202, answer

    first, second = await downstream.wait_count(2)
    for received in (first, second):
        assert received.webhook_id == answer["id"]
        assert received.headers["webhook-signature"].startswith("v1,")
        # The official Standard Webhooks library is the judge, not our own code.
        payload = Webhook(secret).verify(received.body, dict(received.headers))
        assert payload == {"type": "order.paid", "total": 12}
    assert [first.attempt, second.attempt] == [1, 2]

    with pytest.raises(WebhookVerificationError):
        Webhook(whsec()).verify(first.body, dict(first.headers))


async def test_hmac_sha256_outbound_signature(
    start_daemon: StartDaemon, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    key = "plain shared secret ✓"
    daemon = await start_daemon(**one_route(downstream, sign="hmac-sha256", secret=key))
    body = b'{"type": "order.created", "id": 7}'
    status, answer = await post(client, daemon.url("/hooks/shop"), body)
    assert status == 202, answer

    (received,) = await downstream.wait_count(1)
    expected = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    assert received.headers["X-Webhook-Signature"] == expected
    assert "webhook-signature" not in received.headers


# -- inbound verification -----------------------------------------------------------


def standard_headers(secret: str, msg_id: str, body: bytes, when: datetime) -> dict[str, str]:
    signature = Webhook(secret).sign(msg_id, when, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
        "Content-Type": "application/json",
    }


async def test_inbound_standard_webhooks_scheme(
    start_daemon: StartDaemon, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    secret = whsec()
    daemon = await start_daemon(
        sources={
            "std": {"path": "/hooks/std", "verify": {"scheme": "standard", "secrets": [secret]}}
        },
        destinations={"sink": {"url": downstream.url(), "sources": ["std"]}},
    )
    url = daemon.url("/hooks/std")
    now = datetime.now(tz=UTC)
    body = b'{"type": "invoice.paid", "data": {"amount": 99}}'

    rejected: list[tuple[str, bytes, dict[str, str]]] = [
        (
            "tampered body",
            body.replace(b"99", b"999"),
            standard_headers(secret, "msg_tampered", body, now),
        ),
        ("wrong secret", body, standard_headers(whsec(), "msg_wrong", body, now)),
        (
            "stale timestamp",
            body,
            standard_headers(secret, "msg_stale", body, now - timedelta(minutes=10)),
        ),
        (
            "future timestamp",
            body,
            standard_headers(secret, "msg_future", body, now + timedelta(minutes=10)),
        ),
        (
            "no signature",
            body,
            {"webhook-id": "msg_none", "webhook-timestamp": str(int(time.time()))},
        ),
    ]
    for case, payload, headers in rejected:
        async with client.post(url, data=payload, headers=headers) as response:
            text = await response.text()
            assert response.status == 401, (case, text)
            assert response.content_type == "application/json", case
            answer = json.loads(text)
            assert_error(response.status, answer, 401, "invalid_signature")
            # It never shows what the signature should have been.
            expected = Webhook(secret).sign(headers["webhook-id"], now, payload.decode())
            assert expected.partition(",")[2] not in text, case
            assert secret not in text, case

    headers = standard_headers(secret, "msg_provider_1", body, now)
    status, answer = await post(client, url, body, headers)
    assert status == 202, answer
    # The scheme's default event id is webhook-id: the provider's retry is a duplicate.
    status, again = await post(client, url, body, headers)
    assert (status, again) == (200, {"id": answer["id"], "duplicate": True})

    (received,) = await downstream.wait_count(1)
    assert received.webhook_id == answer["id"]
    assert received.body == body
    assert received.headers["Hookgate-Event-Type"] == "invoice.paid"
    assert message_count(daemon) == 1  # nothing rejected was stored


async def test_inbound_generic_hmac_scheme_with_rotation(
    start_daemon: StartDaemon, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    old, new = "old-secret", "new-secret"
    daemon = await start_daemon(
        sources={
            "custom": {
                "path": "/hooks/custom",
                "verify": {
                    "scheme": "hmac",
                    "header": "X-Signature",
                    "algorithm": "sha256",
                    "encoding": "hex",
                    "prefix": "sha256=",
                    "secrets": [old, new],
                },
            }
        },
        destinations={"sink": {"url": downstream.url(), "sources": ["custom"]}},
    )
    url = daemon.url("/hooks/custom")

    def sign(key: str, body: bytes) -> str:
        return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()

    accepted = []
    for key in (old, new):  # during a rotation either secret may sign
        body = f'{{"signed_with": "{key}"}}'.encode()
        status, answer = await post(client, url, body, {"X-Signature": sign(key, body)})
        assert status == 202, answer
        accepted.append(answer["id"])

    body = b'{"n": 1}'
    for case, headers in [
        ("wrong secret", {"X-Signature": sign("other", body)}),
        ("missing header", {}),
        ("no prefix", {"X-Signature": sign(new, body).removeprefix("sha256=")}),
        ("not hex", {"X-Signature": "sha256=zz" + sign(new, body)[9:]}),
        ("other body", {"X-Signature": sign(new, b'{"n": 2}')}),
    ]:
        status, answer = await post(client, url, body, headers)
        assert status == 401, (case, answer)
        assert_error(status, answer, 401, "invalid_signature")

    await downstream.wait_count(2)
    assert downstream.ids() == set(accepted)
    assert message_count(daemon) == 2


# -- dedup, fan-out, filters --------------------------------------------------------


async def test_duplicate_event_id_is_answered_with_first_id_and_delivered_once(
    start_daemon: StartDaemon, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    route = one_route(downstream)
    route["sources"]["shop"]["event_id"] = "json:id"
    daemon = await start_daemon(**route)
    url = daemon.url("/hooks/shop")
    body = b'{"id": "evt_1", "type": "order.created"}'

    status, first = await post(client, url, body)
    assert status == 202, first
    status, second = await post(client, url, body)
    assert (status, second) == (200, {"id": first["id"], "duplicate": True})
    # Same event id, different bytes: still the same event.
    status, third = await post(client, url, b'{"type": "order.created", "id": "evt_1", "x": 1}')
    assert (status, third) == (200, {"id": first["id"], "duplicate": True})
    status, other = await post(client, url, b'{"id": "evt_2", "type": "order.created"}')
    assert status == 202, other
    assert other["id"] != first["id"]

    await wait_for(lambda: downstream.ids() == {first["id"], other["id"]})
    await wait_for(lambda: daemon.delivery_rows(other["id"]) == [("orders", "delivered", 1, 200)])
    assert len(downstream.for_id(first["id"])) == 1
    assert daemon.delivery_rows(first["id"]) == [("orders", "delivered", 1, 200)]
    assert message_count(daemon) == 2


async def test_fan_out_and_event_filters(
    start_daemon: StartDaemon, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(
        sources={
            "shop": {"path": "/hooks/shop", "event_type": "json:type"},
            "lonely": {"path": "/hooks/lonely", "event_type": "json:type"},
        },
        destinations={
            "all": {"url": downstream.url("/all"), "sources": ["shop"]},
            "orders": {
                "url": downstream.url("/orders"),
                "sources": ["shop"],
                "events": ["order.*", "refund.created"],
            },
            "never": {
                "url": downstream.url("/never"),
                "sources": ["lonely"],
                "events": ["nothing.*"],
            },
        },
    )
    ids = {}
    for event_type in ("order.created", "user.created", "refund.created", "refund.failed"):
        body = json.dumps({"type": event_type}).encode()
        status, answer = await post(client, daemon.url("/hooks/shop"), body)
        assert status == 202, answer
        ids[event_type] = answer["id"]
    status, unmatched = await post(client, daemon.url("/hooks/lonely"), b'{"type": "user.created"}')
    assert status == 202, unmatched  # stored even though nobody wants it

    def paths_of(event_type: str) -> set[str]:
        return {r.path for r in downstream.for_id(ids[event_type])}

    await downstream.wait_count(6)
    await wait_for(
        lambda: daemon.query("SELECT count(*) FROM deliveries WHERE state = 'pending'")[0][0] == 0
    )
    assert paths_of("order.created") == {"/all", "/orders"}
    assert paths_of("refund.created") == {"/all", "/orders"}
    assert paths_of("user.created") == {"/all"}
    assert paths_of("refund.failed") == {"/all"}
    assert len(downstream.requests) == 6
    assert [d for d, *_ in daemon.delivery_rows(ids["user.created"])] == ["all"]
    assert [d for d, *_ in daemon.delivery_rows(ids["order.created"])] == ["all", "orders"]
    assert daemon.delivery_rows(unmatched["id"]) == []
    assert message_count(daemon, "lonely") == 1
    assert not downstream.for_id(unmatched["id"])


# -- ingress errors -----------------------------------------------------------------


async def chunks(total: int, size: int = 256) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        yield b"x" * piece
        sent += piece


@pytest.fixture
async def limited(start_daemon: StartDaemon, downstream: Downstream) -> Daemon:
    return await start_daemon(
        server={"max_body": "1KiB"},
        sources={
            "shop": {"path": "/hooks/shop", "event_type": "json:type"},
            "raw": {"path": "/hooks/raw"},
        },
        destinations={"sink": {"url": downstream.url(), "sources": ["shop", "raw"]}},
    )


async def test_ingress_errors_are_json(
    limited: Daemon, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    daemon = limited

    status, body = await post(client, daemon.url("/hooks/unknown"))
    assert_error(status, body, 404, "not_found")
    async with client.get(daemon.url("/hooks/unknown")) as response:
        assert_error(response.status, await response.json(), 404, "not_found")

    async with client.get(daemon.url("/hooks/shop")) as response:
        assert_error(response.status, await response.json(), 405, "method_not_allowed")
        assert "POST" in response.headers["Allow"]
    async with client.put(daemon.url("/hooks/shop"), data=b"{}") as response:
        assert_error(response.status, await response.json(), 405, "method_not_allowed")

    status, body = await post(client, daemon.url("/hooks/shop"), b'{"no_type": 1}')
    assert_error(status, body, 400, "missing_event_type")
    status, body = await post(client, daemon.url("/hooks/shop"), b'{"type": {"nested": 1}}')
    assert_error(status, body, 400, "missing_event_type")
    status, body = await post(
        client, daemon.url("/hooks/shop"), b"type=order.created", {"Content-Type": "text/plain"}
    )
    assert_error(status, body, 400, "invalid_json")

    assert message_count(daemon) == 0
    assert downstream.requests == []


async def test_body_size_limit(
    limited: Daemon, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    daemon = limited
    url = daemon.url("/hooks/raw")
    octet = {"Content-Type": "application/octet-stream"}

    status, body = await post(client, url, b"x" * 1025, octet)
    assert_error(status, body, 413, "payload_too_large")
    status, body = await post(client, url, b"x" * 64 * 1024, octet)
    assert_error(status, body, 413, "payload_too_large")

    # Chunked: no Content-Length, so the limit must cut the stream off while reading.
    async with client.post(url, data=chunks(4096), headers=octet) as response:
        assert "Content-Length" not in response.request_info.headers
        assert_error(response.status, await response.json(), 413, "payload_too_large")
    async with client.post(url, data=chunks(1025), headers=octet) as response:
        assert_error(response.status, await response.json(), 413, "payload_too_large")
    assert message_count(daemon) == 0

    # Exactly at the limit is fine, with a length and chunked.
    status, fixed = await post(client, url, b"a" * 1024, octet)
    assert status == 202, fixed
    async with client.post(url, data=chunks(1024), headers=octet) as response:
        assert response.status == 202
        streamed = await response.json()

    await downstream.wait_count(2)
    assert downstream.ids() == {fixed["id"], streamed["id"]}
    assert {r.body for r in downstream.requests} == {b"a" * 1024, b"x" * 1024}
    assert {r.headers["Content-Type"] for r in downstream.requests} == {"application/octet-stream"}
    assert all("Hookgate-Event-Type" not in r.headers for r in downstream.requests)


# -- admin and process --------------------------------------------------------------


async def test_health_and_readiness(
    start_daemon: StartDaemon, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(**one_route(downstream))
    async with client.get(daemon.admin_url("/healthz")) as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok"}
    async with client.get(daemon.admin_url("/readyz")) as response:
        assert response.status == 200
        ready = await response.json()
    assert ready["status"] == "ok"
    assert {"status", "checks", "queue", "destinations"} <= set(ready)
    assert all(v == "ok" for v in ready["checks"].values()), ready
    assert {"pending", "oldest_pending_age_s", "dead"} <= set(ready["queue"])
    assert ready["queue"]["dead"] == 0
    assert set(ready["destinations"]) == {"orders"}
    assert {"state", "pending"} <= set(ready["destinations"]["orders"])
    assert ready["destinations"]["orders"]["state"] in {"ok", "backing_off", "open", "paused"}


async def test_sigterm_exits_zero_and_logs_stopped(
    start_daemon: StartDaemon, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(**one_route(downstream))
    status, answer = await post(client, daemon.url("/hooks/shop"), b'{"type": "a"}')
    assert status == 202, answer
    await downstream.wait_count(1)

    assert await daemon.stop() == 0
    events = [e.get("event") for e in daemon.log_events()]
    assert "daemon.ready" in events
    assert "daemon.stopped" in events, events[-5:]
    assert "Traceback" not in daemon.stderr()
    assert "Traceback" not in daemon.stdout()


# -- the command line and config errors ---------------------------------------------


def bad_config(tmp_path: Path, **override: Any) -> Path:
    """A config with one mistake in it; it never gets to listen on anything real."""
    config: dict[str, Any] = {
        "server": {"listen": f"127.0.0.1:{free_port()}"},
        "admin": {"listen": f"127.0.0.1:{free_port()}"},
        "storage": {"path": "bad.db"},
        "sources": {"x": {"path": "/hooks/x", "verify": {"scheme": "none"}}},
        "destinations": {"d": {"url": "http://127.0.0.1:9/", "sources": ["x"]}},
    }
    for section, value in override.items():
        config[section] = value
    path = tmp_path / "bad.toml"
    path.write_text(to_toml(config), encoding="utf-8")
    return path


BAD_CONFIGS: dict[str, tuple[dict[str, Any], str]] = {
    "unknown scheme": (
        {"sources": {"x": {"path": "/hooks/x", "verify": {"scheme": "strpe", "secrets": ["s"]}}}},
        "sources.x.verify.scheme",
    ),
    "typo in a key": (
        {"sources": {"x": {"path": "/hooks/x", "evnt_type": "json:type"}}},
        "sources.x.evnt_type",
    ),
    "bad duration": (
        {"delivery": {"timeout": "10 parsecs"}},
        "delivery.timeout",
    ),
    "unknown source": (
        {"destinations": {"d": {"url": "http://127.0.0.1:9/", "sources": ["nope"]}}},
        "destinations.d.sources[0]",
    ),
    "unset environment variable": (
        {
            "sources": {
                "x": {
                    "path": "/hooks/x",
                    "verify": {
                        "scheme": "hmac",
                        "header": "X-Sig",
                        "secrets": ["${HOOKGATE_E2E_UNSET}"],
                    },
                }
            }
        },
        "sources.x.verify.secrets",
    ),
    # The next two are only caught when the verifier is built, after the store is open.
    "timestamp in signed_payload without timestamp_header": (
        {
            "sources": {
                "x": {
                    "path": "/hooks/x",
                    "verify": {
                        "scheme": "hmac",
                        "header": "X-Sig",
                        "secrets": ["s"],
                        "signed_payload": "{timestamp}.{body}",
                    },
                }
            }
        },
        "sources.x.verify",
    ),
    "basic secret without a colon": (
        {
            "sources": {
                "x": {"path": "/hooks/x", "verify": {"scheme": "basic", "secrets": ["nocolon"]}}
            }
        },
        "sources.x.verify",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_check_config_names_the_key(tmp_path: Path, case: str) -> None:
    override, key = BAD_CONFIGS[case]
    path = bad_config(tmp_path, **override)
    result = run_cli("check-config", "-c", str(path), timeout=10)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert key in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_serve_with_bad_config_exits_78_with_one_line(tmp_path: Path, case: str) -> None:
    override, key = BAD_CONFIGS[case]
    path = bad_config(tmp_path, **override)
    result = run_cli("serve", "-c", str(path), timeout=10)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 78, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hookgate: "), lines
    assert key in lines[0], lines


def test_check_config_redacts_secrets(tmp_path: Path) -> None:
    env_secret = "env-secret-" + secrets.token_hex(8)
    file_secret = "file-secret-" + secrets.token_hex(8)
    inline_secret = "inline-secret-" + secrets.token_hex(8)
    signing_secret = whsec()
    admin_token = "admin-token-" + secrets.token_hex(8)
    (tmp_path / "custom.key").write_text(file_secret + "\n", encoding="utf-8")
    config = {
        "admin": {"listen": "127.0.0.1:9090", "token": "${HOOKGATE_E2E_TOKEN}"},
        "sources": {
            "custom": {
                "path": "/hooks/custom",
                "verify": {
                    "scheme": "hmac",
                    "header": "X-Sig",
                    "secrets": ["${HOOKGATE_E2E_SECRET}", inline_secret],
                    "secret_file": "custom.key",
                },
            }
        },
        "destinations": {
            "d": {
                "url": "http://127.0.0.1:9/",
                "sources": ["custom"],
                "sign": "standard",
                "secret": signing_secret,
            }
        },
    }
    path = tmp_path / "good.toml"
    path.write_text(to_toml(config), encoding="utf-8")
    result = run_cli(
        "check-config",
        "-c",
        str(path),
        env={"HOOKGATE_E2E_SECRET": env_secret, "HOOKGATE_E2E_TOKEN": admin_token},
    )
    assert result.returncode == 0, result.stderr
    for value in (env_secret, file_secret, inline_secret, signing_secret, admin_token):
        assert value not in result.stdout
        assert value not in result.stderr
    resolved = json.loads(result.stdout)
    assert resolved["sources"]["custom"]["verify"]["secrets"] == ["***", "***", "***"]
    assert resolved["destinations"]["d"]["secret"] == "***"
    assert resolved["admin"]["token"] == "***"


async def test_sigint_exits_zero(start_daemon: StartDaemon, downstream: Downstream) -> None:
    """SIGINT behaves like SIGTERM: a clean exit 0."""
    daemon = await start_daemon(**one_route(downstream))
    daemon.signal(signal.SIGINT)
    assert await daemon.wait_exit() == 0
    assert "daemon.stopped" in [e.get("event") for e in daemon.log_events()]
    assert "Traceback" not in daemon.stderr()


async def test_burst_without_failures_is_attempted_once_per_delivery(
    start_daemon: StartDaemon, downstream: Downstream, client: aiohttp.ClientSession
) -> None:
    """No crash, no error: every delivery gets exactly one attempt, numbered 1."""
    daemon = await start_daemon(**one_route(downstream))
    url = daemon.url("/hooks/shop")
    count = 1000

    async def send(n: int) -> str:
        status, answer = await post(client, url, json.dumps({"type": "burst", "n": n}).encode())
        assert status == 202, answer
        return str(answer["id"])

    ids = set()
    for start in range(0, count, 100):
        ids |= set(await asyncio.gather(*(send(n) for n in range(start, start + 100))))
    await wait_for(
        lambda: downstream.ids() >= ids and daemon.delivery_states() == {"delivered": count},
        30,
        message=lambda: (
            f"{len(downstream.ids() & ids)} of {count} arrived; db: {daemon.delivery_states()}"
        ),
    )
    repeated = sorted(i for i in ids if len(downstream.for_id(i)) > 1)
    attempts = daemon.query("SELECT count(*) FROM attempts")[0][0]
    assert repeated == [], f"{len(repeated)} of {count} messages were POSTed more than once"
    assert {r.attempt for r in downstream.requests} == {1}
    assert attempts == count
