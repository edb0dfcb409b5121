"""Inbound verification, checked against the providers' own libraries and documented examples.

Where a provider publishes a Python library (Standard Webhooks, Svix, Stripe, Slack), the
accepted requests are the ones that library signs; elsewhere they are the examples from
the provider's documentation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, get_args

import pytest
import standardwebhooks.webhooks
import stripe
import svix.webhooks
from multidict import CIMultiDict
from slack_sdk.signature import Clock, SignatureVerifier

from hookgate.config import Duration, Scheme, VerifyConfig
from hookgate.errors import VerificationFailed
from hookgate.verify import DEFAULT_EVENT_ID, DEFAULT_EVENT_TYPE, Verifier, build_verifier

TOLERANCE = 300

# The example secret of the Standard Webhooks spec and Svix docs.
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_STANDARD_SECRET = "whsec_" + base64.b64encode(b"an entirely different key").decode()
STRIPE_SECRET = "whsec_test_secret_0123456789"
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BODY = b'{"type": "invoice.paid", "id": "evt_1", "data": {"amount": 1200}}'


@pytest.fixture
def now() -> int:
    """The current time, read when each test runs, never at import.

    The official libraries used for cross-checks (standardwebhooks, svix, stripe)
    compare the signed timestamp with the real clock, so a timestamp taken when the
    module was imported goes stale once the suite has run for ``TOLERANCE``.
    """
    return int(time.time())


def at(template: str, now: int) -> str:
    """A parametrized header value with ``{now}`` / ``{now+1}`` filled in at run time."""
    return template.replace("{now+1}", str(now + 1)).replace("{now}", str(now))


def make(scheme: Scheme, *secrets: str, **options: Any) -> Verifier:
    config = VerifyConfig(
        scheme=scheme, secrets=list(secrets), tolerance=Duration(TOLERANCE), **options
    )
    return build_verifier(config)


def headers(**values: str) -> CIMultiDict[str]:
    return CIMultiDict((name.replace("_", "-"), value) for name, value in values.items())


def rejects(
    verifier: Verifier, hdrs: CIMultiDict[str], body: bytes, reason: str, now: float | None = None
) -> None:
    """``now`` defaults to the clock: pass the test's own when the headers carry a timestamp."""
    with pytest.raises(VerificationFailed) as failed:
        verifier.verify(hdrs, body, time.time() if now is None else now)
    assert failed.value.reason == reason
    assert str(failed.value) == reason


# -- none -------------------------------------------------------------------------


def test_none_accepts_anything(now: int) -> None:
    make("none").verify(CIMultiDict(), b"\xff anything", now)


# -- standard (Standard Webhooks / Svix) --------------------------------------------


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


# -- stripe ---------------------------------------------------------------------------


def stripe_header(timestamp: int, secret: str = STRIPE_SECRET, body: bytes = BODY) -> str:
    header: str = stripe.WebhookSignature.generate_signature_header(
        body.decode(), secret, timestamp=timestamp
    )
    return header


def test_stripe_accepts_the_official_library_and_it_agrees(now: int) -> None:
    header = stripe_header(now)
    make("stripe", STRIPE_SECRET).verify(headers(Stripe_Signature=header), BODY, now)
    stripe.WebhookSignature.verify_header(BODY, header, STRIPE_SECRET, TOLERANCE)
    stripe.Webhook.construct_event(BODY, header, STRIPE_SECRET, TOLERANCE)


def test_stripe_accepts_a_rotated_secret(now: int) -> None:
    verifier = make("stripe", "whsec_old", STRIPE_SECRET)
    verifier.verify(headers(Stripe_Signature=stripe_header(now)), BODY, now)


def test_stripe_accepts_any_v1_and_ignores_v0(now: int) -> None:
    # During a secret roll Stripe sends one v1 per active secret.
    old = stripe_header(now, "whsec_old").split("v1=")[1]
    new = stripe_header(now).split("v1=")[1]
    header = f"t={now},v1={old},v0=not-hex-at-all,v1={new},x=1"
    make("stripe", STRIPE_SECRET).verify(headers(Stripe_Signature=header), BODY, now)
    stripe.WebhookSignature.verify_header(BODY, header, STRIPE_SECRET, TOLERANCE)


@pytest.mark.parametrize(
    ("body", "secret", "skew", "reason"),
    [
        (BODY + b"\n", STRIPE_SECRET, 0, "no signature matched"),
        (BODY, "whsec_wrong", 0, "no signature matched"),
        (BODY, STRIPE_SECRET, TOLERANCE + 1, "stale timestamp"),
        (BODY, STRIPE_SECRET, -TOLERANCE - 1, "future timestamp"),
    ],
    ids=["tampered", "wrong-secret", "stale", "future"],
)
def test_stripe_rejects(body: bytes, secret: str, skew: int, reason: str, now: int) -> None:
    hdrs = headers(Stripe_Signature=stripe_header(now))
    rejects(make("stripe", secret), hdrs, body, reason, now + skew)


