"""How an admin API route is declared, and the OpenAPI document generated from them.

``api.ROUTES`` declares each route once: method, path, handler, summary, answer
type, parameters and error statuses. The aiohttp routes and the document's
``paths`` and ``components`` are both made from that table, so the document cannot
describe a route that is not served, nor miss one that is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import msgspec

from hookgate.admin.answers import ApiError

PREFIX = "/api/v1"
# The document itself: served without a token, and not in the route table (its
# answer is the document, not an answer type).
DOCUMENT_PATH = "/openapi.json"
_REF = "#/components/schemas/{name}"
_H = TypeVar("_H", covariant=True)


class Problem(Exception):
    """An error answer of the API: its HTTP status and ``ApiError`` code and detail."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Param:
    """A path or query parameter; ``schema`` is its JSON schema in the document."""

    name: str
    where: Literal["path", "query"]
    schema: Mapping[str, Any]

    def get(self, query: Mapping[str, str]) -> str | None:
        """The parameter's value in ``query``; an empty value counts as absent."""
        return query.get(self.name) or None

    def openapi(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "in": self.where,
            "required": self.where == "path",
            "schema": dict(self.schema),
        }


@dataclass(frozen=True)
class Route(Generic[_H]):
    """One route of the API: every request needs the bearer token (when one is set);
    an answer is ``answer`` with 200, or an ``ApiError`` with 401, one of ``errors``
    or 503 (the store cannot answer)."""

    method: Literal["GET", "POST"]
    path: str  # under PREFIX; {name} marks a path parameter, as aiohttp and OpenAPI write it
    handler: _H
    summary: str
    answer: type[msgspec.Struct]
    params: tuple[Param, ...]
    errors: tuple[int, ...]


def openapi_document(routes: Sequence[Route[Any]], version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 description of ``routes``, with the schemas of their answers."""
    answers = list(dict.fromkeys([*(route.answer for route in routes), ApiError]))
    _, components = msgspec.json.schema_components(answers, ref_template=_REF)
    return {
        "openapi": "3.1.0",
        "info": {"title": "hookgate admin API", "version": version},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": _paths(routes),
    }


def _paths(routes: Sequence[Route[Any]]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(PREFIX + route.path, {})[route.method.lower()] = _operation(route)
    paths[PREFIX + DOCUMENT_PATH] = {
        "get": {
            "summary": "This document",
            "security": [],
            "responses": {
                "200": {
                    "description": "OpenAPI 3.1",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    }
    return paths


def _operation(route: Route[Any]) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": "OK", **_content(route.answer)}}
    for status in (401, *route.errors, 503):
        responses[str(status)] = {"description": "Error", **_content(ApiError)}
    return {
        "summary": route.summary,
        "parameters": [param.openapi() for param in route.params],
        "responses": responses,
    }


def _content(answer: type[msgspec.Struct]) -> dict[str, Any]:
    ref = _REF.format(name=answer.__name__)
    return {"content": {"application/json": {"schema": {"$ref": ref}}}}
