"""Gitea, Forgejo and Sentry, which all sign with a hex HMAC-SHA256 of the raw body in
one header: checked against the algorithm their documentation specifies.

https://docs.gitea.com/usage/webhooks
https://forgejo.org/docs/latest/user/webhooks/
https://docs.sentry.io/organization/integrations/integration-platform/webhooks/
None of the pages gives a signed example to copy, so the signature is computed here,
independently of hookgate, from the pages' description.
"""

from __future__ import annotations

import hmac
from typing import NamedTuple

import pytest
from multidict import CIMultiDict

from .conftest import extracted, headers, make, rejects


class Sample(NamedTuple):
    scheme: str
    signature_header: str
    event: tuple[str, str]
    """The header that carries the event type, and its value."""
    delivery: tuple[str, str]
    """The header that carries the event id, and its value."""
    body: bytes

    @property
    def secret(self) -> str:
        return f"{self.scheme}-webhook-secret-0123456789"

    def signed(self, secret: str | None = None) -> CIMultiDict[str]:
        mac = hmac.digest((secret or self.secret).encode(), self.body, "sha256")
        return headers(
            **{
                self.signature_header: mac.hex(),
                self.event[0]: self.event[1],
                self.delivery[0]: self.delivery[1],
            }
        )


GIT_PUSH = b'{"ref": "refs/heads/main", "repository": {"full_name": "org/repo"}}'
SAMPLES = [
    Sample(
        "gitea",
        "X_Gitea_Signature",
        ("X_Gitea_Event", "push"),
        ("X_Gitea_Delivery", "f6266f16-1bf3-46a5-9ea4-602e06ead473"),
        GIT_PUSH,
    ),
    Sample(
        "forgejo",
        "X_Forgejo_Signature",
        ("X_Forgejo_Event", "push"),
        ("X_Forgejo_Delivery", "9a1b2c3d-0000-4000-8000-000000000001"),
        GIT_PUSH,
    ),
    Sample(
        "sentry",
        "Sentry_Hook_Signature",
        ("Sentry_Hook_Resource", "issue"),
        ("Request_ID", "d5ba4c1a-0000-4000-8000-3f1c4e7c1a2b"),
        b'{"action": "created", "data": {"issue": {"id": "1170820242"}}}',
    ),
]
by_scheme = pytest.mark.parametrize("sample", SAMPLES, ids=[s.scheme for s in SAMPLES])


@by_scheme
def test_accepts_a_signed_request_and_finds_its_event(sample: Sample, now: int) -> None:
    make(sample.scheme, "old-secret", sample.secret).verify(sample.signed(), sample.body, now)
    found = extracted(sample.scheme, sample.signed(), sample.body)
    assert found == (sample.event[1], sample.delivery[1])


@by_scheme
@pytest.mark.parametrize("change", ["appended", "changed", "wrong-secret"])
def test_rejects_a_tampered_request(sample: Sample, change: str) -> None:
    body = {
        "appended": sample.body + b" ",
        "changed": sample.body.replace(b"{", b"{ "),
        "wrong-secret": sample.body,
    }[change]
    secret = "another-secret" if change == "wrong-secret" else None
    rejects(make(sample.scheme, sample.secret), sample.signed(secret), body, "no signature matched")


@by_scheme
def test_rejects_a_tampered_or_missing_signature(sample: Sample) -> None:
    hdrs = sample.signed()
    name = sample.signature_header.replace("_", "-")
    value = hdrs[name]
    hdrs[name] = value[:-4] + ("AAAA" if value[-4:] != "AAAA" else "BBBB")
    rejects(make(sample.scheme, sample.secret), hdrs, sample.body, "no signature matched")
    del hdrs[name]
    rejects(make(sample.scheme, sample.secret), hdrs, sample.body, "missing header")
