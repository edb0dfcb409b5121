"""Microsoft Graph change notifications: no signature on the request; each
notification in ``{"value": [...]}`` carries the ``clientState`` set when subscribing,
which must equal one of ``secrets`` (constant time). And the subscription's
validation request: ``POST ?validationToken=T``, answered ``200 text/plain`` with T.

What this verifies: that the sender knows the ``clientState`` (a shared secret sent
in the body, over TLS), for every notification of a batch. It does not protect the
body against a party that saw one notification (it is a token, not a MAC), nor does
it check the ``validationTokens`` JWTs of rich notifications with resource data,
which need Microsoft's signing keys fetched online; use ``allow_ips`` as well.

The validation request carries no proof (Graph does not sign it) and needs none: the
echo is a function of the request alone, reveals nothing and stores nothing, so a
forged or replayed one gains nothing. It is echoed only when it is printable ASCII
of at most 1024 characters, as ``text/plain`` with ``nosniff``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from hookgate.errors import VerificationFailed
from hookgate.providers import common
from hookgate.providers.common import Answer, Greeter, Request, Settings


class _ClientStateVerifier:
    def __init__(self, secrets: Sequence[str]) -> None:
        self._states = common.SecretMatcher(s.encode() for s in secrets)

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Every notification's clientState must be one of the secrets."""
        notifications = _notifications(body)
        if not notifications:
            raise VerificationFailed("no notification")
        for notification in notifications:
            state = notification.get("clientState") if isinstance(notification, dict) else None
            if not isinstance(state, str):
                raise VerificationFailed("missing clientState")
            self._states.check(state.encode())


def _notifications(body: bytes) -> list[Any]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise VerificationFailed("malformed body") from None
    value = document.get("value") if isinstance(document, dict) else None
    if not isinstance(value, list):
        raise VerificationFailed("malformed body")
    return value


def _validation(settings: Settings) -> Greeter:
    def greet(request: Request, now: float) -> Answer | None:
        if "validationToken" not in request.query:
            return None
        token = request.query.get("validationToken")
        return common.text_answer(common.challenge(token, max_length=1024, printable=True))

    return greet


def _prepare(settings: Settings, body: bytes, now: int) -> bytes:
    """A test body as Graph sends it: its notifications (or the body itself as the
    only one) in ``{"value": [...]}``, each given the clientState."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        document = None
    if not isinstance(document, dict):
        raise ValueError("a Microsoft Graph test body is a JSON object")
    notifications = document.get("value")
    if not isinstance(notifications, list):
        document, notifications = {"value": [document]}, [document]
    state = common.first_secret(settings)
    value = [{**n, "clientState": state} if isinstance(n, dict) else n for n in notifications]
    return orjson.dumps({**document, "value": value})


PROVIDER = common.Provider(
    name="msgraph",
    event_type=(),
    event_id=(),
    build=lambda settings: _ClientStateVerifier(settings.secrets),
    signer=lambda settings, body, now: {},
    greetings=(common.Greeting("POST", signed=False, build=_validation),),
    prepare=_prepare,
    docs="https://learn.microsoft.com/en-us/graph/change-notifications-delivery-webhooks",
)
