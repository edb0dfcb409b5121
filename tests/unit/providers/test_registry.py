"""The registry: every scheme of the config contract, their defaults, the round trip
from ``sign`` to ``verifier``, handshakes, and the one rule for ``whsec_`` secrets."""

from __future__ import annotations

import base64
from typing import Any, get_args

import msgspec
import pytest
import standardwebhooks.webhooks
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, MultiDict

from hookgate import providers
from hookgate.config import Scheme, VerifyConfig
from hookgate.errors import VerificationFailed

from . import samples
from .conftest import BODY, make
from .conftest import settings as table

URL = "https://hooks.example.com/hooks/provider?source=test"

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
}
OPTIONS: dict[str, dict[str, Any]] = {"hmac": {"header": "X-Signature"}}


def test_the_registry_holds_exactly_the_config_schemes_in_the_docs_order() -> None:
    assert providers.SCHEMES == get_args(Scheme)
    first = ("none", "hmac", "standard", "github", "stripe", "shopify", "slack", "gitlab", "basic")
    assert providers.SCHEMES[: len(first)] == first
    # The rest in alphabetical order, so that branches adding providers merge cleanly.
    rest = providers.SCHEMES[len(first) :]
    assert list(rest) == sorted(rest)
    assert set(samples.TABLES) == set(rest)
    assert len(providers.SCHEMES) == len(set(providers.SCHEMES))
    assert [providers.get(name).name for name in providers.SCHEMES] == list(providers.SCHEMES)


def test_an_unknown_scheme_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        providers.get("strpe")


@pytest.mark.parametrize("scheme", [s for s in get_args(Scheme) if s != "none"])
def test_every_scheme_but_none_needs_a_secret_or_a_key(scheme: Scheme) -> None:
    with pytest.raises(ValueError, match=r"secret|public key"):
        make(scheme, header="X-S")


def test_default_event_expressions_match_the_config_contract() -> None:
    event_type = {s: providers.get(s).event_type for s in providers.SCHEMES}
    event_id = {s: providers.get(s).event_id for s in providers.SCHEMES}
    contract_types = {
        "github": ("header:X-GitHub-Event",),
        "stripe": ("json:type",),
        "shopify": ("header:X-Shopify-Topic",),
        "slack": ("json:event.type", "json:type"),
        "standard": ("json:type",),
        "gitlab": ("header:X-Gitlab-Event",),
    }
    contract_ids = {
        "github": ("header:X-GitHub-Delivery",),
        "stripe": ("json:id",),
        "shopify": ("header:X-Shopify-Webhook-Id",),
        "slack": ("json:event_id",),
        "standard": ("header:webhook-id", "header:svix-id"),
        "gitlab": ("header:X-Gitlab-Event-UUID",),
    }
    for scheme, expressions in contract_types.items():
        assert event_type[scheme] == expressions
    for scheme, expressions in contract_ids.items():
        assert event_id[scheme] == expressions
    for scheme in ("hmac", "basic", "none"):
        assert (event_type[scheme], event_id[scheme]) == ((), ())


@pytest.mark.parametrize("scheme", providers.SCHEMES)
def test_every_default_expression_has_a_known_form(scheme: str) -> None:
    provider = providers.get(scheme)
    for expression in (*provider.event_type, *provider.event_id):
        kind, _, argument = expression.partition(":")
        assert kind in ("json", "header") and argument


# -- sign → verifier ----------------------------------------------------------------------


def signing_table(scheme: str) -> VerifyConfig:
    if scheme in samples.TABLES:
        return samples.table(scheme)
    secrets = [SECRETS[scheme]] if SECRETS[scheme] else []
    return table(scheme, *secrets, **OPTIONS.get(scheme, {}))


def signed_request(scheme: str, options: VerifyConfig, body: bytes, now: int) -> providers.Request:
    """A POST as the provider sends it: its body filled in, signed, to its URL."""
    provider = providers.get(scheme)
    body = provider.prepared(options, body, now)
    headers = provider.sign_request(options, URL, body, now)
    if scheme == "twilio":
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    return providers.Request("POST", URL, MultiDict(), CIMultiDict(headers), body)