def test_stripe_rejects_future_timestamps_that_stripes_library_lets_through(now: int) -> None:
    header = stripe_header(now + 3600)
    # Stripe's own check is one-sided (only "too old"); ours bounds both ways.
    stripe.WebhookSignature.verify_header(BODY, header, STRIPE_SECRET, TOLERANCE)
    hdrs = headers(Stripe_Signature=header)
    rejects(make("stripe", STRIPE_SECRET), hdrs, BODY, "future timestamp", now)


def test_stripe_timestamp_is_signed(now: int) -> None:
    header = stripe_header(now).replace(f"t={now}", f"t={now + 1}")
    rejects(
        make("stripe", STRIPE_SECRET),
        headers(Stripe_Signature=header),
        BODY,
        "no signature matched",
        now,
    )


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("v1=00", "malformed header"),
        ("t={now},t={now},v1=00", "malformed header"),
        ("t={now},v1", "malformed header"),
        ("t={now}", "no signature matched"),
        ("t={now},v0=abcd", "no signature matched"),
        (f"t=abc,v1={'0' * 64}", "malformed timestamp"),
        ("t={now},v1=xyz", "malformed signature"),
        ("t={now},v1=abc", "malformed signature"),
        ("t={now}, v1=" + "0" * 64, "no signature matched"),
        ("", "malformed header"),
        ("t=é", "malformed header"),
    ],
)
def test_stripe_rejects_malformed_headers(header: str, reason: str, now: int) -> None:
    hdrs = headers(Stripe_Signature=at(header, now))
    rejects(make("stripe", STRIPE_SECRET), hdrs, BODY, reason, now)


def test_stripe_rejects_a_missing_header() -> None:
    rejects(make("stripe", STRIPE_SECRET), CIMultiDict(), BODY, "missing header")


# -- github -----------------------------------------------------------------------------

# The example from GitHub's "Validating webhook deliveries" documentation.
GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_github_accepts_the_documented_example(now: int) -> None:
    hdrs = headers(X_Hub_Signature_256=GITHUB_SIGNATURE)
    make("github", GITHUB_SECRET).verify(hdrs, GITHUB_BODY, now)
    make("github", "old secret", GITHUB_SECRET).verify(hdrs, GITHUB_BODY, now)


def test_github_accepts_upper_case_hex(now: int) -> None:
    hdrs = headers(X_Hub_Signature_256="sha256=" + GITHUB_SIGNATURE[7:].upper())
    make("github", GITHUB_SECRET).verify(hdrs, GITHUB_BODY, now)


@pytest.mark.parametrize(
    ("secret", "body", "signature", "reason"),
    [
        (GITHUB_SECRET, b"Hello, World?", GITHUB_SIGNATURE, "no signature matched"),
        ("It's a secret to everybody", GITHUB_BODY, GITHUB_SIGNATURE, "no signature matched"),
        (GITHUB_SECRET, GITHUB_BODY, GITHUB_SIGNATURE[7:], "malformed signature"),
        (GITHUB_SECRET, GITHUB_BODY, "sha1=" + GITHUB_SIGNATURE[7:], "malformed signature"),
        (GITHUB_SECRET, GITHUB_BODY, GITHUB_SIGNATURE[:-1], "malformed signature"),
        (GITHUB_SECRET, GITHUB_BODY, GITHUB_SIGNATURE[:-2], "no signature matched"),
        (GITHUB_SECRET, GITHUB_BODY, GITHUB_SIGNATURE + " ", "malformed signature"),
    ],
    ids=["tampered", "wrong-secret", "no-prefix", "sha1-prefix", "odd-hex", "short", "space"],
)
def test_github_rejects(secret: str, body: bytes, signature: str, reason: str) -> None:
    hdrs = headers(X_Hub_Signature_256=signature)
    rejects(make("github", secret), hdrs, body, reason)


def test_github_does_not_accept_the_legacy_sha1_header() -> None:
    legacy = hmac.new(GITHUB_SECRET.encode(), GITHUB_BODY, hashlib.sha1).hexdigest()
    hdrs = headers(X_Hub_Signature="sha1=" + legacy)
    rejects(make("github", GITHUB_SECRET), hdrs, GITHUB_BODY, "missing header")


def test_failure_never_shows_the_secret_or_the_expected_signature(now: int) -> None:
    hdrs = headers(X_Hub_Signature_256="sha256=" + "0" * 64)
    with pytest.raises(VerificationFailed) as failed:
        make("github", GITHUB_SECRET).verify(hdrs, GITHUB_BODY, now)
    shown = repr(failed.value) + str(failed.value) + failed.value.reason
    assert GITHUB_SECRET not in shown
    assert GITHUB_SIGNATURE[7:] not in shown


