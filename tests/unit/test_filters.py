"""The content filter language: every operator by table, and its properties on any JSON.

Semantics follow Hookdeck's filter syntax page (https://hookdeck.com/docs/filters):
an array field matches a scalar it holds, an object matches when its named fields
match, an array filter needs each of its items in the array.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hookgate import filters

ORDER = {
    "type": "order.created",
    "version": "2.0",
    "amount": 1500,
    "ratio": 0.5,
    "paid": True,
    "note": None,
    "tags": ["gift", "rush"],
    "items": [{"id": 1, "sku": "A-1"}, {"id": 2, "sku": "B-2"}],
    "customer": {"email": "ann@example.com", "address": {"country": "FR"}},
    "empty": [],
}


def body_matches(spec: Any, body: Any = ORDER) -> bool:
    return filters.compile_filter({"body": spec}).matches({"body": body})


# (filter on the body, does it match ORDER?)
CASES: list[tuple[str, Any, bool]] = [
    # equality, nested objects
    ("string equal", {"type": "order.created"}, True),
    ("string differs", {"type": "order.paid"}, False),
    ("number equal", {"amount": 1500}, True),
    ("int equals float", {"amount": 1500.0}, True),
    ("number is not its text", {"amount": "1500"}, False),
    ("text is not a number", {"version": 2.0}, False),
    ("bool equal", {"paid": True}, True),
    ("bool is not 1", {"paid": 1}, False),
    ("null equal", {"note": None}, True),
    ("null is not missing", {"missing": None}, False),
    ("nested object", {"customer": {"address": {"country": "FR"}}}, True),
    ("nested object differs", {"customer": {"address": {"country": "DE"}}}, False),
    ("nested field of a scalar", {"type": {"name": "x"}}, False),
    ("several fields all match", {"type": "order.created", "paid": True}, True),
    ("several fields, one differs", {"type": "order.created", "paid": False}, False),
    ("empty object matches an object", {"customer": {}}, True),
    ("empty object does not match a scalar", {"type": {}}, False),
    # arrays
    ("array holds the scalar", {"tags": "gift"}, True),
    ("array lacks the scalar", {"tags": "sale"}, False),
    ("array holds every item", {"tags": ["rush", "gift"]}, True),
    ("array lacks one item", {"tags": ["gift", "sale"]}, False),
    ("array filter on a scalar", {"type": ["order.created"]}, False),
    ("array of objects: one matches", {"items": {"sku": "B-2"}}, True),
    ("array of objects: fields from two items", {"items": {"id": 1, "sku": "B-2"}}, False),
    ("empty array filter matches any array", {"tags": []}, True),
    ("empty array never holds a scalar", {"empty": "x"}, False),
    # $eq / $neq
    ("$eq scalar", {"type": {"$eq": "order.created"}}, True),
    ("$eq whole array", {"tags": {"$eq": ["gift", "rush"]}}, True),
    ("$eq array order matters", {"tags": {"$eq": ["rush", "gift"]}}, False),
    ("$eq scalar in array", {"tags": {"$eq": "rush"}}, True),
    ("$eq object exactly", {"customer": {"$eq": {"email": "ann@example.com"}}}, False),
    ("$eq type mismatch", {"amount": {"$eq": "1500"}}, False),
    ("$neq differs", {"type": {"$neq": "order.paid"}}, True),
    ("$neq equal", {"type": {"$neq": "order.created"}}, False),
    ("$neq missing field", {"missing": {"$neq": "x"}}, True),
    ("$neq array holding it", {"tags": {"$neq": "gift"}}, False),
    # $in / $nin
    ("$in list holds value", {"type": {"$in": ["order.created", "order.paid"]}}, True),
    ("$in list lacks value", {"type": {"$in": ["order.paid"]}}, False),
    ("$in list and array field", {"tags": {"$in": ["sale", "rush"]}}, True),
    ("$in substring", {"customer": {"email": {"$in": "@example."}}}, True),
    ("$in substring absent", {"customer": {"email": {"$in": "@test."}}}, False),
    ("$in string and array field", {"tags": {"$in": "gift"}}, True),
    ("$in missing field", {"missing": {"$in": ["x"]}}, False),
    ("$in type mismatch", {"amount": {"$in": ["1500"]}}, False),
    ("$nin lacks value", {"type": {"$nin": ["order.paid"]}}, True),
    ("$nin holds value", {"type": {"$nin": ["order.created"]}}, False),
    ("$nin missing field", {"missing": {"$nin": ["x"]}}, True),
    # $gt $gte $lt $lte
    ("$gt number", {"amount": {"$gt": 1000}}, True),
    ("$gt equal", {"amount": {"$gt": 1500}}, False),
    ("$gte equal", {"amount": {"$gte": 1500}}, True),
    ("$lt float", {"ratio": {"$lt": 1}}, True),
    ("$lte", {"amount": {"$lte": 1499}}, False),
    ("$gt string lexicographic", {"version": {"$gt": "1.9"}}, True),
    ("$lt string lexicographic", {"version": {"$lt": "10"}}, False),
    ("$gt on a string with a number", {"version": {"$gt": 1}}, False),
    ("$gt on a bool", {"paid": {"$gt": 0}}, False),
    ("$gt on null", {"note": {"$gt": 0}}, False),
    ("$gt on missing", {"missing": {"$gt": 0}}, False),
    ("$gt on an array of numbers", {"items": {"id": {"$gt": 1}}}, True),
    ("$gte and $lte together", {"amount": {"$gte": 1000, "$lte": 2000}}, True),
    ("$gte and $lte out of range", {"amount": {"$gte": 1000, "$lte": 1200}}, False),
    # $startsWith / $endsWith
    ("$startsWith", {"type": {"$startsWith": "order."}}, True),
    ("$startsWith no", {"type": {"$startsWith": "refund."}}, False),
    ("$startsWith on a number", {"amount": {"$startsWith": "15"}}, False),
    ("$startsWith on an array", {"tags": {"$startsWith": "gi"}}, True),
    ("$endsWith", {"customer": {"email": {"$endsWith": ".com"}}}, True),
    ("$endsWith no", {"type": {"$endsWith": ".paid"}}, False),
    # $exist
    ("$exist true present", {"note": {"$exist": True}}, True),
    ("$exist true missing", {"missing": {"$exist": True}}, False),
    ("$exist false missing", {"missing": {"$exist": False}}, True),
    ("$exist false present", {"type": {"$exist": False}}, False),
    ("$exist under a missing parent", {"nothing": {"deeper": {"$exist": False}}}, False),
    # $regex
    ("$regex", {"type": {"$regex": "^order\\.(created|paid)$"}}, True),
    ("$regex no", {"type": {"$regex": "^refund"}}, False),
    ("$regex on a number", {"amount": {"$regex": "1500"}}, False),
    ("$regex on an array", {"tags": {"$regex": "^ru"}}, True),
    # $or / $and / $not
    ("$or one holds", {"$or": [{"type": "x"}, {"paid": True}]}, True),
    ("$or none holds", {"$or": [{"type": "x"}, {"paid": False}]}, False),
    ("$and all hold", {"$and": [{"type": "order.created"}, {"amount": {"$gt": 1}}]}, True),
    ("$and one fails", {"$and": [{"type": "order.created"}, {"amount": {"$gt": 9999}}]}, False),
    ("$not", {"$not": {"type": "order.paid"}}, True),
    ("$not of a match", {"$not": {"type": "order.created"}}, False),
    ("$not on a field", {"type": {"$not": {"$startsWith": "refund"}}}, True),
    ("$not of missing", {"missing": {"$not": {"$exist": True}}}, True),
    ("$or inside a field", {"amount": {"$or": [{"$lt": 10}, {"$gt": 1000}]}}, True),
    # five clauses, as in bench/
    (
        "five clauses",
        {
            "type": {"$startsWith": "order."},
            "amount": {"$gte": 1000},
            "tags": "gift",
            "customer": {"address": {"country": {"$in": ["FR", "DE"]}}},
            "paid": {"$neq": False},
        },
        True,
    ),
]


@pytest.mark.parametrize(("spec", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_operator(spec: Any, expected: bool) -> None:
    assert body_matches(spec) is expected


@pytest.mark.parametrize(("spec", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_not_turns_each_case_round(spec: Any, expected: bool) -> None:
    assert filters.compile_filter({"$not": {"body": spec}}).matches({"body": ORDER}) is not expected


def test_a_scalar_body_is_matched_by_a_scalar() -> None:
    assert body_matches(False, False)
    assert not body_matches(False, 0)
    assert body_matches({"$gt": 3}, 4)


def test_a_body_that_is_not_json_is_a_missing_field() -> None:
    """The ingress leaves ``body`` out when it is not JSON."""
    assert not filters.compile_filter({"body": {"type": "x"}}).matches({})
    assert filters.compile_filter({"body": {"$exist": False}}).matches({})


def test_headers_match_in_lower_case_whatever_the_filter_writes() -> None:
    spec = {"headers": {"X-Webhook-Version": "2", "$or": [{"X-Shop": "a"}, {"X-Shop": "b"}]}}
    compiled = filters.compile_filter(spec)
    assert compiled.matches({"headers": {"x-webhook-version": "2", "x-shop": "b"}})
    assert not compiled.matches({"headers": {"x-webhook-version": "3", "x-shop": "b"}})


def test_query_and_path() -> None:
    compiled = filters.compile_filter({"query": {"topic": "orders"}, "path": {"$endsWith": "/v2"}})
    assert compiled.matches({"query": {"topic": ["orders", "refunds"]}, "path": "/hooks/v2"})
    assert not compiled.matches({"query": {"topic": "orders"}, "path": "/hooks/v1"})


def test_the_version_question_routes_by_header_or_body() -> None:
    version_2 = filters.compile_filter(
        {"$or": [{"headers": {"x-webhook-version": "2"}}, {"body": {"version": "2.0"}}]}
    )
    assert version_2.matches({"headers": {"x-webhook-version": "2"}, "body": {}})
    assert version_2.matches({"headers": {}, "body": {"version": "2.0"}})
    assert not version_2.matches({"headers": {"x-webhook-version": "1"}, "body": {"version": "1"}})


@pytest.mark.parametrize(
    ("spec", "parts"),
    [
        ({"body": {"a": 1}}, {"body"}),
        ({"headers": {"a": "1"}, "query": {"b": "2"}}, {"headers", "query"}),
        ({"$or": [{"path": "/x"}, {"$not": {"body": 1}}]}, {"path", "body"}),
    ],
)
def test_a_filter_knows_the_parts_it_reads(spec: Any, parts: set[str]) -> None:
    assert filters.compile_filter(spec).parts == parts


# -- errors at load, with the key path inside the filter -------------------------------

ERRORS: list[tuple[Any, str, str]] = [
    ({"bdy": {"a": 1}}, "bdy", "expected one of headers, query, path, body, $and, $or or $not"),
    ({}, "", "expected a non-empty table"),
    ([1], "", "got a list"),
    ({"body": {"a": {"$gt": [1]}}}, "body.a.$gt", "expected a number or a string, got a list"),
    ({"body": {"a": {"$gte": True}}}, "body.a.$gte", "got a boolean"),
    ({"body": {"a": {"$in": 3}}}, "body.a.$in", "expected a list of values or a string"),
    ({"body": {"a": {"$nin": {"x": 1}}}}, "body.a.$nin", "expected a list of values or a string"),
    ({"body": {"a": {"$startsWith": 1}}}, "body.a.$startsWith", "expected a string"),
    ({"body": {"a": {"$exist": "yes"}}}, "body.a.$exist", "expected true or false"),
    ({"body": {"a": {"$regex": "(x"}}}, "body.a.$regex", "invalid regular expression"),
    ({"body": {"a": {"$regex": "(a)\\1"}}}, "body.a.$regex", "RE2 syntax"),
    ({"body": {"a": {"$or": []}}}, "body.a.$or", "expected a non-empty list of filters"),
    ({"body": {"a": {"$and": {"b": 1}}}}, "body.a.$and", "expected a non-empty list"),
    ({"body": {"a": {"$like": "x"}}}, "body.a.$like", "unknown operator"),
    ({"$or": [{"body": 1}, {"bodi": 2}]}, "$or[1].bodi", "expected one of headers"),
    ({"$not": 5}, "$not", "expected a non-empty table"),
    ({"body": {"items": [{"id": {"$gt": "1", "$foo": 1}}]}}, "body.items[0].id.$foo", "unknown"),
]


@pytest.mark.parametrize(("spec", "path", "message"), ERRORS)
def test_a_wrong_filter_says_where(spec: Any, path: str, message: str) -> None:
    with pytest.raises(filters.FilterError) as caught:
        filters.compile_filter(spec)
    assert caught.value.path == path
    assert message in caught.value.message


def test_json_text_is_parsed_and_bad_text_reported() -> None:
    assert filters.parse('{"body": {"a": 1}}') == {"body": {"a": 1}}
    with pytest.raises(filters.FilterError, match="invalid JSON"):
        filters.parse('{"body": ')


# -- properties on any JSON ---------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "c", "type"]), inner, max_size=4)
    ),
    max_leaves=12,
)
scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-5, 5) | st.text(max_size=3)
fields = st.sampled_from(["a", "b", "c", "type"])


def operator_specs() -> st.SearchStrategy[Any]:
    """Every operator, with operands of the right kind (a filter that compiles)."""
    ordered = st.integers(-5, 5) | st.floats(-5, 5) | st.text(max_size=3)
    leaf = st.one_of(
        scalars,
        st.builds(lambda v: {"$eq": v}, json_values),
        st.builds(lambda v: {"$neq": v}, json_values),
        st.builds(lambda v: {"$in": v}, st.lists(scalars, max_size=3) | st.text(max_size=3)),
        st.builds(lambda v: {"$nin": v}, st.lists(scalars, max_size=3) | st.text(max_size=3)),
        st.builds(lambda op, v: {op: v}, st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), ordered),
        st.builds(lambda op, v: {op: v}, st.sampled_from(["$startsWith", "$endsWith"]), st.text()),
        st.builds(lambda v: {"$exist": v}, st.booleans()),
        st.builds(lambda v: {"$regex": v}, st.sampled_from(["^a", "b$", "[0-9]+", "(x|y)*z"])),
    )
    return st.recursive(
        leaf,
        lambda inner: (
            st.dictionaries(fields, inner, min_size=1, max_size=3)
            | st.lists(inner, max_size=3)
            | st.builds(lambda v: {"$not": v}, inner)
            | st.builds(lambda v: {"$or": v}, st.lists(inner, min_size=1, max_size=3))
            | st.builds(lambda v: {"$and": v}, st.lists(inner, min_size=1, max_size=3))
        ),
        max_leaves=10,
    )


request_documents = st.fixed_dictionaries(
    {},
    optional={
        "headers": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
        "query": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
        "path": st.text(max_size=10),
        "body": json_values,
    },
)


@settings(max_examples=300)
@given(spec=operator_specs(), request=request_documents)
def test_a_filter_never_raises_on_any_json(spec: Any, request: dict[str, Any]) -> None:
    for compiled in (
        filters.compile_filter({"body": spec}),
        filters.compile_filter({"headers": {"a": spec}, "query": spec}),
    ):
        assert compiled.matches(request) in (True, False)


@settings(max_examples=300)
@given(spec=operator_specs(), request=request_documents)
def test_not_is_the_complement(spec: Any, request: dict[str, Any]) -> None:
    for part in ("body", "query", "path"):
        plain = filters.compile_filter({part: spec}).matches(request)
        assert filters.compile_filter({"$not": {part: spec}}).matches(request) is not plain
        inner = filters.compile_filter({part: {"$not": spec}}).matches(request)
        assert inner is not plain


@given(value=json_values)
def test_eq_of_a_value_matches_it(value: Any) -> None:
    assert filters.compile_filter({"body": {"$eq": value}}).matches({"body": value})
