"""Standard Webhooks and Svix, checked against both official libraries and the spec's example."""

from __future__ import annotations

import base64
import hmac
from datetime import UTC, datetime

import pytest
import standardwebhooks.webhooks
import svix.webhooks
from multidict import CIMultiDict

from .conftest import BODY, TOLERANCE, at, headers, make, rejects

# The example secret of the Standard Webhooks spec and Svix docs.
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_STANDARD_SECRET = "whsec_" + base64.b64encode(b"an entirely different key").decode()


def standard_headers(
    timestamp: int,
    secret: str = STANDARD_SECRET,
    body: bytes = BODY,
    msg_id: str = "msg_2b4Yx9",
    prefix: str = "webhook-",
) -> CIMultiDict[str]:
    signer = standardwebhooks.webhooks.Webhook(secret)
    signature = signer.sign(msg_id, datetime.fromtimestamp(timestamp, UTC), body.decode())
    return CIMultiDict(
        {
            f"{prefix}id": msg_id,
            f"{prefix}timestamp": str(timestamp),
            f"{prefix}signature": signature,
        }
    )


def test_standard_accepts_the_spec_example() -> None:
    hdrs = headers(
        webhook_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
        webhook_timestamp="1614265330",
        webhook_signature="v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    )
    make("standard", STANDARD_SECRET).verify(hdrs, b'{"test": 2432232314}', 1614265330)


def test_standard_accepts_the_official_library_and_it_agrees(now: int) -> None:
    hdrs = standard_headers(now)
    make("standard", STANDARD_SECRET).verify(hdrs, BODY, now)
    standardwebhooks.webhooks.Webhook(STANDARD_SECRET).verify(BODY, dict(hdrs))


def test_standard_accepts_svix_signatures_and_header_names(now: int) -> None:
    msg_id = "msg_svix_1"
    signature = svix.webhooks.Webhook(STANDARD_SECRET).sign(
        msg_id, datetime.fromtimestamp(now, UTC), BODY.decode()
    )
    hdrs = headers(svix_id=msg_id, svix_timestamp=str(now), svix_signature=signature)
    make("standard", STANDARD_SECRET).verify(hdrs, BODY, now)
    svix.webhooks.Webhook(STANDARD_SECRET).verify(BODY, dict(hdrs))


def test_standard_header_names_are_case_insensitive(now: int) -> None:
    hdrs = CIMultiDict({k.title(): v for k, v in standard_headers(now).items()})
    make("standard", STANDARD_SECRET).verify(hdrs, BODY, now)


def test_standard_accepts_a_rotated_secret(now: int) -> None:
    verifier = make("standard", OTHER_STANDARD_SECRET, STANDARD_SECRET)
    verifier.verify(standard_headers(now, STANDARD_SECRET), BODY, now)
    verifier.verify(standard_headers(now, OTHER_STANDARD_SECRET), BODY, now)


def test_standard_accepts_an_unpadded_secret_like_the_official_library(now: int) -> None:
    unpadded = OTHER_STANDARD_SECRET.rstrip("=")
    assert unpadded != OTHER_STANDARD_SECRET
    make("standard", unpadded).verify(standard_headers(now, OTHER_STANDARD_SECRET), BODY, now)


def test_standard_checks_every_v1_signature_and_skips_other_versions(now: int) -> None:
    good = standard_headers(now)["webhook-signature"]
    wrong = standard_headers(now, OTHER_STANDARD_SECRET)["webhook-signature"]
    hdrs = standard_headers(now)
    hdrs["webhook-signature"] = f"v1a,not+base64+at+all!! {wrong} v2,zzz {good}"
    make("standard", STANDARD_SECRET).verify(hdrs, BODY, now)


def test_standard_with_only_other_versions_fails(now: int) -> None:
    hdrs = standard_headers(now)
    hdrs["webhook-signature"] = hdrs["webhook-signature"].replace("v1,", "v2,")
    rejects(make("standard", STANDARD_SECRET), hdrs, BODY, "no signature matched", now)


def test_standard_signs_the_raw_bytes_even_when_not_utf8(now: int) -> None:
    body = b"\xff\xfe raw \x00 bytes"
    key = base64.b64decode(STANDARD_SECRET.removeprefix("whsec_"))
    mac = hmac.digest(key, f"m1.{now}.".encode() + body, "sha256")
    hdrs = headers(
        webhook_id="m1",
        webhook_timestamp=str(now),
        webhook_signature="v1," + base64.b64encode(mac).decode(),
    )
    make("standard", STANDARD_SECRET).verify(hdrs, body, now)


@pytest.mark.parametrize(
    ("body", "secret", "skew", "reason"),
    [
        (BODY + b" ", STANDARD_SECRET, 0, "no signature matched"),
        (BODY.replace(b"1200", b"9900"), STANDARD_SECRET, 0, "no signature matched"),
        (BODY, OTHER_STANDARD_SECRET, 0, "no signature matched"),
        (BODY, STANDARD_SECRET, TOLERANCE + 1, "stale timestamp"),
        (BODY, STANDARD_SECRET, -TOLERANCE - 1, "future timestamp"),
    ],
    ids=["appended", "changed", "wrong-secret", "stale", "future"],
)
def test_standard_rejects(body: bytes, secret: str, skew: int, reason: str, now: int) -> None:
    rejects(make("standard", secret), standard_headers(now), body, reason, now + skew)


def test_standard_tolerance_is_inclusive(now: int) -> None:
    verifier = make("standard", STANDARD_SECRET)
    verifier.verify(standard_headers(now), BODY, now + TOLERANCE)
    verifier.verify(standard_headers(now), BODY, now - TOLERANCE)


def test_standard_signature_covers_id_and_timestamp(now: int) -> None:
    verifier = make("standard", STANDARD_SECRET)
    hdrs = standard_headers(now)
    hdrs["webhook-id"] = "msg_other"
    rejects(verifier, hdrs, BODY, "no signature matched", now)
    hdrs = standard_headers(now)
    hdrs["webhook-timestamp"] = str(now + 1)
    rejects(verifier, hdrs, BODY, "no signature matched", now)


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("webhook-timestamp", "abc", "malformed timestamp"),
        ("webhook-timestamp", "{now}.0", "malformed timestamp"),
        ("webhook-timestamp", " {now}", "malformed timestamp"),
        ("webhook-timestamp", "-1", "malformed timestamp"),
        ("webhook-timestamp", "1e9", "malformed timestamp"),
        ("webhook-timestamp", "1_700_000_000", "malformed timestamp"),
        ("webhook-timestamp", "9" * 5000, "malformed timestamp"),
        ("webhook-timestamp", "\u0661\u0667" + "\u0660" * 8, "malformed header"),  # Arabic digits
        ("webhook-signature", "v1,!!!not base64!!!", "malformed signature"),
        ("webhook-signature", "v1,é", "malformed header"),
        ("webhook-signature", "", "no signature matched"),
        ("webhook-id", "msg_ü", "malformed header"),
    ],
)
def test_standard_rejects_malformed_headers(name: str, value: str, reason: str, now: int) -> None:
    hdrs = standard_headers(now)
    hdrs[name] = at(value, now)
    rejects(make("standard", STANDARD_SECRET), hdrs, BODY, reason, now)


@pytest.mark.parametrize("name", ["webhook-timestamp", "webhook-signature"])
def test_standard_rejects_a_missing_header(name: str, now: int) -> None:
    hdrs = standard_headers(now)
    del hdrs[name]
    rejects(make("standard", STANDARD_SECRET), hdrs, BODY, "missing header", now)


@pytest.mark.parametrize("secret", ["whsec_!!!", "whsec_", "whsec_===="])
def test_standard_rejects_an_unusable_secret_at_build_time(secret: str) -> None:
    with pytest.raises(ValueError, match="whsec_"):
        make("standard", secret)
