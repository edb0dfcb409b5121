"""The content filter language: Hookdeck's and Convoy's JSON filters, compiled once.

A destination's ``filter`` is matched against the request as one JSON document,
``{"headers": {...}, "query": {...}, "path": "...", "body": ...}`` (header names in
lower case; a repeated query parameter is a list). ``compile_filter`` checks a filter
and turns it into nested closures at load; ``Filter.matches`` then never raises, on
any JSON (docs/interfaces.md, "Content filters", is the contract).

Semantics, after Hookdeck's filter syntax page:

- a scalar matches an equal value of the same JSON type (no coercion: ``"2"`` is not
  ``2``, ``true`` is not ``1``), or an array that holds one;
- an object matches an object whose fields match (others ignored), or an array
  holding such an object;
- an array matches an array that holds a match for each of its items;
- operators: ``$eq``/``$neq`` (deep equality), ``$in``/``$nin`` (one of a list, or a
  substring of a string), ``$gt``/``$gte``/``$lt``/``$lte`` (numbers with numbers,
  strings with strings), ``$startsWith``/``$endsWith``, ``$exist`` (the field is
  present), ``$regex`` (RE2 syntax: linear time on any input), ``$or``, ``$and``,
  ``$not``. A missing field matches only ``$neq``, ``$nin``, ``$exist: false`` and
  what ``$not`` turns round.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import re2

PARTS: Final = ("headers", "query", "path", "body")
"""The parts of a request a filter can read, as keys of its top-level object."""

_LOGICAL = ("$or", "$and", "$not")
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": lambda value, bound: value > bound,
    "$gte": lambda value, bound: value >= bound,
    "$lt": lambda value, bound: value < bound,
    "$lte": lambda value, bound: value <= bound,
}
OPERATORS: Final = (
    "$eq",
    "$neq",
    "$in",
    "$nin",
    *_COMPARISONS,
    "$startsWith",
    "$endsWith",
    "$exist",
    "$regex",
    *_LOGICAL,
)


class _Missing:
    """A field that is not there (JSON has no value for it; ``None`` is null)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()

Matcher = Callable[[Any], bool]


class FilterError(ValueError):
    """A filter that cannot be compiled; ``path`` is the key path inside the filter."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True)
class Filter:
    """A compiled filter: ``matches(request)`` is its verdict on a request document."""

    parts: frozenset[str]
    """The parts of the request it reads (a request need only hold those)."""
    matcher: Matcher

    def matches(self, request: Mapping[str, Any]) -> bool:
        return self.matcher(request)


def parse(spec: object) -> object:
    """A filter as written in the config: a table as is, a string as JSON text."""
    if not isinstance(spec, str):
        return spec
    try:
        return json.loads(spec)
    except json.JSONDecodeError as exc:
        raise FilterError("", f"invalid JSON: {exc}") from None


def compile_filter(spec: object) -> Filter:
    """Check ``spec`` (a parsed filter) and compile it; FilterError says where it is wrong."""
    parts: set[str] = set()
    matcher = _compile_request(spec, "", parts)
    return Filter(frozenset(parts), matcher)


def _compile_request(spec: object, path: str, parts: set[str]) -> Matcher:
    """A filter on the whole request: parts by name, combined with $and, $or, $not.

    Adds the parts it reads to ``parts``.
    """
    if not isinstance(spec, dict) or not spec:
        expected = f"a non-empty table with keys among {', '.join(PARTS)}, $and, $or, $not"
        raise FilterError(path, f"expected {expected}, got {_kind(spec)}")
    checks: list[tuple[str, Matcher]] = []
    for key, operand in spec.items():
        where = _join(path, key)
        if key in PARTS:
            parts.add(key)
            value = _lower_field_names(operand) if key == "headers" else operand
            checks.append((key, _compile(value, where)))
        elif key == "$not":
            checks.append(("", _negated(_compile_request(operand, where, parts))))
        elif key in _LOGICAL:
            checks.append(("", _combined(key, operand, where, parts)))
        else:
            raise FilterError(where, f"expected one of {', '.join(PARTS)}, $and, $or or $not")
    # A part the request lacks (a body that is not JSON) is a missing field.
    return _every(tuple(check if not part else _part(part, check) for part, check in checks))


def _part(name: str, check: Matcher) -> Matcher:
    return lambda request: check(request.get(name, MISSING))


def _combined(name: str, operand: object, path: str, parts: set[str]) -> Matcher:
    if not isinstance(operand, list) or not operand:
        raise FilterError(path, f"expected a non-empty list of filters, got {_kind(operand)}")
    operands = tuple(
        _compile_request(item, f"{path}[{i}]", parts) for i, item in enumerate(operand)
    )
    return _any(operands) if name == "$or" else _every(operands)


def _lower_field_names(spec: object) -> object:
    """Header names are matched in lower case, as a request's are kept."""
    if isinstance(spec, list):
        return [_lower_field_names(item) for item in spec]
    if not isinstance(spec, dict):
        return spec
    lowered: dict[str, object] = {}
    for key, value in spec.items():
        if key in ("$or", "$and", "$not"):
            lowered[key] = _lower_field_names(value)
        else:
            lowered[key if key.startswith("$") else key.lower()] = value
    return lowered


