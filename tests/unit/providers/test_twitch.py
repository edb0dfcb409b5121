"""Twitch EventSub, checked against the algorithm of its documentation: the hex
HMAC-SHA256 of message id + timestamp + raw body, in ``Twitch-Eventsub-Message-Signature``
after ``sha256=``. The page gives no signed example, so the signatures are computed
here, independently of hookgate; the bodies are the page's examples.

https://dev.twitch.tv/docs/eventsub/handling-webhook-events/
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

import orjson
import pytest
from multidict import CIMultiDict

from hookgate import providers

from .conftest import TOLERANCE, extracted, make, rejects, settings
from .handshakes import greet

SECRET = "twitch-eventsub-secret-0123"
MESSAGE_ID = "e76c6bd4-55c9-4987-8304-da1588d8988b"
NOTIFICATION = (
    b'{"subscription": {"id": "f1c2a387-161a-49f9-a165-0f21d7a4e1c4", "status": "enabled",'
    b' "type": "channel.follow", "version": "2", "condition": {"broadcaster_user_id": "1337"}},'
    b' "event": {"user_id": "1234", "user_login": "cool_user", "broadcaster_user_id": "1337"}}'
)
CHALLENGE = b"pogchamp-kappa-360noscope-vohiyo"
VERIFICATION = (
    b'{"challenge": "pogchamp-kappa-360noscope-vohiyo", "subscription": {"id":'
    b' "f1c2a387-161a-49f9-a165-0f21d7a4e1c4", "status": "webhook_callback_verification_pending",'
    b' "type": "channel.follow", "version": "2"}}'
)
REVOCATION = (
    b'{"subscription": {"id": "f1c2a387-161a-49f9-a165-0f21d7a4e1c4",'
    b' "status": "authorization_revoked", "type": "channel.follow", "version": "2"}}'
)


def rfc3339(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.123456789Z")


def signed(
    timestamp: int,
    body: bytes = NOTIFICATION,
    secret: str = SECRET,
    message_type: str = "notification",
) -> CIMultiDict[str]:
    sent = rfc3339(timestamp)
    mac = hmac.digest(secret.encode(), (MESSAGE_ID + sent).encode() + body, "sha256")
    return CIMultiDict(
        {
            "Twitch-Eventsub-Message-Id": MESSAGE_ID,
            "Twitch-Eventsub-Message-Timestamp": sent,
            "Twitch-Eventsub-Message-Signature": "sha256=" + mac.hex(),
            "Twitch-Eventsub-Message-Type": message_type,
            "Twitch-Eventsub-Subscription-Type": "channel.follow",
        }
    )


def test_twitch_accepts_a_notification_and_finds_its_event(now: int) -> None:
    make("twitch", "old-secret-0123", SECRET).verify(signed(now), NOTIFICATION, now)
    assert extracted("twitch", signed(now), NOTIFICATION) == ("channel.follow", MESSAGE_ID)
    assert providers.get("twitch").handshake(signed(now), NOTIFICATION) is None


@pytest.mark.parametrize(
    ("body", "secret", "skew", "reason"),
    [
        (NOTIFICATION.replace(b"1234", b"4321"), SECRET, 0, "no signature matched"),
        (NOTIFICATION, "another-secret", 0, "no signature matched"),
        (NOTIFICATION, SECRET, TOLERANCE + 1, "stale timestamp"),
        (NOTIFICATION, SECRET, -TOLERANCE - 1, "future timestamp"),
    ],
    ids=["tampered", "wrong-secret", "replayed-late", "future"],
)
def test_twitch_rejects(body: bytes, secret: str, skew: int, reason: str, now: int) -> None:
    rejects(make("twitch", SECRET), signed(now, secret=secret), body, reason, now + skew)


@pytest.mark.parametrize(
    ("header", "old", "new"),
    [
        ("Twitch-Eventsub-Message-Id", "e76c", "e76d"),
        # The same second: only the signature can tell.
        ("Twitch-Eventsub-Message-Timestamp", ".123456789Z", ".123456788Z"),
    ],
)
def test_twitch_signs_the_id_and_the_timestamp(header: str, old: str, new: str, now: int) -> None:
    hdrs = signed(now)
    hdrs[header] = hdrs[header].replace(old, new)
    rejects(make("twitch", SECRET), hdrs, NOTIFICATION, "no signature matched", now)


@pytest.mark.parametrize(
    ("timestamp", "reason"),
    [
        ("1700000000", "malformed timestamp"),
        ("2023-07-19T10:11:12.123+02:00", "malformed timestamp"),
        ("2023-13-19T10:11:12Z", "malformed timestamp"),
        ("2023-07-19T10:11:12.1234567890Z", "malformed timestamp"),
    ],
)
def test_twitch_rejects_a_malformed_timestamp(timestamp: str, reason: str, now: int) -> None:
    hdrs = signed(now)
    hdrs["Twitch-Eventsub-Message-Timestamp"] = timestamp
    rejects(make("twitch", SECRET), hdrs, NOTIFICATION, reason, now)


def test_twitch_accepts_a_timestamp_without_fraction(now: int) -> None:
    sent = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    mac = hmac.digest(SECRET.encode(), (MESSAGE_ID + sent).encode() + NOTIFICATION, "sha256")
    hdrs = signed(now)
    hdrs["Twitch-Eventsub-Message-Timestamp"] = sent
    hdrs["Twitch-Eventsub-Message-Signature"] = "sha256=" + mac.hex()
    make("twitch", SECRET).verify(hdrs, NOTIFICATION, now)


# -- the webhook_callback_verification challenge and revocations -----------------------------


def answer(hdrs: CIMultiDict[str], body: bytes) -> providers.Answer | None:
    """What the ingress answers once the request's signature checked out."""
    return greet("twitch", settings("twitch", SECRET), method="POST", headers=hdrs, body=body)


