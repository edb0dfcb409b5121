"""GitLab's secret token."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from .conftest import BODY, headers, make, rejects


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
