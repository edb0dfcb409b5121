"""The OpenAPI document is generated from the route table, and the repository keeps it current."""

from __future__ import annotations

import json
import re
import typing

import pytest

from hookgate.admin import api, routes

ROUTES = {f"{route.method} {route.path}": route for route in api.ROUTES}


def test_openapi_file_is_current() -> None:
    kept = json.loads(api.OPENAPI_FILE.read_text())
    assert kept == json.loads(json.dumps(api.openapi_document())), (
        "src/hookgate/admin/openapi.json is stale: run python -m hookgate.admin.api"
    )


def test_the_document_describes_exactly_the_declared_routes() -> None:
    paths = api.openapi_document()["paths"]
    described = {
        f"{method.upper()} {path.removeprefix(routes.PREFIX)}"
        for path, operations in paths.items()
        for method in operations
    }
    assert described == {*ROUTES, f"GET {routes.DOCUMENT_PATH}"}
    assert all(path.startswith(routes.PREFIX + "/") for path in paths)


@pytest.mark.parametrize("name", ROUTES)
def test_each_route_answers_its_declared_type(name: str) -> None:
    route = ROUTES[name]
    hints = typing.get_type_hints(route.handler)
    assert hints["return"] is route.answer, f"{name}: the table and the handler disagree"
    operation = api.openapi_document()["paths"][routes.PREFIX + route.path][route.method.lower()]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": f"#/components/schemas/{route.answer.__name__}"}
    assert set(operation["responses"]) == {"200", "401", "503", *map(str, route.errors)}


@pytest.mark.parametrize("name", ROUTES)
def test_path_parameters_are_declared(name: str) -> None:
    route = ROUTES[name]
    in_path = set(re.findall(r"\{(\w+)\}", route.path))
    assert {p.name for p in route.params if p.where == "path"} == in_path
    queries = [p.name for p in route.params if p.where == "query"]
    assert len(queries) == len(set(queries)), f"{name}: a query parameter is declared twice"
