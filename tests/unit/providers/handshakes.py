"""Calling a provider's handshakes as the ingress does."""

from __future__ import annotations

from collections.abc import Mapping

from hookgate import providers
from hookgate.config import VerifyConfig

from .conftest import request


def greet(
    scheme: str,
    options: VerifyConfig,
    *,
    method: str = "GET",
    query: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    now: float = 0,
) -> providers.Answer | None:
    """The answer of the first of ``scheme``'s handshakes of ``method`` that takes the
    request (signed ones are asked as if the signature had checked out)."""
    req = request(headers or {}, body, method=method, query=query)
    for greeting in providers.get(scheme).all_greetings():
        if greeting.method == method:
            answer = greeting.build(options)(req, now)
            if answer is not None:
                return answer
    return None
