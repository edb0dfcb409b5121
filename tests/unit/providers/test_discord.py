"""Discord (Ed25519), checked against PyNaCl, the library Discord's own documentation
uses to verify interactions
(https://discord.com/developers/docs/interactions/overview#setting-up-an-endpoint-validating-security-request-headers)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from multidict import CIMultiDict
from nacl.signing import SigningKey, VerifyKey

from hookgate import providers
from hookgate.errors import VerificationFailed

from . import samples
from .conftest import extracted, headers, make, request, settings

SEED = bytes(range(32))
NACL_KEY = SigningKey(SEED)
PUBLIC_HEX = NACL_KEY.verify_key.encode().hex()
INTERACTION = (
    b'{"id":"1207153823441121290","application_id":"1207148812934205440","type":2,'
    b'"data":{"name":"ping","type":1},"token":"aW50ZXJhY3Rpb24"}'
)
EVENT = (
    b'{"version":1,"application_id":"1207148812934205440","type":1,'
    b'"event":{"type":"APPLICATION_AUTHORIZED","timestamp":"2024-10-18T14:42:53.064834",'
    b'"data":{"integration_type":1}}}'
)


def nacl_signed(body: bytes, timestamp: int, key: SigningKey = NACL_KEY) -> CIMultiDict[str]:
    signature = key.sign(str(timestamp).encode() + body).signature.hex()
    return headers(X_Signature_Ed25519=signature, X_Signature_Timestamp=str(timestamp))


def test_discord_accepts_what_nacl_signs_and_extracts_type_and_id(now: int) -> None:
    make("discord", public_keys=[PUBLIC_HEX]).verify(
        nacl_signed(INTERACTION, now), INTERACTION, now
    )
    assert extracted("discord", CIMultiDict(), INTERACTION) == ("2", "1207153823441121290")
    make("discord", public_keys=[PUBLIC_HEX]).verify(nacl_signed(EVENT, now), EVENT, now)
    assert extracted("discord", CIMultiDict(), EVENT) == ("APPLICATION_AUTHORIZED", None)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b, t: (h, b.replace(b"ping", b"pong"), t),
        lambda h, b, t: ({**h, "X-Signature-Timestamp": str(t + 1)}, b, t),
        lambda h, b, t: (nacl_signed(b, t, SigningKey(bytes(32))), b, t),
    ],
    ids=["body", "timestamp", "another key"],
)
def test_discord_refuses_a_tampered_request(tamper, now: int) -> None:  # type: ignore[no-untyped-def]
    hdrs, body, timestamp = tamper(dict(nacl_signed(INTERACTION, now)), INTERACTION, now)
    with pytest.raises(VerificationFailed):
        make("discord", public_keys=[PUBLIC_HEX]).verify(CIMultiDict(hdrs), body, timestamp)


def test_discord_refuses_a_replay_older_than_the_tolerance(now: int) -> None:
    hdrs = nacl_signed(INTERACTION, now - 301)
    with pytest.raises(VerificationFailed, match="stale timestamp"):
        make("discord", public_keys=[PUBLIC_HEX]).verify(hdrs, INTERACTION, now)


def test_nacl_accepts_what_hookgate_send_signs(now: int) -> None:
    signed = providers.get("discord").sign(samples.table("discord"), EVENT, now)
    public = samples.ED25519_KEY.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    message = signed["X-Signature-Timestamp"].encode() + EVENT
    VerifyKey(public).verify(message, bytes.fromhex(signed["X-Signature-Ed25519"]))


@pytest.mark.parametrize(
    ("body", "answer"),
    [
        (b'{"id":"1","application_id":"2","type":1,"token":"t","version":1}', (200, b'{"type":1}')),
        (b'{"version":1,"application_id":"2","type":0}', (204, b"")),
        (INTERACTION, None),
        (EVENT, None),
    ],
    ids=["interaction ping", "webhook event ping", "interaction", "event"],
)
def test_discord_answers_its_pings_and_nothing_else(
    body: bytes, answer: tuple[int, bytes] | None, now: int
) -> None:
    (greeting,) = providers.get("discord").all_greetings()
    assert greeting.signed and greeting.method == "POST"
    greet = greeting.build(settings("discord", public_keys=[PUBLIC_HEX]))
    got = greet(request(nacl_signed(body, now), body), now)
    assert (None if got is None else (got.status, got.body)) == answer


@pytest.mark.parametrize("key", [PUBLIC_HEX[:-2], "zz" * 32, samples.private_pem(samples.P256_KEY)])
def test_discord_refuses_a_key_that_is_not_ed25519(key: str) -> None:
    with pytest.raises(ValueError, match="Ed25519"):
        make("discord", public_keys=[key])


def test_discord_needs_a_public_key() -> None:
    with pytest.raises(ValueError, match="public key"):
        make("discord")
