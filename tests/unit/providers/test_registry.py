"""The registry: every scheme of the config contract, their defaults, the round trip
from ``sign`` to ``verifier``, handshakes, and the one rule for ``whsec_`` secrets."""

from __future__ import annotations

import base64
from typing import Any, get_args

import pytest
import standardwebhooks.webhooks
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from hookgate import providers
from hookgate.config import Scheme
from hookgate.errors import VerificationFailed

from .conftest import BODY, make
from .conftest import settings as table

# A secret of the right form for each provider, and the options the generic one needs.
SECRETS: dict[str, str] = {
    "none": "",
    "hmac": "generic-secret",
    "standard": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "github": "It's a Secret to Everybody",
    "stripe": "whsec_test_secret_0123456789",
    "shopify": "hush",
    "slack": "8f742231b10e8888abcd99yyyzzz85a5",
    "gitlab": "s3cr3t-t0ken",
    "basic": "relay:p\u00e4ss:word",
    "adyen": "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056",
    "bitbucket": "bb-secret",
    "calendly": "calendly-signing-key",
    "clerk": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "coinbase": "cc-shared-secret",
    "contentful": "a" * 64,
    "forgejo": "forgejo-secret",
    "gitea": "gitea-secret",
    "intuit": "intuit-verifier-token",
    "jira": "jira-secret",
    "mollie": "mollie-signing-secret",
    "netlify": "netlify-jws-secret-of-at-least-32-bytes",
    "pagerduty": "pd-secret",
    "postmark": "postmark:hook-p\u00e4ss",
    "razorpay": "razorpay-webhook-secret",
    "resend": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "segment": "segment-secret",
    "sentry": "sentry-client-secret",
    "trello": "trello-app-secret",
    "twitch": "twitch-eventsub-secret",
    "typeform": "typeform-secret",
    "vercel": "vercel-secret",
    "woocommerce": "wc-secret",
    "xero": "xero-webhook-key",
}
OPTIONS: dict[str, dict[str, Any]] = {
    "hmac": {"header": "X-Signature"},
    "trello": {"url": "https://hooks.example.com/hooks/trello"},
    "contentful": {"url": "https://hooks.example.com/hooks/contentful?space=x"},
}
# Schemes whose credential is not a signature of the body.
UNSIGNED_BODY = ("none", "gitlab", "basic", "postmark")


def test_the_registry_holds_exactly_the_config_schemes_in_the_docs_order() -> None:
    assert providers.SCHEMES == get_args(Scheme)
    assert providers.SCHEMES[:9] == (
        "none",
        "hmac",
        "standard",
        "github",
        "stripe",
        "shopify",
        "slack",
        "gitlab",
        "basic",
    )
    # The providers known by name follow, in alphabetical order.
    assert list(providers.SCHEMES[9:]) == sorted(providers.SCHEMES[9:])
    assert len(providers.SCHEMES) == len(set(providers.SCHEMES))
    assert [providers.get(name).name for name in providers.SCHEMES] == list(providers.SCHEMES)


def test_an_unknown_scheme_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        providers.get("strpe")


@pytest.mark.parametrize("scheme", [s for s in get_args(Scheme) if s != "none"])
def test_every_scheme_but_none_needs_a_secret(scheme: Scheme) -> None:
    with pytest.raises(ValueError, match="secret"):
        make(scheme, header="X-S")


def test_default_event_expressions_match_the_config_contract() -> None:
    # The first nine are the config contract; the others are tested in their own files.
    event_type = {s: providers.get(s).event_type for s in providers.SCHEMES[:9]}
    event_id = {s: providers.get(s).event_id for s in providers.SCHEMES[:9]}
    assert {s: e for s, e in event_type.items() if e} == {
        "github": ("header:X-GitHub-Event",),
        "stripe": ("json:type",),
        "shopify": ("header:X-Shopify-Topic",),
        "slack": ("json:event.type", "json:type"),
        "standard": ("json:type",),
        "gitlab": ("header:X-Gitlab-Event",),
    }
    assert {s: e for s, e in event_id.items() if e} == {
        "github": ("header:X-GitHub-Delivery",),
        "stripe": ("json:id",),
        "shopify": ("header:X-Shopify-Webhook-Id",),
        "slack": ("json:event_id",),
        "standard": ("header:webhook-id", "header:svix-id"),
        "gitlab": ("header:X-Gitlab-Event-UUID",),
    }
    for scheme in ("hmac", "basic", "none"):
        assert (event_type[scheme], event_id[scheme]) == ((), ())


# -- sign → verifier ----------------------------------------------------------------------


