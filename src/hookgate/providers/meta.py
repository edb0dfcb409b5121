"""Meta (Facebook, Instagram, Messenger, WhatsApp Cloud API): ``X-Hub-Signature-256:
sha256=<hex HMAC-SHA256 of the body>`` keyed with the app secret; and the GET
verification request (``hub.mode=subscribe``, ``hub.verify_token``, ``hub.challenge``).

The verification request is not signed: its proof is ``hub.verify_token``, the string
chosen when subscribing, which must equal the source's ``verify_token`` (compared in
constant time). A wrong or missing token is answered 403, as Meta's documentation
asks; without a configured ``verify_token`` no verification request is answered. The
challenge is echoed as plain text; a replay only gets its own challenge back.
"""

from __future__ import annotations

from hookgate.errors import VerificationFailed
from hookgate.providers import common
from hookgate.providers.common import Answer, Greeter, HandshakeRefused, Request, Settings


def _verification(settings: Settings) -> Greeter:
    token = settings.verify_token
    expected = None if token is None else common.SecretMatcher([token.encode()])

    def greet(request: Request, now: float) -> Answer | None:
        if "hub.mode" not in request.query:
            return None
        if request.query.get("hub.mode") != "subscribe":
            raise HandshakeRefused(400, "invalid_handshake", 'hub.mode is not "subscribe"')
        if expected is None:
            raise HandshakeRefused(403, "handshake_refused", "no verify_token is configured")
        try:
            expected.check(request.query.get("hub.verify_token", "").encode())
        except VerificationFailed:
            raise HandshakeRefused(
                403, "handshake_refused", "hub.verify_token does not match"
            ) from None
        return common.text_answer(common.challenge(request.query.get("hub.challenge")))

    return greet


PROVIDER = common.hmac_preset(
    "meta",
    common.HmacShape(header="X-Hub-Signature-256", prefix="sha256="),
    # "page", "instagram", "whatsapp_business_account", ...: what changed is per entry.
    event_type=("json:object",),
    event_id=(),
    greetings=(common.Greeting("GET", signed=False, build=_verification),),
    verify_keys=("secrets", "verify_token"),
    docs="https://developers.facebook.com/docs/graph-api/webhooks/getting-started",
)
