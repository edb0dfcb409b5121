"""Linear: Linear-Signature and the body's webhookTimestamp
(https://linear.app/developers/webhooks#securing-webhooks)."""

from __future__ import annotations

import hashlib
import hmac

import orjson
import pytest

from hookgate import providers
from hookgate.config import Duration
from hookgate.errors import VerificationFailed

from .conftest import extracted, headers, make

SECRET = "lin_wh_secret"


def linear_body(timestamp_ms: object) -> bytes:
    return orjson.dumps(
        {
            "action": "create",
            "type": "Issue",
            "data": {"id": "2174add1-f7c8-44e3-bbf3-2d60b5ea8bc9", "title": "Bug"},
            "webhookTimestamp": timestamp_ms,
        }
    )


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {
        "Linear-Signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
        "Linear-Delivery": "234d1a4e-b617-4388-90fe-adc3633d6b72",
    }


def test_linear_accepts_a_fresh_signed_body_and_extracts_type_and_delivery(now: int) -> None:
    body = linear_body(now * 1000)
    hdrs = headers(**{k.replace("-", "_"): v for k, v in signed(body).items()})
    make("linear", SECRET).verify(hdrs, body, now)
    assert extracted("linear", hdrs, body) == ("Issue", "234d1a4e-b617-4388-90fe-adc3633d6b72")


@pytest.mark.parametrize(
    ("timestamp", "reason"),
    [(-61_000, "stale timestamp"), (61_000, "future timestamp"), ("1", "malformed timestamp")],
)
def test_linear_refuses_a_replayed_or_malformed_timestamp(
    timestamp: object, reason: str, now: int
) -> None:
    stamp = now * 1000 + timestamp if isinstance(timestamp, int) else timestamp
    body = linear_body(stamp)
    hdrs = headers(**{k.replace("-", "_"): v for k, v in signed(body).items()})
    with pytest.raises(VerificationFailed, match=reason):
        make("linear", SECRET, tolerance=Duration(60)).verify(hdrs, body, now)


def test_linear_refuses_a_tampered_body(now: int) -> None:
    body = linear_body(now * 1000)
    hdrs = headers(**{k.replace("-", "_"): v for k, v in signed(body).items()})
    with pytest.raises(VerificationFailed, match="no signature matched"):
        make("linear", SECRET).verify(hdrs, body.replace(b"Bug", b"Feature"), now)


def test_linear_recommends_a_one_minute_window() -> None:
    assert providers.get("linear").tolerance == 60