# -- shopify ----------------------------------------------------------------------------

# Shopify documents the recipe (base64 HMAC-SHA256 of the raw body with the app's
# secret) but no fixed example; this one was computed with `openssl dgst -hmac`.
SHOPIFY_SECRET = "hush"
SHOPIFY_BODY = b'{"id":820982911946154508,"email":"jon@doe.ca"}'
SHOPIFY_SIGNATURE = "fp5HwmAHEVGQQwJU1KRpk57Ts2YHF6/TLOCczCtB5bs="


def test_shopify_accepts_a_correct_signature_with_any_secret(now: int) -> None:
    hdrs = headers(X_Shopify_Hmac_Sha256=SHOPIFY_SIGNATURE)
    make("shopify", SHOPIFY_SECRET).verify(hdrs, SHOPIFY_BODY, now)
    make("shopify", "old", SHOPIFY_SECRET).verify(hdrs, SHOPIFY_BODY, now)


@pytest.mark.parametrize(
    ("secret", "body", "signature", "reason"),
    [
        (SHOPIFY_SECRET, SHOPIFY_BODY + b" ", SHOPIFY_SIGNATURE, "no signature matched"),
        ("Hush", SHOPIFY_BODY, SHOPIFY_SIGNATURE, "no signature matched"),
        (SHOPIFY_SECRET, SHOPIFY_BODY, SHOPIFY_SIGNATURE.rstrip("="), "malformed signature"),
        (SHOPIFY_SECRET, SHOPIFY_BODY, "not*base64", "malformed signature"),
        (
            SHOPIFY_SECRET,
            SHOPIFY_BODY,
            base64.b64decode(SHOPIFY_SIGNATURE).hex(),
            "no signature matched",
        ),
    ],
    ids=["tampered", "wrong-secret", "unpadded", "garbage", "hex-instead"],
)
def test_shopify_rejects(secret: str, body: bytes, signature: str, reason: str) -> None:
    rejects(make("shopify", secret), headers(X_Shopify_Hmac_Sha256=signature), body, reason)


# -- slack --------------------------------------------------------------------------------

# The example request from Slack's "Verifying requests from Slack" documentation.
SLACK_DOC_TIMESTAMP = 1531420618
SLACK_DOC_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id="
    b"G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-"
    b"collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F3977"
    b"00885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10"
    b"d2c447fce8b6703c"
)
SLACK_DOC_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


class FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def slack_headers(
    timestamp: int, secret: str = SLACK_SECRET, body: bytes = BODY
) -> CIMultiDict[str]:
    signature = SignatureVerifier(secret).generate_signature(timestamp=str(timestamp), body=body)
    assert signature is not None
    return headers(X_Slack_Signature=signature, X_Slack_Request_Timestamp=str(timestamp))


def test_slack_accepts_the_documented_example() -> None:
    hdrs = headers(
        X_Slack_Signature=SLACK_DOC_SIGNATURE, X_Slack_Request_Timestamp=str(SLACK_DOC_TIMESTAMP)
    )
    make("slack", SLACK_SECRET).verify(hdrs, SLACK_DOC_BODY, SLACK_DOC_TIMESTAMP)


def test_slack_accepts_the_official_library_and_it_agrees(now: int) -> None:
    hdrs = slack_headers(now)
    make("slack", SLACK_SECRET).verify(hdrs, BODY, now)
    assert SignatureVerifier(SLACK_SECRET, FixedClock(now)).is_valid_request(BODY, dict(hdrs))


def test_slack_accepts_a_rotated_secret(now: int) -> None:
    make("slack", "old-secret", SLACK_SECRET).verify(slack_headers(now), BODY, now)


@pytest.mark.parametrize(
    ("body", "secret", "skew", "reason"),
    [
        (BODY + b"&x=1", SLACK_SECRET, 0, "no signature matched"),
        (BODY, "another-secret", 0, "no signature matched"),
        (BODY, SLACK_SECRET, TOLERANCE + 1, "stale timestamp"),
        (BODY, SLACK_SECRET, -TOLERANCE - 1, "future timestamp"),
    ],
    ids=["tampered", "wrong-secret", "stale", "future"],
)
def test_slack_rejects(body: bytes, secret: str, skew: int, reason: str, now: int) -> None:
    rejects(make("slack", secret), slack_headers(now), body, reason, now + skew)