def _compile(spec: Any, path: str) -> Matcher:
    if isinstance(spec, dict):
        return _compile_object(spec, path)
    if isinstance(spec, list):
        return _compile_array(spec, path)
    _check_json(spec, path)
    return _equals_or_holds(spec)


def _compile_object(spec: dict[str, Any], path: str) -> Matcher:
    """Operators apply to the value itself; field keys to its fields (any item of an array)."""
    checks: list[Matcher] = []
    fields: list[tuple[str, Matcher]] = []
    for key, operand in spec.items():
        where = _join(path, key)
        if key.startswith("$"):
            checks.append(_operator(key, operand, where))
        else:
            fields.append((key, _compile(operand, where)))
    if fields or not checks:  # {} matches any object
        checks.append(_fields_match(tuple(fields)))
    if len(checks) == 1:
        return checks[0]
    return _every(tuple(checks))


def _fields_match(fields: tuple[tuple[str, Matcher], ...]) -> Matcher:
    def on_object(value: Any) -> bool:
        if not isinstance(value, dict):
            return False
        for key, matches in fields:
            if not matches(value.get(key, MISSING)):
                return False
        return True

    def matcher(value: Any) -> bool:
        if isinstance(value, list):
            return any(on_object(item) for item in value)
        return on_object(value)

    return matcher


# Plain loops rather than all()/any() over a generator: filters run on every webhook.


def _every(checks: tuple[Matcher, ...]) -> Matcher:
    if len(checks) == 1:
        return checks[0]

    def matcher(value: Any) -> bool:
        for check in checks:
            if not check(value):
                return False
        return True

    return matcher


def _any(checks: tuple[Matcher, ...]) -> Matcher:
    def matcher(value: Any) -> bool:
        for check in checks:
            if check(value):
                return True
        return False

    return matcher


def _compile_array(spec: list[Any], path: str) -> Matcher:
    """Every item of the filter's array matches some item of the value's array."""
    items = tuple(_compile(item, f"{path}[{i}]") for i, item in enumerate(spec))
    return lambda value: isinstance(value, list) and all(any(m(v) for v in value) for m in items)


def _equals_or_holds(expected: Any) -> Matcher:
    if isinstance(expected, str):
        # The usual case, made cheap: a string equals only a string.
        def equals_text(value: Any) -> bool:
            if type(value) is str:
                return bool(value == expected)
            return isinstance(value, list) and any(equal(item, expected) for item in value)

        return equals_text

    def matcher(value: Any) -> bool:
        if isinstance(value, list):
            return any(equal(item, expected) for item in value)
        return equal(value, expected)

    return matcher


def _operator(name: str, operand: Any, path: str) -> Matcher:
    build = _BUILDERS.get(name)
    if build is None:
        raise FilterError(path, f"unknown operator (expected one of {', '.join(OPERATORS)})")
    return build(name, operand, path)


def _eq(name: str, operand: Any, path: str) -> Matcher:
    _check_json(operand, path)

    def matcher(value: Any) -> bool:
        if isinstance(value, list) and not isinstance(operand, list):
            return any(equal(item, operand) for item in value)
        return equal(value, operand)

    return matcher if name == "$eq" else _negated(matcher)


def _in(name: str, operand: Any, path: str) -> Matcher:
    if isinstance(operand, str):
        matcher = _holds_substring(operand)
    elif isinstance(operand, list):
        _check_json(operand, path)
        matcher = _one_of(tuple(operand))
    else:
        raise FilterError(path, f"expected a list of values or a string, got {_kind(operand)}")
    return matcher if name == "$in" else _negated(matcher)


def _holds_substring(text: str) -> Matcher:
    def matcher(value: Any) -> bool:
        if isinstance(value, str):
            return text in value
        return isinstance(value, list) and any(equal(item, text) for item in value)

    return matcher


