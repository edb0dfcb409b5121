"""Xero: ``x-xero-signature: <base64 HMAC-SHA256 of the body>``, keyed with the app's
webhook key; and the *intent to receive* check.

Before Xero enables a webhook it posts payloads with no events, some signed
correctly and some not, and expects 200 for the first and 401 for the others. The
wrong ones fail verification (401) like any forged request; a correctly signed one
with an empty ``events`` list is answered 200 with an empty body and not stored.
"""

from __future__ import annotations

import orjson

from hookgate.providers import common
from hookgate.providers.common import Answer, Greeter, Request, Settings


def _intent_to_receive(settings: Settings) -> Greeter:
    def greet(request: Request, now: float) -> Answer | None:
        """A verified payload without events: Xero's check, answered and not stored."""
        try:
            document = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(document, dict) or document.get("events") != []:
            return None
        return common.text_answer("")

    return greet


PROVIDER = common.hmac_preset(
    "xero",
    common.HmacShape(header="x-xero-signature", encoding="base64"),
    # One request may carry several events; the defaults name the first.
    event_type=("json:events.0.eventCategory",),
    event_id=(),
    greetings=(common.Greeting("POST", signed=True, build=_intent_to_receive),),
    docs="https://developer.xero.com/documentation/guides/webhooks/configuring-your-server/",
)
