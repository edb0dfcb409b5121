"""Dropbox: ``X-Dropbox-Signature: <hex HMAC-SHA256 of the body>`` keyed with the app
secret; and the GET ``?challenge=`` verification request, echoed as plain text.

The challenge carries no proof (Dropbox does not sign it) and needs none: the echo is
a function of the request alone, reveals nothing and stores nothing, so a forged or
replayed one gains nothing. It is echoed only when it is a short URL-safe token, as
``text/plain`` with ``nosniff`` (Dropbox's own advice against reflected scripts).
"""

from __future__ import annotations

from hookgate.providers import common
from hookgate.providers.common import Answer, Greeter, Request, Settings


def _challenge(settings: Settings) -> Greeter:
    def greet(request: Request, now: float) -> Answer | None:
        if "challenge" not in request.query:
            return None
        return common.text_answer(common.challenge(request.query.get("challenge")))

    return greet


PROVIDER = common.hmac_preset(
    "dropbox",
    common.HmacShape(header="X-Dropbox-Signature"),
    event_type=(),
    event_id=(),
    greetings=(common.Greeting("GET", signed=False, build=_challenge),),
    docs="https://www.dropbox.com/developers/reference/webhooks",
)