def test_slack_agrees_with_the_official_library_on_stale_requests(now: int) -> None:
    hdrs = slack_headers(now - TOLERANCE - 1)
    assert not SignatureVerifier(SLACK_SECRET, FixedClock(now)).is_valid_request(BODY, dict(hdrs))
    rejects(make("slack", SLACK_SECRET), hdrs, BODY, "stale timestamp", now)


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("X-Slack-Request-Timestamp", "soon", "malformed timestamp"),
        ("X-Slack-Request-Timestamp", "{now+1}", "no signature matched"),
        ("X-Slack-Signature", "v1=" + "0" * 64, "malformed signature"),
        ("X-Slack-Signature", "v0=zz", "malformed signature"),
    ],
)
def test_slack_rejects_malformed_headers(name: str, value: str, reason: str, now: int) -> None:
    hdrs = slack_headers(now)
    hdrs[name] = at(value, now)
    rejects(make("slack", SLACK_SECRET), hdrs, BODY, reason, now)


def test_slack_rejects_a_missing_timestamp(now: int) -> None:
    hdrs = slack_headers(now)
    del hdrs["X-Slack-Request-Timestamp"]
    rejects(make("slack", SLACK_SECRET), hdrs, BODY, "missing header", now)


# -- gitlab -------------------------------------------------------------------------------


def test_gitlab_accepts_the_secret_token(now: int) -> None:
    verifier = make("gitlab", "old-token", "s3cr3t-t0ken")
    verifier.verify(headers(X_Gitlab_Token="s3cr3t-t0ken"), BODY, now)
    verifier.verify(headers(X_Gitlab_Token="old-token"), BODY, now)


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("s3cr3t-t0ke", "no credentials matched"),
        ("s3cr3t-t0ken ", "no credentials matched"),
        ("S3CR3T-T0KEN", "no credentials matched"),
        ("", "no credentials matched"),
        ("s3cr3t-t0kén", "malformed header"),
    ],
)
def test_gitlab_rejects(token: str, reason: str) -> None:
    rejects(make("gitlab", "s3cr3t-t0ken"), headers(X_Gitlab_Token=token), BODY, reason)


def test_gitlab_rejects_a_missing_token() -> None:
    rejects(make("gitlab", "s3cr3t-t0ken"), CIMultiDict(), BODY, "missing header")


def test_gitlab_refuses_a_non_ascii_token_at_build_time() -> None:
    with pytest.raises(ValueError, match="ASCII"):
        make("gitlab", "tökén")


# -- basic ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "authorization"),
    [
        # Both examples from RFC 7617 (section 2 and 2.1, the UTF-8 one).
        ("Aladdin:open sesame", "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
        ("test:123£", "Basic dGVzdDoxMjPCow=="),
        ("Aladdin:open sesame", "basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
    ],
)
def test_basic_accepts_the_rfc_examples(secret: str, authorization: str, now: int) -> None:
    make("basic", "other:pw", secret).verify(headers(Authorization=authorization), BODY, now)


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        ("Basic " + base64.b64encode(b"Aladdin:open sesamE").decode(), "no credentials matched"),
        ("Basic " + base64.b64encode(b"Aladdin").decode(), "no credentials matched"),
        ("Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ==", "malformed header"),
        ("QWxhZGRpbjpvcGVuIHNlc2FtZQ==", "malformed header"),
        ("Basic not base64!", "malformed signature"),
        ("Basic", "no credentials matched"),
    ],
)
def test_basic_rejects(authorization: str, reason: str) -> None:
    verifier = make("basic", "Aladdin:open sesame")
    rejects(verifier, headers(Authorization=authorization), BODY, reason)


def test_basic_needs_user_and_password_in_each_secret() -> None:
    with pytest.raises(ValueError, match="user:password"):
        make("basic", "Aladdin:open sesame", "just-a-password")


# -- generic hmac ----------------------------------------------------------------------------


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


def timestamped_verifier() -> Verifier:
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


# -- across schemes ------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", [s for s in get_args(Scheme) if s != "none"])
def test_every_scheme_but_none_needs_a_secret(scheme: Scheme) -> None:
    with pytest.raises(ValueError, match="secret"):
        make(scheme, header="X-S")


def test_default_event_expressions_match_the_config_contract() -> None:
    assert DEFAULT_EVENT_TYPE == {
        "github": ("header:X-GitHub-Event",),
        "stripe": ("json:type",),
        "shopify": ("header:X-Shopify-Topic",),
        "slack": ("json:event.type", "json:type"),
        "standard": ("json:type",),
        "gitlab": ("header:X-Gitlab-Event",),
    }
    assert DEFAULT_EVENT_ID == {
        "github": ("header:X-GitHub-Delivery",),
        "stripe": ("json:id",),
        "shopify": ("header:X-Shopify-Webhook-Id",),
        "slack": ("json:event_id",),
        "standard": ("header:webhook-id", "header:svix-id"),
        "gitlab": ("header:X-Gitlab-Event-UUID",),
    }
    assert set(DEFAULT_EVENT_TYPE) | set(DEFAULT_EVENT_ID) <= set(get_args(Scheme))
