"""Twilio, checked against its official library (``twilio.request_validator``)."""

from __future__ import annotations

import hashlib
import urllib.parse

import pytest
from twilio.request_validator import RequestValidator

from hookgate import providers
from hookgate.errors import VerificationFailed

from . import conftest
from .conftest import check, extracted, settings

TOKEN = "12345"  # the auth token of Twilio's own validator tests and docs
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}
FORM = urllib.parse.urlencode(PARAMS).encode()
IDEMPOTENCY = "AC1234-1234567890-0a1b2c3d"
HEADERS = {
    "Content-Type": "application/x-www-form-urlencoded",
    "I-Twilio-Idempotency-Token": IDEMPOTENCY,
}


def test_twilio_accepts_what_its_library_signs_and_extracts_the_idempotency_token() -> None:
    signature = RequestValidator(TOKEN).compute_signature(URL, PARAMS)
    # The worked example of https://www.twilio.com/docs/usage/security#validating-requests
    assert signature == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    hdrs = {**HEADERS, "X-Twilio-Signature": signature}
    check("twilio", settings("twilio", TOKEN), request(hdrs, FORM), 0)
    assert extracted("twilio", hdrs, FORM) == (None, IDEMPOTENCY)


def request(hdrs: dict[str, str], body: bytes, url: str = URL) -> providers.Request:
    return conftest.request(hdrs, body, url=url)


@pytest.mark.parametrize(
    ("body", "url"),
    [
        (FORM.replace(b"1234", b"9999"), URL),  # a parameter changed
        (FORM + b"&Extra=1", URL),  # a parameter added
        (FORM, URL.replace("foo=1", "foo=2")),  # the URL changed
        (FORM, URL.replace("https:", "http:")),  # behind a proxy, public_url unset
    ],
)
def test_twilio_refuses_a_tampered_request(body: bytes, url: str) -> None:
    signature = RequestValidator(TOKEN).compute_signature(URL, PARAMS)
    with pytest.raises(VerificationFailed):
        check(
            "twilio",
            settings("twilio", TOKEN),
            request({**HEADERS, "X-Twilio-Signature": signature}, body, url),
            0,
        )


def test_twilio_library_accepts_what_hookgate_send_signs() -> None:
    hdrs = providers.get("twilio").sign_request(settings("twilio", TOKEN), URL, FORM, 0)
    assert RequestValidator(TOKEN).validate(URL, PARAMS, hdrs["X-Twilio-Signature"])


def test_twilio_json_body_is_checked_by_its_hash_in_the_url() -> None:
    body = b'{"ProductName": "Voice", "Sid": "ST1"}'
    url = "https://mycompany.com/hook?bodySHA256=" + hashlib.sha256(body).hexdigest()
    signature = RequestValidator(TOKEN).compute_signature(url, {})
    assert RequestValidator(TOKEN).validate(url, body.decode(), signature)
    hdrs = {"Content-Type": "application/json", "X-Twilio-Signature": signature}
    check("twilio", settings("twilio", TOKEN), request(hdrs, body, url), 0)
    with pytest.raises(VerificationFailed, match="body hash mismatch"):
        check("twilio", settings("twilio", TOKEN), request(hdrs, body + b" ", url), 0)


def test_twilio_refuses_a_body_its_signature_does_not_cover() -> None:
    signature = RequestValidator(TOKEN).compute_signature(URL, {})
    hdrs = {"Content-Type": "application/json", "X-Twilio-Signature": signature}
    with pytest.raises(VerificationFailed, match="not covered"):
        check("twilio", settings("twilio", TOKEN), request(hdrs, b'{"a": 1}'), 0)


@pytest.mark.parametrize(
    "signed_url", ["https://mycompany.com:443/myapp.php", "https://mycompany.com/myapp.php"]
)
def test_twilio_url_with_or_without_its_default_port(signed_url: str) -> None:
    signature = RequestValidator(TOKEN).compute_signature(signed_url, PARAMS)
    hdrs = {**HEADERS, "X-Twilio-Signature": signature}
    check(
        "twilio",
        settings("twilio", TOKEN),
        request(hdrs, FORM, "https://mycompany.com/myapp.php"),
        0,
    )


def test_twilio_shared_key_hmac_sha256_is_checked_as_its_library_does() -> None:
    signature = RequestValidator(TOKEN).compute_signature(URL, PARAMS, "HMAC_SHA256")
    hdrs = {
        **HEADERS,
        "X-Twilio-Signature": signature,
        "X-Twilio-Webhooks-Signature-Settings": "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256",
    }
    check("twilio", settings("twilio", TOKEN), request(hdrs, FORM), 0)
    with pytest.raises(VerificationFailed, match="unknown algorithm"):
        hdrs["X-Twilio-Webhooks-Signature-Settings"] = "algorithm=HMAC_MD5"
        check("twilio", settings("twilio", TOKEN), request(hdrs, FORM), 0)
