"""X (Twitter) Account Activity API: ``X-Twitter-Webhooks-Signature: sha256=<base64
HMAC-SHA256 of the body>`` keyed with the app's consumer secret; and the GET
challenge-response check (CRC): ``?crc_token=T`` answered ``{"response_token":
"sha256=<base64 HMAC-SHA256 of T>"}``.

The CRC is not signed, so anyone may ask for a response token, and the response token
is the same HMAC that signs a body: answered for any input, the CRC would sign a
forged webhook. It is answered only for a ``crc_token`` of at most 256 URL-safe token
characters (X sends a UUID), which can never be a JSON body, so no answer is a valid
signature of a webhook. A replay gets the same answer, which it could compute from
nothing new. The first secret answers (during a rotation, put the new one first).
"""

from __future__ import annotations

import base64

import orjson

from hookgate.providers import common
from hookgate.providers.common import Answer, Greeter, Request, Settings


def _crc(settings: Settings) -> Greeter:
    key = common.first_secret(settings).encode()

    def greet(request: Request, now: float) -> Answer | None:
        if "crc_token" not in request.query:
            return None
        token = common.challenge(request.query.get("crc_token"))
        digest = common.mac(key, "sha256", token.encode())
        response = "sha256=" + base64.b64encode(digest).decode()
        return Answer(orjson.dumps({"response_token": response}))

    return greet


PROVIDER = common.hmac_preset(
    "twitter",
    common.HmacShape(header="X-Twitter-Webhooks-Signature", encoding="base64", prefix="sha256="),
    event_type=(),
    event_id=(),
    greetings=(common.Greeting("GET", signed=False, build=_crc),),
    docs="https://developer.x.com/en/docs/x-api/enterprise/account-activity-api/guides/securing-webhooks",
)
