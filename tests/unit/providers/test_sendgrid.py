"""SendGrid's Event Webhook (ECDSA P-256), checked against its official library's
``EventWebhook`` helper and the example vector its libraries share."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from multidict import CIMultiDict
from sendgrid.helpers.eventwebhook import EventWebhook

from hookgate import providers
from hookgate.errors import VerificationFailed

from . import samples
from .conftest import extracted, headers, make, settings

# The example of SendGrid's libraries (sendgrid-python test/unit/test_eventwebhook.py,
# and the same vector in its C#, Go, Java, Node and Ruby libraries), also the example of
# https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features
PUBLIC_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcep"
    "xo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA=="
)
SIGNATURE = (
    "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFD"
    "WYNH2j/0="
)
TIMESTAMP = 1588788367
PAYLOAD = b'{"category":"example_payload","event":"test_event","message_id":"message_id"}'


def signed(signature: str = SIGNATURE, timestamp: int = TIMESTAMP) -> CIMultiDict[str]:
    return headers(
        X_Twilio_Email_Event_Webhook_Signature=signature,
        X_Twilio_Email_Event_Webhook_Timestamp=str(timestamp),
    )


def test_sendgrid_accepts_the_documented_example() -> None:
    assert EventWebhook(PUBLIC_KEY).verify_signature(PAYLOAD.decode(), SIGNATURE, str(TIMESTAMP))
    make("sendgrid", public_keys=[PUBLIC_KEY]).verify(signed(), PAYLOAD, TIMESTAMP)
    # A batch of events: no single type or id.
    assert extracted("sendgrid", signed(), PAYLOAD) == (None, None)


@pytest.mark.parametrize(
    ("body", "timestamp", "reason"),
    [
        (PAYLOAD.replace(b"test_event", b"open"), TIMESTAMP, "no signature matched"),
        (PAYLOAD, TIMESTAMP + 1, "no signature matched"),
        (PAYLOAD + b" ", TIMESTAMP, "no signature matched"),
    ],
)
def test_sendgrid_refuses_a_tampered_example(body: bytes, timestamp: int, reason: str) -> None:
    verifier = make("sendgrid", public_keys=[PUBLIC_KEY])
    with pytest.raises(VerificationFailed, match=reason):
        verifier.verify(signed(timestamp=timestamp), body, timestamp)
    assert not EventWebhook(PUBLIC_KEY).verify_signature(body.decode(), SIGNATURE, str(timestamp))


def test_sendgrid_refuses_a_replay_older_than_the_tolerance() -> None:
    verifier = make("sendgrid", public_keys=[PUBLIC_KEY])
    with pytest.raises(VerificationFailed, match="stale timestamp"):
        verifier.verify(signed(), PAYLOAD, TIMESTAMP + 301)


def test_sendgrid_library_accepts_what_hookgate_send_signs(now: int) -> None:
    options = samples.table("sendgrid")
    signed_headers = providers.get("sendgrid").sign(options, PAYLOAD, now)
    public = samples.P256_KEY.public_key()
    assert EventWebhook().verify_signature(
        PAYLOAD.decode(),
        signed_headers["X-Twilio-Email-Event-Webhook-Signature"],
        signed_headers["X-Twilio-Email-Event-Webhook-Timestamp"],
        public,
    )


def test_sendgrid_key_rotation_accepts_either_key(now: int) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    signature = other.sign(f"{now}".encode() + PAYLOAD, ec.ECDSA(hashes.SHA256()))
    hdrs = signed(base64.b64encode(signature).decode(), now)
    keys = [PUBLIC_KEY, samples.private_pem(other)]
    make("sendgrid", public_keys=keys).verify(hdrs, PAYLOAD, now)
    with pytest.raises(VerificationFailed):
        make("sendgrid", public_keys=[PUBLIC_KEY]).verify(hdrs, PAYLOAD, now)


@pytest.mark.parametrize("key", ["not a key", base64.b64encode(b"short").decode(), ""])
def test_sendgrid_refuses_a_key_that_is_not_p256(key: str) -> None:
    with pytest.raises(ValueError, match=r"public_keys\[0\]: expected an ECDSA P-256 public key"):
        providers.get("sendgrid").verifier(settings("sendgrid", public_keys=[key]))


def test_sendgrid_refuses_an_ed25519_key() -> None:
    with pytest.raises(ValueError, match="P-256"):
        providers.get("sendgrid").verifier(
            settings("sendgrid", public_keys=[samples.private_pem(samples.ED25519_KEY)])
        )