def test_the_challenge_is_answered_bare_as_text_once_verified(now: int) -> None:
    hdrs = signed(now, VERIFICATION, message_type="webhook_callback_verification")
    make("twitch", SECRET).verify(hdrs, VERIFICATION, now)
    (greeting,) = providers.get("twitch").all_greetings()
    assert (greeting.method, greeting.signed) == ("POST", True)
    reply = answer(hdrs, VERIFICATION)
    assert reply is not None
    assert (reply.status, reply.body, reply.content_type) == (200, CHALLENGE, "text/plain")
    assert answer(signed(now), NOTIFICATION) is None


def test_a_forged_or_replayed_challenge_fails_verification_first(now: int) -> None:
    forged = signed(now, VERIFICATION, "not-the-secret", "webhook_callback_verification")
    rejects(make("twitch", SECRET), forged, VERIFICATION, "no signature matched", now)
    replayed = signed(
        now - TOLERANCE - 1, VERIFICATION, message_type="webhook_callback_verification"
    )
    rejects(make("twitch", SECRET), replayed, VERIFICATION, "stale timestamp", now)


def test_a_revocation_is_verified_and_stored_not_answered(now: int) -> None:
    hdrs = signed(now, REVOCATION, message_type="revocation")
    make("twitch", SECRET).verify(hdrs, REVOCATION, now)
    assert answer(hdrs, REVOCATION) is None
    assert extracted("twitch", hdrs, REVOCATION) == ("channel.follow", MESSAGE_ID)


@pytest.mark.parametrize(
    "body",
    [
        b'{"challenge": 42}',
        b"[]",
        b"not json",
        orjson.dumps({"subscription": {}}),
        orjson.dumps({"challenge": "<script>alert(1)</script>"}),
    ],
)
def test_a_verification_without_a_usable_challenge_is_refused(body: bytes) -> None:
    hdrs = signed(0, body, message_type="webhook_callback_verification")
    with pytest.raises(providers.HandshakeRefused) as refused:
        answer(hdrs, body)
    assert (refused.value.status, refused.value.code) == (400, "invalid_handshake")


def test_twitchs_documented_window_is_ten_minutes() -> None:
    assert providers.get("twitch").tolerance == 600
