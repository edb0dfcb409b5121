"""What the provider tests share: a verifier from a ``[verify]`` table, request headers,
and the check that a request is rejected for the expected reason.

A package (``__init__.py``) so that the per-provider test files (``test_hmac.py``,
``test_basic.py``, ...) do not clash with same-named test files elsewhere, and can
import these helpers as ``from .conftest import ...``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson
import pytest
from multidict import CIMultiDict, MultiDict

from hookgate import providers
from hookgate.config import Duration, Scheme, VerifyConfig
from hookgate.errors import VerificationFailed
from hookgate.inbound import listener

TOLERANCE = 300
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


def settings(scheme: Scheme, *secrets: str, **options: Any) -> VerifyConfig:
    """A source's ``[verify]`` table."""
    options.setdefault("tolerance", Duration(TOLERANCE))
    return VerifyConfig(scheme=scheme, secrets=list(secrets), **options)


def make(scheme: Scheme, *secrets: str, **options: Any) -> providers.Verifier:
    """The verifier the ingress builds for that table."""
    return providers.get(scheme).verifier(settings(scheme, *secrets, **options))


def headers(**values: str) -> CIMultiDict[str]:
    return CIMultiDict((name.replace("_", "-"), value) for name, value in values.items())


def rejects(
    verifier: providers.Verifier,
    hdrs: CIMultiDict[str],
    body: bytes,
    reason: str,
    now: float | None = None,
) -> None:
    """``now`` defaults to the clock: pass the test's own when the headers carry a timestamp."""
    with pytest.raises(VerificationFailed) as failed:
        verifier.verify(hdrs, body, time.time() if now is None else now)
    assert failed.value.reason == reason
    assert str(failed.value) == reason


def extracted(scheme: str, hdrs: Mapping[str, str], body: bytes) -> tuple[str | None, str | None]:
    """The event type and id the ingress takes from a request of ``scheme`` by default."""
    provider = providers.get(scheme)
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        document = None
    event_type = listener.Extraction.build("event_type", None, provider.event_type)
    event_id = listener.Extraction.build("event_id", None, provider.event_id)
    return event_type.extract(hdrs, document), event_id.extract(hdrs, document)


def request(
    hdrs: Mapping[str, str],
    body: bytes,
    *,
    url: str = "https://hooks.example.com/hook",
    method: str = "POST",
    query: Mapping[str, str] | None = None,
) -> providers.Request:
    return providers.Request(method, url, MultiDict(query or {}), CIMultiDict(hdrs), body)


def check(scheme: str, options: VerifyConfig, req: providers.Request, now: float) -> None:
    """The whole-request check the ingress runs for ``options``."""
    providers.get(scheme).check(options)(req, now)
