"""Properties of the providers by name (samples.TABLES): hostile requests never pass
and never raise anything but VerificationFailed; a signed request with any one header
changed never passes; handshakes refuse with HandshakeRefused or answer, nothing else."""

from __future__ import annotations

import base64

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, MultiDict

from hookgate import providers
from hookgate.errors import VerificationFailed

from . import samples
from .conftest import settings as table

NOW = 1_700_000_000
URL = "https://hooks.example.com/hooks/p?x=1"
PROPERTY = settings(max_examples=100, deadline=None)
NAMES = sorted(samples.TABLES)
CHECKS = {name: providers.get(name).check(samples.table(name)) for name in NAMES}


def signed(name: str, body: bytes) -> providers.Request:
    options = samples.table(name)
    provider = providers.get(name)
    if name == "twilio":
        body = b"Body=hi&MessageSid=SM1"  # Twilio signs form bodies
    body = provider.prepared(options, body, NOW)
    headers = provider.sign_request(options, URL, body, NOW)
    if name == "twilio":
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    return providers.Request("POST", URL, MultiDict(), CIMultiDict(headers), body)


def passes(name: str, request: providers.Request) -> bool:
    try:
        CHECKS[name](request, NOW)
    except VerificationFailed as failed:
        assert failed.reason
        return False
    return True


HEADER_NAMES = sorted({h for name in NAMES for h in signed(name, b"{}").headers})
hex_digits = st.text("0123456789abcdef", max_size=140)
base64_text = st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode())
plausible = st.one_of(
    st.text(max_size=200),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.integers(min_value=NOW - 300, max_value=NOW + 300).map(str),
    hex_digits,
    hex_digits.map(lambda h: "v0=" + h),
    hex_digits.map(lambda h: "sha256=" + h),
    base64_text,
    st.tuples(st.integers(0, 2 * NOW), hex_digits).map(lambda t: f"ts={t[0]};h1={t[1]}"),
    st.just("SHA256withRSA"),
    st.just("2023-11-14T22:13:20Z"),
)
json_bodies = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "value",
                    "signature",
                    "clientState",
                    "webhookTimestamp",
                    "token",
                    "timestamp",
                    "type",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=10,
).map(orjson.dumps)
bodies = st.one_of(st.binary(max_size=512), json_bodies)


@pytest.mark.parametrize("name", NAMES)
@PROPERTY
@given(
    headers=st.dictionaries(st.sampled_from(HEADER_NAMES), plausible, max_size=6),
    body=bodies,
    url=st.sampled_from([URL, "http://127.0.0.1:8080/hooks/p", "https://h/"]),
)
def test_forged_requests_never_pass(
    name: str, headers: dict[str, str], body: bytes, url: str
) -> None:
    request = providers.Request("POST", url, MultiDict(), CIMultiDict(headers), body)
    if name == "msgraph":
        return  # its proof is in the body: test_msgraph.py forges that
    assert not passes(name, request)


@pytest.mark.parametrize("name", NAMES)
@PROPERTY
@given(body=st.sampled_from([b'{"type":"t","id":"1"}', b'{"value":[{"a":1}]}']), data=st.data())
def test_a_changed_header_never_passes(name: str, body: bytes, data: st.DataObject) -> None:
    request = signed(name, body)
    assert passes(name, request)
    covered = [h for h in request.headers if h.lower() not in ("content-type",)]
    if not covered:
        return  # msgraph and mailgun sign nothing in headers
    header = data.draw(st.sampled_from(sorted(covered)))
    value = data.draw(plausible.filter(lambda v: v != request.headers[header]))
    headers = CIMultiDict({**request.headers, header: value})
    changed = msgspec.structs.replace(request, headers=headers)
    if name == "paypal" and header.upper() == "PAYPAL-CERT-URL":
        assert passes(
            name, changed
        )  # never fetched, not signed: the configured certificate decides
        return
    if name == "twitch" and header.upper() == "TWITCH-EVENTSUB-MESSAGE-TYPE":
        # Not signed (Twitch signs id, timestamp and body): a changed type only decides
        # whether the signed request is taken for the verification handshake.
        assert passes(name, changed)
        return
    assert not passes(name, changed)


@pytest.mark.parametrize("name", [n for n in providers.SCHEMES if providers.get(n).has_handshake])
@PROPERTY
@given(
    query=st.dictionaries(
        st.sampled_from(
            [
                "hub.mode",
                "hub.challenge",
                "hub.verify_token",
                "crc_token",
                "challenge",
                "validationToken",
            ]
        ),
        st.text(max_size=300),
        max_size=4,
    ),
    secret=st.one_of(st.none(), st.text(max_size=300)),
    body=bodies,
    method=st.sampled_from(["GET", "POST"]),
)
def test_handshakes_answer_or_refuse_and_never_raise_anything_else(
    name: str,
    query: dict[str, str],
    secret: str | None,
    body: bytes,
    method: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    options = samples.table(name) if name in samples.TABLES else table(name, "a-secret")
    headers = {} if secret is None else {"X-Hook-Secret": secret}
    request = providers.Request(method, URL, MultiDict(query), CIMultiDict(headers), body)
    for greeting in providers.get(name).all_greetings():
        if greeting.method != method:
            continue
        try:
            answer = greeting.build(options)(request, NOW)
        except providers.HandshakeRefused as refused:
            assert refused.status in (400, 403) and refused.code
            continue
        if answer is not None:
            assert 200 <= answer.status < 300