# Adyen's signatures are inside the body, which its signer cannot write (test_adyen.py).
@pytest.mark.parametrize("scheme", [s for s in providers.SCHEMES if s != "adyen"])
@pytest.mark.parametrize("body", [BODY, b"", "caf\u00e9 \u2713".encode(), b"\x00\xff binary"])
def test_what_a_provider_signs_its_verifier_accepts(scheme: Scheme, body: bytes, now: int) -> None:
    secrets = [SECRETS[scheme]] if SECRETS[scheme] else []
    options = table(scheme, *secrets, **OPTIONS.get(scheme, {}))
    provider = providers.get(scheme)
    verifier = provider.verifier(options)
    signed = provider.sign(options, body, now)
    verifier.verify(CIMultiDict(signed), body, now)
    if scheme in UNSIGNED_BODY:
        return  # nothing covers the body
    with pytest.raises(VerificationFailed):
        verifier.verify(CIMultiDict(signed), body + b"!", now)


def test_sign_uses_the_first_secret_of_a_rotation(now: int) -> None:
    github = providers.get("github")
    rotation = table("github", "new", "old")
    signed = github.sign(rotation, BODY, now)
    github.verifier(table("github", "new")).verify(CIMultiDict(signed), BODY, now)
    with pytest.raises(VerificationFailed):
        github.verifier(table("github", "old")).verify(CIMultiDict(signed), BODY, now)


# -- handshakes -----------------------------------------------------------------------------


HANDSHAKES = ("slack", "twitch", "xero")


@pytest.mark.parametrize("scheme", [s for s in providers.SCHEMES if s not in HANDSHAKES])
def test_only_some_providers_have_a_handshake(scheme: str) -> None:
    provider = providers.get(scheme)
    assert not provider.has_handshake
    body = b'{"type": "url_verification", "challenge": "c"}'
    assert provider.handshake(CIMultiDict(), body) is None


def test_every_provider_known_by_name_cites_its_signature_page() -> None:
    for scheme in providers.SCHEMES[9:]:
        assert providers.get(scheme).docs.startswith("https://"), scheme


# -- the whsec_ rule --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret",
    [
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  # the spec's example
        "whsec_" + base64.b64encode(b"an entirely different key").decode(),  # padded
        "whsec_" + base64.b64encode(b"an entirely different key").decode().rstrip("="),
        "whsec_" + base64.b64encode(b"standard-webhooks-key-0123456789").decode(),
        "whsec_ab",
        "whsec_abc=",
        "whsec_ab=",  # partial padding: the library ignores it
        "whsec_abcd==",  # extra padding: likewise
    ],
)
def test_accepted_secrets_give_the_official_librarys_key(secret: str) -> None:
    key = providers.standard_secret_key(secret)
    assert key == standardwebhooks.webhooks.Webhook(secret)._whsecret


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("whsec_", "empty"),
        ("whsec_====", "not base64"),
        ("whsec_!!!", "not base64"),
        ("whsec_!!", "not base64"),
        ("whsec_***", "not base64"),
        ("whsec_not*base64", "not base64"),
        ("whsec_abcde", "length"),
        ("whsec_ab=cd", "not base64"),
        ("whsec_abcd===", "not base64"),
        ("whsec_ab-_cd", "not base64"),  # URL-safe base64: the library would drop "-_"
        ("whsec_abcd ", "not base64"),
        ("whsec_\u00e9t\u00e9", "not base64"),
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_"),
        ("plain-secret", "whsec_"),
        ("nope", "whsec_"),
        ("WHSEC_abcd", "whsec_"),
    ],
)
def test_other_secrets_are_refused_with_a_reason(secret: str, reason: str) -> None:
    with pytest.raises(ValueError, match='expected a "whsec_<base64>" secret') as refused:
        providers.standard_secret_key(secret)
    assert reason in str(refused.value)
    if len(secret) > 6:
        assert secret.removeprefix("whsec_") not in str(refused.value)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="whsec_ABCxyz019+/=-!é ", max_size=16))
def test_whatever_is_accepted_the_official_library_accepts_with_the_same_key(
    text: str,
) -> None:
    for secret in (text, "whsec_" + text):
        try:
            key = providers.standard_secret_key(secret)
        except ValueError:
            continue
        assert key
        assert standardwebhooks.webhooks.Webhook(secret)._whsecret == key


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.integers(min_value=0, max_value=2))
def test_every_base64_key_is_accepted_padded_or_not(key: bytes, padding: int) -> None:
    encoded = base64.b64encode(key).decode().rstrip("=")
    assert providers.standard_secret_key("whsec_" + encoded + "=" * padding) == key