@pytest.mark.parametrize("scheme", providers.SCHEMES)
@pytest.mark.parametrize("body", [BODY, b"", "caf\u00e9 \u2713".encode(), b"\x00\xff binary"])
def test_what_a_provider_signs_its_verifier_accepts(scheme: Scheme, body: bytes, now: int) -> None:
    options = signing_table(scheme)
    provider = providers.get(scheme)
    check = provider.check(options)
    if scheme in samples.BODY_FIELDS and body != BODY:
        with pytest.raises(ValueError, match="JSON"):
            provider.prepared(options, body, now)
        return
    if scheme == "twilio":
        body = b"From=%2B15551234567&Body=caf%C3%A9+%E2%9C%93&MessageSid=SM1"
    request = signed_request(scheme, options, body, now)
    check(request, now)
    if scheme in ("none", "gitlab", "basic", "postmark"):
        return  # nothing covers the body
    tampered = msgspec.structs.replace(request, body=request.body + b"!")
    with pytest.raises(VerificationFailed):
        check(tampered, now)


@pytest.mark.parametrize("scheme", sorted(samples.TABLES))
def test_another_providers_secret_or_key_does_not_verify(scheme: str, now: int) -> None:
    body = b"Body=hi" if scheme == "twilio" else BODY
    request = signed_request(scheme, samples.table(scheme), body, now)
    with pytest.raises(VerificationFailed):
        providers.get(scheme).check(samples.table(scheme, other=True))(request, now)


@pytest.mark.parametrize("scheme", sorted(samples.URL_BOUND))
def test_a_url_bound_scheme_refuses_another_url_and_cannot_verify_without_one(
    scheme: str, now: int
) -> None:
    options = samples.table(scheme)
    body = b"Body=hi" if scheme == "twilio" else BODY
    request = signed_request(scheme, options, body, now)
    moved = msgspec.structs.replace(request, url="https://elsewhere.example/hooks")
    with pytest.raises(VerificationFailed):
        providers.get(scheme).check(options)(moved, now)
    with pytest.raises(VerificationFailed, match="signs the URL"):
        providers.get(scheme).verifier(options).verify(request.headers, body, now)
    with pytest.raises(ValueError, match="signs the URL"):
        providers.get(scheme).sign(options, body, now)


def test_sign_uses_the_first_secret_of_a_rotation(now: int) -> None:
    github = providers.get("github")
    rotation = table("github", "new", "old")
    signed = github.sign(rotation, BODY, now)
    github.verifier(table("github", "new")).verify(CIMultiDict(signed), BODY, now)
    with pytest.raises(VerificationFailed):
        github.verifier(table("github", "old")).verify(CIMultiDict(signed), BODY, now)


# -- handshakes -----------------------------------------------------------------------------


HANDSHAKES = {
    "slack",
    "asana",
    "discord",
    "dropbox",
    "meta",
    "msgraph",
    "trello",
    "twitch",
    "twitter",
    "xero",
    "zoom",
}


@pytest.mark.parametrize("scheme", [s for s in providers.SCHEMES if s not in HANDSHAKES])
def test_only_the_providers_with_a_handshake_have_one(scheme: str) -> None:
    provider = providers.get(scheme)
    assert not provider.has_handshake
    assert provider.all_greetings() == ()
    body = b'{"type": "url_verification", "challenge": "c"}'
    assert provider.handshake(CIMultiDict(), body) is None


def test_every_provider_known_by_name_cites_its_signature_page() -> None:
    for scheme in providers.SCHEMES[9:]:
        if scheme == "ed25519":
            continue  # a generic scheme, like hmac
        assert providers.get(scheme).docs.startswith("https://"), scheme


@pytest.mark.parametrize("scheme", sorted(HANDSHAKES))
def test_the_providers_with_a_handshake_have_one(scheme: str) -> None:
    assert providers.get(scheme).has_handshake
    assert providers.get(scheme).all_greetings()


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
