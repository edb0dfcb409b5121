"""Properties of every verifier: forged or garbled requests never pass, and never raise
anything but VerificationFailed; correctly signed requests always pass."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import standardwebhooks.webhooks
import stripe
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, MultiDict
from slack_sdk.signature import SignatureVerifier

from hookgate import providers
from hookgate.config import Duration, Scheme, VerifyConfig
from hookgate.errors import VerificationFailed

NOW = 1_700_000_000
TOLERANCE = 300
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STANDARD_KEY = base64.b64decode(STANDARD_SECRET.removeprefix("whsec_"))
OTHER_STANDARD_SECRET = "whsec_" + base64.b64encode(b"another key").decode()
SECRET = "a-shared-secret"
BASIC_SECRET = "user:pass word"
NETLIFY_SECRET = "a-netlify-jws-secret-of-32-bytes-at-least"
CALLBACK_URL = "https://hooks.example.com/hooks/p"
# With rotated=True, the secret in front of the signing one, of the scheme's own form.
OTHER_SECRETS = {
    "standard": OTHER_STANDARD_SECRET,
    "clerk": OTHER_STANDARD_SECRET,
    "resend": OTHER_STANDARD_SECRET,
    "netlify": "another-netlify-jws-secret-32-bytes-long",
}

PROPERTY = settings(max_examples=200, deadline=None)

# (scheme, secret, extra VerifyConfig options): every scheme that checks something.
SCHEMES: dict[str, tuple[Scheme, str, dict[str, Any]]] = {
    "standard": ("standard", STANDARD_SECRET, {}),
    "stripe": ("stripe", SECRET, {}),
    "github": ("github", SECRET, {}),
    "shopify": ("shopify", SECRET, {}),
    "slack": ("slack", SECRET, {}),
    "gitlab": ("gitlab", SECRET, {}),
    "basic": ("basic", BASIC_SECRET, {}),
    "hmac": ("hmac", SECRET, {"header": "X-Sig", "algorithm": "sha512", "encoding": "base64"}),
    "hmac-timestamped": (
        "hmac",
        SECRET,
        {"header": "X-Sig", "timestamp_header": "X-Ts", "signed_payload": "{timestamp}:{body}"},
    ),
    # The providers known by name (Adyen signs inside the body: test_adyen.py).
    **{
        name: (name, SECRET, {})
        for name in (
            "bitbucket",
            "calendly",
            "coinbase",
            "forgejo",
            "gitea",
            "intuit",
            "jira",
            "mollie",
            "pagerduty",
            "razorpay",
            "segment",
            "sentry",
            "twitch",
            "typeform",
            "vercel",
            "woocommerce",
            "xero",
        )
    },
    "clerk": ("clerk", STANDARD_SECRET, {}),
    "resend": ("resend", STANDARD_SECRET, {}),
    "netlify": ("netlify", NETLIFY_SECRET, {}),
    "postmark": ("postmark", BASIC_SECRET, {}),
    # Trello and Contentful sign the URL they post to: requests go to CALLBACK_URL.
    "trello": ("trello", SECRET, {}),
    "contentful": ("contentful", SECRET, {}),
}


Check = Callable[[providers.Request, float], None]


def verifier(name: str, *, rotated: bool = False) -> Check:
    scheme, secret, options = SCHEMES[name]
    # With rotated=True the signing secret is the second one, as during a rotation.
    other = OTHER_SECRETS.get(scheme, "other:secret")
    secrets = [other, secret] if rotated else [secret]
    config = VerifyConfig(scheme=scheme, secrets=secrets, tolerance=Duration(TOLERANCE), **options)
    return providers.get(scheme).check(config)


def mac(message: bytes, key: bytes = SECRET.encode(), algorithm: str = "sha256") -> bytes:
    return hmac.digest(key, message, algorithm)


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def rfc3339(ts: int) -> str:
    # RFC 3339 ends with the year 9999: later timestamps are drawn as its last second.
    last = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    moment = datetime.fromtimestamp(min(ts, int(last.timestamp())), UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000000001Z")


def netlify_token(body: bytes) -> str:
    def b64url(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64url(b'{"alg":"HS256","typ":"JWT"}')
    claims = b64url(b'{"iss":"netlify","sha256":"%s"}' % hashlib.sha256(body).hexdigest().encode())
    signature = mac(f"{head}.{claims}".encode(), NETLIFY_SECRET.encode())
    return f"{head}.{claims}.{b64url(signature)}"


def contentful_headers(body: bytes, ts: int) -> dict[str, str]:
    signed = "x-contentful-signed-headers,x-contentful-timestamp"
    canonical = (
        f"POST\n/hooks/p\nx-contentful-signed-headers:{signed};x-contentful-timestamp:{ts}000\n"
    )
    return {
        "x-contentful-timestamp": f"{ts}000",
        "x-contentful-signed-headers": signed,
        "x-contentful-signature": mac(canonical.encode() + body).hex(),
    }


# Signers, each written from the provider's documented algorithm over raw bytes (the
# official libraries only take text; they get their own property below).
Signer = Callable[[bytes, int], dict[str, str]]
SIGNERS: dict[str, Signer] = {
    "standard": lambda body, ts: {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(ts),
        "webhook-signature": "v1,"
        + base64.b64encode(mac(f"msg_1.{ts}.".encode() + body, STANDARD_KEY)).decode(),
    },
    "stripe": lambda body, ts: {
        "Stripe-Signature": f"t={ts},v1={mac(f'{ts}.'.encode() + body).hex()}"
    },
    "github": lambda body, ts: {"X-Hub-Signature-256": "sha256=" + mac(body).hex()},
    "shopify": lambda body, ts: {"X-Shopify-Hmac-Sha256": base64.b64encode(mac(body)).decode()},
    "slack": lambda body, ts: {
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": "v0=" + mac(f"v0:{ts}:".encode() + body).hex(),
    },
    "gitlab": lambda body, ts: {"X-Gitlab-Token": SECRET},
    "basic": lambda body, ts: {
        "Authorization": "Basic " + base64.b64encode(BASIC_SECRET.encode()).decode()
    },
    "hmac": lambda body, ts: {"X-Sig": base64.b64encode(mac(body, algorithm="sha512")).decode()},
    "hmac-timestamped": lambda body, ts: {
        "X-Ts": str(ts),
        "X-Sig": mac(f"{ts}:".encode() + body).hex(),
    },
    "bitbucket": lambda body, ts: {"X-Hub-Signature": "sha256=" + mac(body).hex()},
    "calendly": lambda body, ts: {
        "Calendly-Webhook-Signature": f"t={ts},v1={mac(f'{ts}.'.encode() + body).hex()}"
    },
    "coinbase": lambda body, ts: {"X-CC-Webhook-Signature": mac(body).hex()},
    "forgejo": lambda body, ts: {"X-Forgejo-Signature": mac(body).hex()},
    "gitea": lambda body, ts: {"X-Gitea-Signature": mac(body).hex()},
    "intuit": lambda body, ts: {"intuit-signature": b64(mac(body))},
    "jira": lambda body, ts: {"X-Hub-Signature": "sha256=" + mac(body).hex()},
    "mollie": lambda body, ts: {"X-Mollie-Signature": "sha256=" + mac(body).hex()},
    "pagerduty": lambda body, ts: {"X-PagerDuty-Signature": "v1=" + mac(body).hex()},
    "razorpay": lambda body, ts: {"X-Razorpay-Signature": mac(body).hex()},
    "segment": lambda body, ts: {"X-Signature": mac(body, algorithm="sha1").hex()},
    "sentry": lambda body, ts: {"Sentry-Hook-Signature": mac(body).hex()},
    "twitch": lambda body, ts: {
        "Twitch-Eventsub-Message-Id": "m1",
        "Twitch-Eventsub-Message-Timestamp": rfc3339(ts),
        "Twitch-Eventsub-Message-Signature": "sha256="
        + mac(f"m1{rfc3339(ts)}".encode() + body).hex(),
    },
    "typeform": lambda body, ts: {"Typeform-Signature": "sha256=" + b64(mac(body))},
    "vercel": lambda body, ts: {"x-vercel-signature": mac(body, algorithm="sha1").hex()},
    "woocommerce": lambda body, ts: {"X-WC-Webhook-Signature": b64(mac(body))},
    "xero": lambda body, ts: {"x-xero-signature": b64(mac(body))},
    "clerk": lambda body, ts: SIGNERS["standard"](body, ts),
    "resend": lambda body, ts: SIGNERS["standard"](body, ts),
    "netlify": lambda body, ts: {"X-Webhook-Signature": netlify_token(body)},
    "postmark": lambda body, ts: SIGNERS["basic"](body, ts),
    "trello": lambda body, ts: {
        "X-Trello-Webhook": b64(mac(body + CALLBACK_URL.encode(), algorithm="sha1"))
    },
    "contentful": lambda body, ts: contentful_headers(body, ts),
}
# Schemes whose signature covers the body: the rest (gitlab, basic) send a fixed credential.
BODY_SIGNED = [name for name in SCHEMES if name not in ("gitlab", "basic", "postmark")]
TIMESTAMPED = [
    "standard",
    "stripe",
    "slack",
    "hmac-timestamped",
    "calendly",
    "clerk",
    "contentful",
    "resend",
    "twitch",
]

HEADER_NAMES = sorted({name for sign in SIGNERS.values() for name in sign(b"", NOW)})

bodies = st.binary(max_size=1024)
in_tolerance = st.integers(min_value=NOW - TOLERANCE, max_value=NOW + TOLERANCE)
hex_digits = st.text("0123456789abcdefABCDEF", max_size=130)
base64_text = st.binary(max_size=80).map(lambda b: base64.b64encode(b).decode())
# Values that look like what each header holds, so the checks past parsing are reached,
# mixed with arbitrary text (non-ASCII, control characters, huge numbers, ...).
plausible_values = st.one_of(
    st.text(max_size=200),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    in_tolerance.map(str),
    hex_digits,
    hex_digits.map(lambda h: "sha256=" + h),
    hex_digits.map(lambda h: "v0=" + h),
    st.tuples(in_tolerance, hex_digits, hex_digits).map(lambda t: f"t={t[0]},v1={t[1]},v0={t[2]}"),
    st.lists(base64_text, max_size=4).map(lambda sigs: " ".join(f"v1,{s}" for s in sigs)),
    base64_text,
    base64_text.map(lambda b: "Basic " + b),
)
random_headers = st.dictionaries(st.sampled_from(HEADER_NAMES), plausible_values, max_size=6)


def passes(check: Check, headers: dict[str, str], body: bytes) -> bool:
    request = providers.Request("POST", CALLBACK_URL, MultiDict(), CIMultiDict(headers), body)
    try:
        check(request, NOW)
    except VerificationFailed as failed:
        assert failed.reason
        return False
    return True


@pytest.mark.parametrize("name", list(SCHEMES))
@PROPERTY
@given(headers=random_headers, body=bodies)
def test_forged_headers_never_pass(name: str, headers: dict[str, str], body: bytes) -> None:
    assert not passes(verifier(name), headers, body)


@pytest.mark.parametrize("name", list(SCHEMES))
@PROPERTY
@given(body=bodies, ts=in_tolerance, rotated=st.booleans())
def test_signed_requests_always_pass(name: str, body: bytes, ts: int, rotated: bool) -> None:
    assert passes(verifier(name, rotated=rotated), SIGNERS[name](body, ts), body)


@pytest.mark.parametrize("name", BODY_SIGNED)
@PROPERTY
@given(body=bodies, other=bodies, ts=in_tolerance)
def test_a_signature_does_not_fit_another_body(
    name: str, body: bytes, other: bytes, ts: int
) -> None:
    assert passes(verifier(name), SIGNERS[name](body, ts), other) == (body == other)


@pytest.mark.parametrize("name", TIMESTAMPED)
@PROPERTY
@given(
    body=bodies,
    ts=st.one_of(
        st.integers(min_value=0, max_value=NOW - TOLERANCE - 1),
        st.integers(min_value=NOW + TOLERANCE + 1, max_value=10**12),
    ),
)
def test_timestamps_outside_the_tolerance_never_pass(name: str, body: bytes, ts: int) -> None:
    assert not passes(verifier(name), SIGNERS[name](body, ts), body)


@pytest.mark.parametrize("name", list(SCHEMES))
@PROPERTY
@given(body=bodies, ts=in_tolerance, data=st.data())
def test_a_changed_header_never_passes(
    name: str, body: bytes, ts: int, data: st.DataObject
) -> None:
    headers = SIGNERS[name](body, ts)
    header = data.draw(st.sampled_from(sorted(headers)))
    value = data.draw(plausible_values.filter(lambda v: v != headers[header]))
    assert not passes(verifier(name), {**headers, header: value}, body)


# The official libraries sign text, so these draw text bodies (sent as UTF-8).
OFFICIAL: dict[str, Callable[[str, int], dict[str, str]]] = {
    "standard": lambda body, ts: {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(ts),
        "webhook-signature": standardwebhooks.webhooks.Webhook(STANDARD_SECRET).sign(
            "msg_1", datetime.fromtimestamp(ts, UTC), body
        ),
    },
    "stripe": lambda body, ts: {
        "Stripe-Signature": stripe.WebhookSignature.generate_signature_header(
            body, SECRET, timestamp=ts
        )
    },
    "slack": lambda body, ts: {
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": SignatureVerifier(SECRET).generate_signature(
            timestamp=str(ts), body=body
        )
        or "",
    },
}


@pytest.mark.parametrize("name", list(OFFICIAL))
@PROPERTY
@given(body=st.text(max_size=512), ts=in_tolerance)
def test_official_signatures_always_pass(name: str, body: str, ts: int) -> None:
    assert passes(verifier(name), OFFICIAL[name](body, ts), body.encode())
