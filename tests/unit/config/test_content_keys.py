"""A destination's filter and transform keys: loaded as written, errors with key path and line."""

from __future__ import annotations

from pathlib import Path

from .samples import MINIMAL_SOURCE, errors_of, line_of, load

DESTINATION = (
    MINIMAL_SOURCE
    + """
[destinations.v2]
url = "http://127.0.0.1:5000/"
sources = ["x"]
"""
)


def test_a_filter_as_an_inline_table_and_as_json_text_load_alike(tmp_path: Path) -> None:
    table = load(tmp_path, DESTINATION + 'filter = { headers = { "X-Webhook-Version" = "2" } }\n')
    text = load(tmp_path, DESTINATION + """filter = '{"headers": {"X-Webhook-Version": "2"}}'\n""")
    expected = {"headers": {"X-Webhook-Version": "2"}}
    assert table.destinations["v2"].filter == expected
    assert text.destinations["v2"].filter == expected


def test_a_filter_as_a_sub_table(tmp_path: Path) -> None:
    text = (
        MINIMAL_SOURCE
        + """
[destinations.v2]
url = "http://127.0.0.1:5000/"
sources = ["x"]

[destinations.v2.filter.body]
version = { "$startsWith" = "2." }
"""
    )
    loaded = load(tmp_path, text)
    assert loaded.destinations["v2"].filter == {"body": {"version": {"$startsWith": "2."}}}


def test_a_wrong_operator_names_its_key_path_and_line(tmp_path: Path) -> None:
    text = DESTINATION + 'filter = { body = { amount = { "$gt" = [1, 2] } } }\n'
    assert errors_of(tmp_path, text) == [
        "destinations.v2.filter.body.amount.$gt: expected a number or a string, got a list "
        f"(line {line_of(text, 'filter =')})"
    ]


def test_a_misspelt_part_is_refused(tmp_path: Path) -> None:
    text = DESTINATION + 'filter = { bdy = { type = "x" } }\n'
    assert errors_of(tmp_path, text) == [
        "destinations.v2.filter.bdy: expected one of headers, query, path, body, $and, $or "
        f"or $not (line {line_of(text, 'filter =')})"
    ]


def test_an_error_in_an_or_list_names_the_item(tmp_path: Path) -> None:
    text = (
        DESTINATION + """filter = '{"$or": [{"body": {"a": 1}}, {"body": {"b": {"$in": 3}}}]}'\n"""
    )
    (error,) = errors_of(tmp_path, text)
    assert error.startswith("destinations.v2.filter.$or[1].body.b.$in: expected a list of values")
    assert error.endswith(f"(line {line_of(text, 'filter =')})")


def test_bad_json_text_is_reported(tmp_path: Path) -> None:
    text = DESTINATION + """filter = '{"body": {"a": 1}'\n"""
    (error,) = errors_of(tmp_path, text)
    assert error.startswith("destinations.v2.filter: invalid JSON: ")
    assert error.endswith(f"(line {line_of(text, 'filter =')})")


def test_json_text_that_is_not_an_object_is_reported(tmp_path: Path) -> None:
    text = DESTINATION + "filter = '[1, 2]'\n"
    assert errors_of(tmp_path, text) == [
        "destinations.v2.filter: expected a table, or a JSON object as text "
        f"(line {line_of(text, 'filter =')})"
    ]


def test_a_bad_regex_is_reported_at_load(tmp_path: Path) -> None:
    text = DESTINATION + 'filter = { body = { ref = { "$regex" = "(main" } } }\n'
    (error,) = errors_of(tmp_path, text)
    assert error.startswith("destinations.v2.filter.body.ref.$regex: invalid regular expression")


def test_a_transform_loads_with_its_limits(tmp_path: Path) -> None:
    text = (
        DESTINATION
        + """transform = '{body: {id: .body.id}}'
transform_timeout = "250ms"
transform_max_size = "64KiB"
"""
    )
    destination = load(tmp_path, text).destinations["v2"]
    assert destination.transform == "{body: {id: .body.id}}"
    assert destination.transform_timeout == 0.25
    assert destination.transform_max_size == 64 * 1024


def test_a_transform_that_does_not_compile_shows_jq_error(tmp_path: Path) -> None:
    text = DESTINATION + "transform = '{body: .body'\n"
    (error,) = errors_of(tmp_path, text)
    assert error.startswith("destinations.v2.transform: jq: error: syntax error")
    assert error.endswith(f"(line {line_of(text, 'transform =')})")


def test_transform_limits_must_be_positive(tmp_path: Path) -> None:
    text = DESTINATION + 'transform = "."\ntransform_timeout = "0s"\ntransform_max_size = 0\n'
    assert errors_of(tmp_path, text) == [
        "destinations.v2.transform_timeout: expected a duration > 0, got 0.0 "
        f"(line {line_of(text, 'transform_timeout')})",
        "destinations.v2.transform_max_size: expected a size >= 1, got 0 "
        f"(line {line_of(text, 'transform_max_size')})",
    ]


def test_a_transform_cannot_batch(tmp_path: Path) -> None:
    text = DESTINATION + 'transform = "."\nbatch_max = 10\n'
    assert errors_of(tmp_path, text) == [
        "destinations.v2.transform: a transform cannot be combined with batch_max > 1 (yet) "
        f"(line {line_of(text, 'transform =')})"
    ]
