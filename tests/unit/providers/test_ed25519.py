"""The generic Ed25519 scheme, checked against PyNaCl (libsodium)."""

from __future__ import annotations

import base64

import pytest
from multidict import CIMultiDict
from nacl.signing import SigningKey

from hookgate.errors import VerificationFailed

from .conftest import make

KEY = SigningKey(bytes(range(1, 33)))
PUBLIC_B64 = base64.b64encode(KEY.verify_key.encode()).decode()
BODY = b'{"type":"user.created","id":"evt_1"}'
OPTIONS = {
    "header": "X-Signature",
    "prefix": "ed25519=",
    "encoding": "base64",
    "timestamp_header": "X-Timestamp",
    "signed_payload": "{timestamp}.{body}",
}


def signed(now: int, body: bytes = BODY) -> CIMultiDict[str]:
    signature = KEY.sign(f"{now}.".encode() + body).signature
    return CIMultiDict(
        {"X-Signature": "ed25519=" + base64.b64encode(signature).decode(), "X-Timestamp": str(now)}
    )


def test_ed25519_accepts_what_nacl_signs(now: int) -> None:
    make("ed25519", public_keys=[PUBLIC_B64], **OPTIONS).verify(signed(now), BODY, now)


def test_ed25519_body_only_with_a_hex_signature_and_a_hex_key() -> None:
    hdrs = CIMultiDict({"X-Sig": KEY.sign(BODY).signature.hex()})
    make("ed25519", public_keys=[KEY.verify_key.encode().hex()], header="X-Sig").verify(
        hdrs, BODY, 0
    )


@pytest.mark.parametrize("change", ["body", "timestamp", "replay", "prefix"])
def test_ed25519_refuses_tampering_and_replays(change: str, now: int) -> None:
    hdrs = signed(now)
    body = BODY + b" " if change == "body" else BODY
    if change == "timestamp":
        hdrs["X-Timestamp"] = str(now + 1)
    if change == "prefix":
        hdrs["X-Signature"] = hdrs["X-Signature"].removeprefix("ed25519=")
    at = now + 301 if change == "replay" else now
    with pytest.raises(VerificationFailed):
        make("ed25519", public_keys=[PUBLIC_B64], **OPTIONS).verify(hdrs, body, at)


def test_ed25519_needs_a_header_and_a_key() -> None:
    with pytest.raises(ValueError, match="header"):
        make("ed25519", public_keys=[PUBLIC_B64])
    with pytest.raises(ValueError, match="public key"):
        make("ed25519", header="X-Sig")
