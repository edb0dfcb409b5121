"""Asana: the documented X-Hook-Signature, and the X-Hook-Secret handshake with its
enrollment rules (https://developers.asana.com/docs/webhooks-guide)."""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

import pytest

from hookgate import providers
from hookgate.errors import VerificationFailed

from .conftest import extracted, headers, settings
from .handshakes import greet

SECRET = "5d1e5a8b0e2f4a9a8f0d9a3b2c1e7f64"
BODY = b'{"events":[{"action":"changed","resource":{"gid":"1337","resource_type":"task"}}]}'


def signed(body: bytes = BODY, secret: str = SECRET) -> dict[str, str]:
    return {"X-Hook-Signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


def test_asana_accepts_the_hex_hmac_and_refuses_a_tampered_body() -> None:
    verifier = providers.get("asana").verifier(settings("asana", SECRET))
    verifier.verify(headers(**{"X_Hook_Signature": signed()["X-Hook-Signature"]}), BODY, 0)
    assert extracted("asana", headers(), BODY) == (None, None)
    with pytest.raises(VerificationFailed, match="no signature matched"):
        verifier.verify(headers(X_Hook_Signature=signed()["X-Hook-Signature"]), BODY + b" ", 0)


def test_a_known_secret_is_echoed() -> None:
    answer = greet(
        "asana", settings("asana", SECRET), method="POST", headers={"X-Hook-Secret": SECRET}
    )
    assert answer is not None
    assert (answer.status, answer.body, dict(answer.headers)) == (
        200,
        b"",
        {"X-Hook-Secret": SECRET},
    )


def test_another_secret_is_refused_when_one_is_configured() -> None:
    with pytest.raises(providers.HandshakeRefused) as refused:
        greet(
            "asana", settings("asana", SECRET), method="POST", headers={"X-Hook-Secret": "forged"}
        )
    assert (refused.value.status, refused.value.code) == (403, "handshake_refused")


def test_the_first_handshake_enrolls_its_secret_once(tmp_path: Path) -> None:
    file = tmp_path / "asana.secret"
    options = settings("asana", handshake_secret_file=str(file))
    verifier = providers.get("asana").verifier(options)
    with pytest.raises(VerificationFailed, match="no secret enrolled"):
        verifier.verify(headers(X_Hook_Signature=signed()["X-Hook-Signature"]), BODY, 0)

    answer = greet("asana", options, method="POST", headers={"X-Hook-Secret": SECRET})
    assert answer is not None and dict(answer.headers) == {"X-Hook-Secret": SECRET}
    assert file.read_text() == SECRET + "\n"
    assert file.stat().st_mode & 0o777 == 0o600
    # Events are checked with it at once, without a reload.
    verifier.verify(headers(X_Hook_Signature=signed()["X-Hook-Signature"]), BODY, 0)
    # Asana repeating its handshake is echoed; anyone else is refused, the file kept.
    assert greet("asana", options, method="POST", headers={"X-Hook-Secret": SECRET}) is not None
    with pytest.raises(providers.HandshakeRefused) as refused:
        greet("asana", options, method="POST", headers={"X-Hook-Secret": "late-forger"})
    assert refused.value.status == 403
    assert file.read_text() == SECRET + "\n"


@pytest.mark.parametrize("secret", ["", "x" * 257, "caf\u00e9"])
def test_a_malformed_secret_header_is_refused(secret: str, tmp_path: Path) -> None:
    options = settings("asana", handshake_secret_file=str(tmp_path / "s"))
    with pytest.raises(providers.HandshakeRefused) as refused:
        greet("asana", options, method="POST", headers={"X-Hook-Secret": secret})
    assert refused.value.status == 400
    assert not os.path.exists(tmp_path / "s")


def test_asana_needs_a_secret_or_a_file_to_record_one() -> None:
    with pytest.raises(ValueError, match="handshake_secret_file"):
        providers.get("asana").verifier(settings("asana"))


def test_an_event_is_no_handshake() -> None:
    assert (
        greet("asana", settings("asana", SECRET), method="POST", headers=signed(), body=BODY)
        is None
    )
