"""PayPal, verified offline with a configured certificate, as its documentation
describes the signature (https://developer.paypal.com/api/rest/webhooks/rest/, "Verify
the signature yourself"): RSA-SHA256 over
``<transmission id>|<transmission time>|<webhook id>|<CRC32 of the body>``."""

from __future__ import annotations

import base64
import zlib
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from multidict import CIMultiDict

from hookgate import providers
from hookgate.errors import VerificationFailed

from . import samples
from .conftest import extracted, make, settings

WEBHOOK_ID = "1JE4291016473214C"
BODY = (
    b'{"id":"WH-2WR32451HC0233532-67976317FL4543714","event_type":"PAYMENT.CAPTURE.COMPLETED",'
    b'"resource_type":"capture","resource":{"id":"42311647XV020574X"}}'
)
CERTIFICATE = samples.certificate_pem(samples.RSA_KEY)


def paypal_signed(now: int, body: bytes = BODY, webhook_id: str = WEBHOOK_ID) -> CIMultiDict[str]:
    """Headers as PayPal sends them, signed as its documentation describes."""
    sent_at = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    transmission = "69cd13f0-d67a-11e5-baa3-778b53f4ae55"
    message = f"{transmission}|{sent_at}|{webhook_id}|{zlib.crc32(body)}".encode()
    signature = samples.RSA_KEY.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return CIMultiDict(
        {
            "PAYPAL-TRANSMISSION-ID": transmission,
            "PAYPAL-TRANSMISSION-TIME": sent_at,
            "PAYPAL-TRANSMISSION-SIG": base64.b64encode(signature).decode(),
            "PAYPAL-AUTH-ALGO": "SHA256withRSA",
            "PAYPAL-CERT-URL": "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77",
        }
    )


def test_paypal_accepts_a_signature_by_the_configured_certificate(now: int) -> None:
    hdrs = paypal_signed(now)
    make("paypal", WEBHOOK_ID, public_keys=[CERTIFICATE]).verify(hdrs, BODY, now)
    assert extracted("paypal", hdrs, BODY) == (
        "PAYMENT.CAPTURE.COMPLETED",
        "WH-2WR32451HC0233532-67976317FL4543714",
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("body", "no signature matched"),
        ("webhook id", "no signature matched"),
        ("certificate", "no signature matched"),
        ("algorithm", "unknown algorithm"),
        ("replay", "stale timestamp"),
        ("time", "malformed timestamp"),
    ],
)
def test_paypal_refuses_tampering_replays_and_other_accounts(
    change: str, reason: str, now: int
) -> None:
    hdrs = paypal_signed(now, webhook_id="OTHER" if change == "webhook id" else WEBHOOK_ID)
    body = BODY.replace(b"COMPLETED", b"REFUNDED") if change == "body" else BODY
    certificate = (
        samples.certificate_pem(samples.OTHER_RSA_KEY) if change == "certificate" else CERTIFICATE
    )
    if change == "algorithm":
        hdrs["PAYPAL-AUTH-ALGO"] = "SHA1withRSA"
    if change == "time":
        hdrs["PAYPAL-TRANSMISSION-TIME"] = "yesterday"
    at = now + 301 if change == "replay" else now
    with pytest.raises(VerificationFailed, match=reason):
        make("paypal", WEBHOOK_ID, public_keys=[certificate]).verify(hdrs, body, at)


def test_paypal_accepts_either_certificate_during_a_change(now: int) -> None:
    both = [samples.certificate_pem(samples.OTHER_RSA_KEY), CERTIFICATE]
    make("paypal", WEBHOOK_ID, public_keys=both).verify(paypal_signed(now), BODY, now)


def test_paypal_needs_the_certificate_and_the_webhook_id() -> None:
    with pytest.raises(ValueError, match="public key"):
        make("paypal", WEBHOOK_ID)
    with pytest.raises(ValueError, match="secret"):
        make("paypal", public_keys=[CERTIFICATE])


def test_what_hookgate_send_signs_verifies(now: int) -> None:
    options = samples.table("paypal")
    signed = providers.get("paypal").sign(options, BODY, now)
    providers.get("paypal").verifier(
        settings("paypal", *options.secrets, public_keys=[CERTIFICATE])
    ).verify(CIMultiDict(signed), BODY, now)
