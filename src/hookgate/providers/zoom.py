"""Zoom: ``x-zm-signature: v0=<hex HMAC-SHA256 of "v0:<ts>:<body>">`` with ``<ts>`` from
``x-zm-request-timestamp``, keyed with the app's secret token; and the signed
``endpoint.url_validation`` handshake, answered ``{"plainToken", "encryptedToken":
<hex HMAC-SHA256 of plainToken>}``.

The handshake is signed like any event, so it is answered only after its signature
and timestamp checked out: a forged one gets 401, a replay older than ``tolerance``
401 too. The first secret answers (during a rotation, put the new one first).
"""

from __future__ import annotations

import orjson

from hookgate.providers import common
from hookgate.providers.common import Answer, Greeter, HandshakeRefused, Request, Settings


def _url_validation(settings: Settings) -> Greeter:
    key = common.first_secret(settings).encode()

    def greet(request: Request, now: float) -> Answer | None:
        # Cheap before parsing: every other event is stored as usual.
        if b"endpoint.url_validation" not in request.body:
            return None
        try:
            document = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(document, dict) or document.get("event") != "endpoint.url_validation":
            return None
        payload = document.get("payload")
        token = payload.get("plainToken") if isinstance(payload, dict) else None
        if not isinstance(token, str):
            raise HandshakeRefused(400, "invalid_handshake", "payload.plainToken is missing")
        token = common.challenge(token)
        encrypted = common.mac(key, "sha256", token.encode()).hex()
        return Answer(orjson.dumps({"plainToken": token, "encryptedToken": encrypted}))

    return greet


PROVIDER = common.hmac_preset(
    "zoom",
    common.HmacShape(
        header="x-zm-signature",
        prefix="v0=",
        timestamp_header="x-zm-request-timestamp",
        signed_payload="v0:{timestamp}:{body}",
    ),
    event_type=("json:event",),
    event_id=(),
    greetings=(common.Greeting("POST", signed=True, build=_url_validation),),
    docs="https://developers.zoom.us/docs/api/webhooks/#verify-webhook-events",
)