def _one_of(choices: tuple[Any, ...]) -> Matcher:
    def matcher(value: Any) -> bool:
        if isinstance(value, list):
            return any(equal(item, c) for item in value for c in choices)
        return any(equal(value, c) for c in choices)

    return matcher


def _comparison(name: str, operand: Any, path: str) -> Matcher:
    compare = _COMPARISONS[name]
    if _is_number(operand):
        same_kind: Callable[[Any], bool] = _is_number
    elif isinstance(operand, str):

        def same_kind(value: Any) -> bool:
            return isinstance(value, str)

    else:
        raise FilterError(path, f"expected a number or a string, got {_kind(operand)}")
    return _on_value_or_items(lambda value: same_kind(value) and compare(value, operand))


def _affix(name: str, operand: Any, path: str) -> Matcher:
    if not isinstance(operand, str):
        raise FilterError(path, f"expected a string, got {_kind(operand)}")
    if name == "$startsWith":
        return _on_value_or_items(
            lambda value: isinstance(value, str) and value.startswith(operand)
        )
    return _on_value_or_items(lambda value: isinstance(value, str) and value.endswith(operand))


def _exist(_name: str, operand: Any, path: str) -> Matcher:
    if not isinstance(operand, bool):
        raise FilterError(path, f"expected true or false, got {_kind(operand)}")
    return lambda value: (value is not MISSING) is operand


def _regex(_name: str, operand: Any, path: str) -> Matcher:
    if not isinstance(operand, str):
        raise FilterError(path, f"expected a regular expression string, got {_kind(operand)}")
    options = re2.Options()
    options.log_errors = False  # the error is reported, not printed on stderr
    try:
        pattern = re2.compile(operand, options)
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise FilterError(path, f"invalid regular expression (RE2 syntax): {detail}") from None
    return _on_value_or_items(
        lambda value: isinstance(value, str) and pattern.search(value) is not None
    )


def _logical(name: str, operand: Any, path: str) -> Matcher:
    if name == "$not":
        return _negated(_compile(operand, path))
    if not isinstance(operand, list) or not operand:
        raise FilterError(path, f"expected a non-empty list of filters, got {_kind(operand)}")
    operands = tuple(_compile(item, f"{path}[{i}]") for i, item in enumerate(operand))
    return _any(operands) if name == "$or" else _every(operands)


_BUILDERS: dict[str, Callable[[str, Any, str], Matcher]] = {
    "$eq": _eq,
    "$neq": _eq,
    "$in": _in,
    "$nin": _in,
    **dict.fromkeys(_COMPARISONS, _comparison),
    "$startsWith": _affix,
    "$endsWith": _affix,
    "$exist": _exist,
    "$regex": _regex,
    **dict.fromkeys(_LOGICAL, _logical),
}


def _negated(matcher: Matcher) -> Matcher:
    return lambda value: not matcher(value)


def _on_value_or_items(test: Matcher) -> Matcher:
    """``test`` on a value, or on any item when the value is an array."""

    def matcher(value: Any) -> bool:
        if isinstance(value, list):
            return any(test(item) for item in value)
        return test(value)

    return matcher


def equal(value: Any, expected: Any) -> bool:
    """JSON equality: same type (a bool is not a number), same value, deeply."""
    if isinstance(expected, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(expected, bool) and value is expected
    if _is_number(expected):
        return _is_number(value) and value == expected
    if isinstance(expected, dict):
        return (
            isinstance(value, dict)
            and value.keys() == expected.keys()
            and all(equal(value[k], expected[k]) for k in expected)
        )
    if isinstance(expected, list):
        return (
            isinstance(value, list)
            and len(value) == len(expected)
            and all(equal(v, e) for v, e in zip(value, expected, strict=True))
        )
    return type(value) is type(expected) and value == expected


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_json(operand: Any, path: str) -> None:
    """Operands compared by equality must be JSON values (TOML also has dates)."""
    if isinstance(operand, dict):
        for key, item in operand.items():
            _check_json(item, _join(path, key))
    elif isinstance(operand, list):
        for i, item in enumerate(operand):
            _check_json(item, f"{path}[{i}]")
    elif not (operand is None or isinstance(operand, str | bool | int | float)):
        raise FilterError(path, f"expected a JSON value, got {_kind(operand)}")


def _kind(value: Any) -> str:
    """What a value is, in JSON's words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if _is_number(value):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, dict):
        return "a table" if value else "an empty table"
    return type(value).__name__


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
