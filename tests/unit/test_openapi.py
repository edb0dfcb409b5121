"""The OpenAPI document kept in the repository is the one the code generates."""

from __future__ import annotations

import json

from hookgate.admin import api


def test_openapi_file_is_current() -> None:
    kept = json.loads(api.OPENAPI_FILE.read_text())
    assert kept == json.loads(json.dumps(api.openapi_document())), (
        "src/hookgate/admin/openapi.json is stale: run python -m hookgate.admin.api"
    )


def test_every_route_is_described() -> None:
    described = set(api.openapi_document()["paths"])
    for path in (
        "/messages",
        "/messages/{id}",
        "/messages/{id}/replay",
        "/deliveries",
        "/deliveries/{id}",
        "/deliveries/{id}/retry",
        "/destinations",
        "/destinations/{name}/retry",
        "/destinations/{name}/pause",
        "/destinations/{name}/resume",
        "/stats",
        "/openapi.json",
    ):
        assert api.PREFIX + path in described
