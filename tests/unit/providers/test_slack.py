"""Slack, checked against its official library and documented example; and its
url_verification handshake."""

from __future__ import annotations

import orjson
import pytest
from multidict import CIMultiDict
from slack_sdk.signature import Clock, SignatureVerifier

from hookgate import providers

from .conftest import BODY, TOLERANCE, at, headers, make, rejects

SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


# The example request from Slack's "Verifying requests from Slack" documentation.
SLACK_DOC_TIMESTAMP = 1531420618
SLACK_DOC_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id="
    b"G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-"
    b"collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F3977"
    b"00885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10"
    b"d2c447fce8b6703c"
)
SLACK_DOC_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


class FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def slack_headers(
    timestamp: int, secret: str = SLACK_SECRET, body: bytes = BODY
) -> CIMultiDict[str]:
    signature = SignatureVerifier(secret).generate_signature(timestamp=str(timestamp), body=body)
    assert signature is not None
    return headers(X_Slack_Signature=signature, X_Slack_Request_Timestamp=str(timestamp))


def test_slack_accepts_the_documented_example() -> None:
    hdrs = headers(
        X_Slack_Signature=SLACK_DOC_SIGNATURE, X_Slack_Request_Timestamp=str(SLACK_DOC_TIMESTAMP)
    )
    make("slack", SLACK_SECRET).verify(hdrs, SLACK_DOC_BODY, SLACK_DOC_TIMESTAMP)


def test_slack_accepts_the_official_library_and_it_agrees(now: int) -> None:
    hdrs = slack_headers(now)
    make("slack", SLACK_SECRET).verify(hdrs, BODY, now)
    assert SignatureVerifier(SLACK_SECRET, FixedClock(now)).is_valid_request(BODY, dict(hdrs))


def test_slack_accepts_a_rotated_secret(now: int) -> None:
    make("slack", "old-secret", SLACK_SECRET).verify(slack_headers(now), BODY, now)


@pytest.mark.parametrize(
    ("body", "secret", "skew", "reason"),
    [
        (BODY + b"&x=1", SLACK_SECRET, 0, "no signature matched"),
        (BODY, "another-secret", 0, "no signature matched"),
        (BODY, SLACK_SECRET, TOLERANCE + 1, "stale timestamp"),
        (BODY, SLACK_SECRET, -TOLERANCE - 1, "future timestamp"),
    ],
    ids=["tampered", "wrong-secret", "stale", "future"],
)
def test_slack_rejects(body: bytes, secret: str, skew: int, reason: str, now: int) -> None:
    rejects(make("slack", secret), slack_headers(now), body, reason, now + skew)


def test_slack_agrees_with_the_official_library_on_stale_requests(now: int) -> None:
    hdrs = slack_headers(now - TOLERANCE - 1)
    assert not SignatureVerifier(SLACK_SECRET, FixedClock(now)).is_valid_request(BODY, dict(hdrs))
    rejects(make("slack", SLACK_SECRET), hdrs, BODY, "stale timestamp", now)


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("X-Slack-Request-Timestamp", "soon", "malformed timestamp"),
        ("X-Slack-Request-Timestamp", "{now+1}", "no signature matched"),
        ("X-Slack-Signature", "v1=" + "0" * 64, "malformed signature"),
        ("X-Slack-Signature", "v0=zz", "malformed signature"),
    ],
)
def test_slack_rejects_malformed_headers(name: str, value: str, reason: str, now: int) -> None:
    hdrs = slack_headers(now)
    hdrs[name] = at(value, now)
    rejects(make("slack", SLACK_SECRET), hdrs, BODY, reason, now)


def test_slack_rejects_a_missing_timestamp(now: int) -> None:
    hdrs = slack_headers(now)
    del hdrs["X-Slack-Request-Timestamp"]
    rejects(make("slack", SLACK_SECRET), hdrs, BODY, "missing header", now)


# -- the url_verification handshake --------------------------------------------------------

CHALLENGE = "3eZbrw1aBm2rZgRNFdxV2595"


def test_url_verification_is_answered_with_its_challenge() -> None:
    # The request Slack sends when a Request URL is entered (Events API docs).
    body = orjson.dumps(
        {"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": CHALLENGE, "type": "url_verification"}
    )
    slack = providers.get("slack")
    assert slack.has_handshake
    answer = slack.handshake(slack_headers(0, body=body), body)
    assert answer is not None
    assert orjson.loads(answer) == {"challenge": CHALLENGE}


@pytest.mark.parametrize(
    "body",
    [
        BODY,
        b'{"type": "event_callback", "event": {"type": "url_verification"}}',
        b'{"type": "url_verification"}',
        b'{"type": "url_verification", "challenge": 42}',
        b'["url_verification"]',
        b"url_verification, but not JSON",
        b"type=url_verification&challenge=x",
    ],
    ids=["event", "nested", "no-challenge", "number", "array", "not-json", "form"],
)
def test_anything_else_is_no_handshake(body: bytes) -> None:
    assert providers.get("slack").handshake(slack_headers(0, body=body), body) is None
