"""The generic HMAC scheme: every algorithm, encoding, prefix and timestamp option."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable

import pytest
from multidict import CIMultiDict

from hookgate import providers

from .conftest import BODY, TOLERANCE, headers, make, rejects


def encode(digest: bytes, encoding: str) -> str:
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_hmac_accepts_every_algorithm_and_encoding(algorithm: str, encoding: str, now: int) -> None:
    digest = hmac.digest(b"key-2", BODY, algorithm)
    verifier = make(
        "hmac",
        "key-1",
        "key-2",
        header="X-Signature",
        algorithm=algorithm,
        encoding=encoding,
        prefix="sig=",
    )
    verifier.verify(headers(X_Signature="sig=" + encode(digest, encoding)), BODY, now)
    rejects(
        verifier,
        headers(X_Signature="sig=" + encode(digest, encoding)),
        BODY + b"!",
        "no signature matched",
    )


def test_hmac_does_not_accept_a_different_algorithm() -> None:
    digest = hmac.digest(b"key", BODY, "sha1")
    verifier = make("hmac", "key", header="X-Signature", algorithm="sha256")
    rejects(verifier, headers(X_Signature=digest.hex()), BODY, "no signature matched")


def timestamped(
    signed_timestamp: int, secret: bytes = b"key", sent_timestamp: str | None = None
) -> CIMultiDict[str]:
    digest = hmac.digest(secret, f"{signed_timestamp}.".encode() + BODY + b"|end", "sha256")
    sent = str(signed_timestamp) if sent_timestamp is None else sent_timestamp
    return headers(X_Signature=digest.hex(), X_Timestamp=sent)


def timestamped_verifier() -> providers.Verifier:
    return make(
        "hmac",
        "key",
        header="X-Signature",
        timestamp_header="X-Timestamp",
        signed_payload="{timestamp}.{body}|end",
    )


def test_hmac_with_a_timestamp_accepts_a_fresh_request(now: int) -> None:
    timestamped_verifier().verify(timestamped(now), BODY, now)


@pytest.mark.parametrize(
    ("hdrs_at", "skew", "reason"),
    [
        (lambda now: timestamped(now, b"other"), 0, "no signature matched"),
        (timestamped, TOLERANCE + 1, "stale timestamp"),
        (timestamped, -TOLERANCE - 1, "future timestamp"),
        (lambda now: timestamped(now, sent_timestamp=str(now + 1)), 0, "no signature matched"),
        (lambda now: timestamped(now, sent_timestamp="now"), 0, "malformed timestamp"),
        (lambda now: headers(X_Signature="00"), 0, "missing header"),
    ],
    ids=[
        "wrong-secret",
        "stale",
        "future",
        "timestamp-changed",
        "timestamp-garbage",
        "no-timestamp",
    ],
)
def test_hmac_with_a_timestamp_rejects(
    hdrs_at: Callable[[int], CIMultiDict[str]], skew: int, reason: str, now: int
) -> None:
    rejects(timestamped_verifier(), hdrs_at(now), BODY, reason, now + skew)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "header"),
        ({"header": "X-S", "signed_payload": "{timestamp}.{body}"}, "timestamp_header"),
        ({"header": "X-S", "timestamp_header": "X-T"}, "{timestamp}"),
        ({"header": "X-S", "signed_payload": "{timestamp}"}, "{body}"),
        ({"header": "X-S", "signed_payload": "{body}{body}"}, "{body}"),
    ],
)
def test_hmac_rejects_an_unusable_config_at_build_time(
    options: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
        make("hmac", "key", **options)
