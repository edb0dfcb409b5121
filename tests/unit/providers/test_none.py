"""Scheme "none": every request passes."""

from __future__ import annotations

from multidict import CIMultiDict

from .conftest import make


def test_none_accepts_anything(now: int) -> None:
    make("none").verify(CIMultiDict(), b"\xff anything", now)
