"""Contentful, checked against the canonical request of its own verifier
(``@contentful/node-apps-toolkit``, src/requests/sign-request.ts and utils.ts): the
hex HMAC-SHA256 of ``METHOD\\nPATH\\nname:value;name:value\\nBODY``, the signed headers
sorted by name and including ``x-contentful-signed-headers`` and
``x-contentful-timestamp`` (unix milliseconds). The canonical strings below are
written out by hand from that code.

https://www.contentful.com/developers/docs/webhooks/request-verification/
"""

from __future__ import annotations

import hmac

import pytest
from multidict import CIMultiDict

from hookgate.errors import VerificationFailed
from hookgate.providers import contentful

from .conftest import TOLERANCE, check, extracted, make, request, settings

SECRET = "S" * 32 + "0123456789abcdef0123456789ABCDEF"  # 64 characters, as Contentful requires
URL = "https://hooks.example.com/hooks/contentful"
BODY = b'{"sys": {"id": "5KsDBWseXY6QegucYAoacS", "type": "Entry"}, "fields": {}}'
TOPIC = "ContentManagement.Entry.publish"


def signed(milliseconds: int, body: bytes = BODY, secret: str = SECRET) -> CIMultiDict[str]:
    canonical = (
        "POST\n/hooks/contentful\n"
        "x-contentful-signed-headers:x-contentful-signed-headers,x-contentful-timestamp,"
        f"x-contentful-topic;x-contentful-timestamp:{milliseconds};x-contentful-topic:{TOPIC}\n"
    ).encode() + body
    return CIMultiDict(
        {
            "X-Contentful-Topic": TOPIC,
            "X-Contentful-Timestamp": str(milliseconds),
            "X-Contentful-Signed-Headers": (
                "x-contentful-signed-headers,x-contentful-timestamp,x-contentful-topic"
            ),
            "X-Contentful-Signature": hmac.digest(secret.encode(), canonical, "sha256").hex(),
        }
    )


def verify(hdrs: CIMultiDict[str], body: bytes, now: float, *secrets: str, url: str = URL) -> None:
    options = settings("contentful", *(secrets or (SECRET,)))
    check("contentful", options, request(hdrs, body, url=url), now)


def rejects(hdrs: CIMultiDict[str], body: bytes, reason: str, now: float, url: str = URL) -> None:
    with pytest.raises(VerificationFailed) as failed:
        verify(hdrs, body, now, url=url)
    assert failed.value.reason == reason


def test_contentful_accepts_a_signed_request_and_finds_its_event(now: int) -> None:
    hdrs = signed(now * 1000 + 123)
    verify(hdrs, BODY, now, "o" * 64, SECRET)
    assert extracted("contentful", hdrs, BODY) == (TOPIC, None)


@pytest.mark.parametrize(
    ("body", "secret", "skew", "reason"),
    [
        (BODY.replace(b"Entry", b"Asset"), SECRET, 0, "no signature matched"),
        (BODY, "o" * 64, 0, "no signature matched"),
        (BODY, SECRET, TOLERANCE + 1, "stale timestamp"),
        (BODY, SECRET, -TOLERANCE - 1, "future timestamp"),
    ],
    ids=["tampered", "wrong-secret", "replayed-late", "future"],
)
def test_contentful_rejects(body: bytes, secret: str, skew: int, reason: str, now: int) -> None:
    rejects(signed(now * 1000, secret=secret), body, reason, now + skew)


@pytest.mark.parametrize(
    ("header", "value"),
    [("X-Contentful-Topic", "ContentManagement.Entry.delete"), ("X-Contentful-Timestamp", "1")],
)
def test_contentful_signs_the_signed_headers(header: str, value: str, now: int) -> None:
    hdrs = signed(now * 1000)
    hdrs[header] = hdrs[header][:-1] + ("1" if hdrs[header][-1] != "1" else "2")
    rejects(hdrs, BODY, "no signature matched", now)


def test_contentful_signs_the_path(now: int) -> None:
    other = "https://hooks.example.com/hooks/other"
    rejects(signed(now * 1000), BODY, "no signature matched", now, url=other)


def test_the_path_is_escaped_as_contentfuls_verifier_escapes_it() -> None:
    # getNormalizedEncodedURI: the query through querystring.escape, then all through encodeURI.
    assert contentful.canonical_path("https://h.example/hooks/cf?a=1&b=2") == (
        b"/hooks/cf?a%253D1%2526b%253D2"
    )
    assert contentful.canonical_path("https://h.example/hooks/caf\u00e9") == b"/hooks/caf%C3%A9"
    # The path as it arrives (already escaped) is signed as the one set in Contentful.
    assert contentful.canonical_path("https://h.example/hooks/caf%C3%A9") == b"/hooks/caf%C3%A9"
    assert contentful.canonical_path("https://h.example") == b"/"


def test_contentful_cannot_be_verified_without_the_url(now: int) -> None:
    with pytest.raises(VerificationFailed, match="signs the URL"):
        make("contentful", SECRET).verify(signed(now * 1000), BODY, now)


def test_contentful_rejects_a_timestamp_that_is_not_milliseconds(now: int) -> None:
    hdrs = signed(now * 1000)
    hdrs["X-Contentful-Timestamp"] = "soon"
    rejects(hdrs, BODY, "malformed timestamp", now)
