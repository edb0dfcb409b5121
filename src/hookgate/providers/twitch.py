"""Twitch EventSub (webhook transport): ``Twitch-Eventsub-Message-Signature:
sha256=<hex>``, an HMAC-SHA256 of message id + timestamp + body (concatenated as
sent), keyed with the subscription's secret. The timestamp is RFC 3339 with up to
nanoseconds and must be within ``tolerance``.

Three message types share that signature (``Twitch-Eventsub-Message-Type``):
``notification`` and ``revocation`` are stored and delivered (a revocation says why
Twitch ended the subscription; destinations can tell it by that header), and
``webhook_callback_verification`` is answered with its challenge as ``text/plain``
and not stored, once its signature and timestamp checked out. With ``provider =
"twitch"`` the window is the 10 minutes Twitch documents.
"""

from __future__ import annotations

import re
import secrets as random_ids
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import orjson

from hookgate.errors import VerificationFailed
from hookgate.providers import common

if TYPE_CHECKING:
    from hookgate.providers.common import Answer, Greeter, Request, Settings

_ID = "Twitch-Eventsub-Message-Id"
_TIMESTAMP = "Twitch-Eventsub-Message-Timestamp"
_SIGNATURE = "Twitch-Eventsub-Message-Signature"
_TYPE = "Twitch-Eventsub-Message-Type"
_PREFIX = "sha256="
# Twitch: "if the timestamp is older than 10 minutes, ... discard the message".
_TOLERANCE = 600.0
# RFC 3339 in UTC as Twitch writes it: "2023-07-19T10:11:12.123456789Z".
_RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z")


def _seconds(timestamp: str) -> str:
    """Unix seconds of a Twitch timestamp, for ``common.check_timestamp``."""
    form = _RFC3339.fullmatch(timestamp)
    if form is None:
        raise VerificationFailed("malformed timestamp")
    try:
        moment = datetime.fromisoformat(form[1]).replace(tzinfo=UTC)
    except ValueError:  # a month 13, a day 32
        raise VerificationFailed("malformed timestamp") from None
    # Whole seconds: the fraction cannot move a check measured in minutes.
    return str(max(int(moment.timestamp()), 0))


class _TwitchVerifier:
    def __init__(self, secrets: Sequence[str], tolerance: float) -> None:
        self._macs = common.keyed((s.encode() for s in secrets), "sha256")
        self._tolerance = tolerance

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Check the signature over id + timestamp + body, and the timestamp's age."""
        message_id = common.header(headers, _ID)
        timestamp = common.header(headers, _TIMESTAMP)
        value = common.header(headers, _SIGNATURE)
        if not value.startswith(_PREFIX):
            raise VerificationFailed("malformed signature")
        signature = common.from_hex(value[len(_PREFIX) :])
        common.check_timestamp(_seconds(timestamp), now, self._tolerance)
        common.match(self._macs, (signature,), (message_id + timestamp).encode(), body)


def _callback_verification(settings: Settings) -> Greeter:
    def greet(request: Request, now: float) -> Answer | None:
        """The signed webhook_callback_verification: answered with the bare challenge."""
        if request.headers.get(_TYPE) != "webhook_callback_verification":
            return None
        try:
            document = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            document = None
        value = document.get("challenge") if isinstance(document, dict) else None
        return common.text_answer(common.challenge(value if isinstance(value, str) else None))

    return greet


def _verifier(settings: Settings) -> common.Verifier:
    return _TwitchVerifier(settings.secrets, settings.tolerance)


def _sign(settings: Settings, body: bytes, now: int) -> dict[str, str]:
    # A fresh id per send: the default event_id is the message id.
    message_id = random_ids.token_hex(16)
    timestamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.000000000Z")
    key = common.first_secret(settings).encode()
    digest = common.mac(key, "sha256", (message_id + timestamp).encode(), body)
    return {
        _ID: message_id,
        _TIMESTAMP: timestamp,
        _SIGNATURE: _PREFIX + digest.hex(),
        _TYPE: "notification",
    }


PROVIDER = common.Provider(
    name="twitch",
    event_type=("header:Twitch-Eventsub-Subscription-Type", "json:subscription.type"),
    # Twitch re-sends a message with the same id: dedup on it is what Twitch asks for.
    event_id=("header:Twitch-Eventsub-Message-Id",),
    build=_verifier,
    signer=_sign,
    greetings=(common.Greeting("POST", signed=True, build=_callback_verification),),
    tolerance=_TOLERANCE,
    docs="https://dev.twitch.tv/docs/eventsub/handling-webhook-events/#verifying-the-event-message",
)
