"""The transform contract: what a jq program reads, and what its output must be."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import jq
import orjson
import pytest

from hookgate import transform
from hookgate.transform import TransformFailed, TransformInput

ORDER = {"id": "ord_1", "type": "order.created", "data": {"total": 1500, "currency": "EUR"}}


def request(body: Any = ORDER, **headers: str) -> TransformInput:
    return TransformInput(
        body=body if isinstance(body, bytes) else orjson.dumps(body),
        headers=orjson.dumps({"content-type": "application/json", **headers}),
        source="shop",
        event_type="order.created",
        message_id="msg_1",
    )


def run(program: str, given: TransformInput | None = None, max_size: int = 1 << 20) -> Any:
    return transform.run_program(jq.compile(program), given or request(), max_size)


def test_reshape_the_body() -> None:
    body, headers = run("{body: {order: .body.id, cents: .body.data.total}}")
    assert orjson.loads(body) == {"order": "ord_1", "cents": 1500}
    assert headers == ()


def test_set_headers_from_the_message() -> None:
    program = (
        '{headers: {"X-Event": .event_type, "X-Source": .source, "X-Shop": .headers["x-shop"]}}'
    )
    body, headers = run(program, request(**{"x-shop": "acme"}))
    assert body is None  # no body in the output: the inbound body is sent as it is
    assert headers == (("X-Event", "order.created"), ("X-Source", "shop"), ("X-Shop", "acme"))


def test_the_message_id_is_there_to_read() -> None:
    body, _ = run("{body: {id: .message_id}}")
    assert orjson.loads(body) == {"id": "msg_1"}


def test_hookgate_own_headers_cannot_be_set() -> None:
    program = (
        '{headers: {"webhook-id": "forged", "Hookgate-Attempt": "9", "Via": "x", "X-Ok": "1"}}'
    )
    assert run(program)[1] == (("X-Ok", "1"),)


@pytest.mark.parametrize(
    ("program", "error"),
    [
        ('error("no such order")', "jq: no such order"),
        ('.body.data.total + "x"', 'jq: number (1500) and string ("x") cannot be added'),
        ("empty", "the program produced no output"),
        ("{body: 1}, {body: 2}", "the program produced more than one output"),
        (".body", 'must output an object with "body" and/or "headers", got {"id":"ord_1"'),
        ("[1]", 'must output an object with "body" and/or "headers", got [1]'),
        ('{headers: ["x"]}', '"headers" must be an object, got ["x"]'),
        ('{headers: {"X-N": 1}}', "header 'X-N' must be a string, got 1"),
        ('{headers: {"Bad Name": "1"}}', "'Bad Name' is not a valid header name"),
        ('{headers: {"X-A": "1\\r\\nX-B: 2"}}', "the value of header 'X-A' holds a control"),
    ],
)
def test_a_failing_program_says_why(program: str, error: str) -> None:
    with pytest.raises(TransformFailed) as caught:
        run(program)
    assert error in str(caught.value)


def test_a_body_that_is_not_json_fails() -> None:
    with pytest.raises(TransformFailed, match="the inbound body is not JSON"):
        run(".", request(b"a=1&b=2"))


def test_a_body_cannot_smuggle_fields_beside_itself() -> None:
    """Bytes that would close the body's JSON and add fields are refused, not spliced in."""
    sneaky = b'{"a": 1}, "source": "bank", "x": {"b": 2}'
    with pytest.raises(TransformFailed, match="not JSON"):
        run("{body: {s: .source}}", request(sneaky))


def test_the_output_size_is_limited() -> None:
    body, _ = run('{body: "x" * 100}', max_size=102)  # "xxx...": 100 + 2 quotes
    assert len(body) == 102
    with pytest.raises(TransformFailed, match=r"the output is 103 bytes, over transform_max_size"):
        run('{body: "x" * 101}', max_size=102)


def test_compile_errors_are_one_line() -> None:
    problem = transform.compile_error("{body: .body")
    assert problem is not None
    assert problem.startswith("jq: error: syntax error")
    assert "\n" not in problem
    assert transform.compile_error("{body: .body}") is None


# A failing run whose exception is kept in a cycle (a frame that holds its own
# exception), then collected: jq's result iterator, if the traceback's frames still
# held it, would be freed by the garbage collector, and that crashes the interpreter.
_COLLECTED_FAILURES = """
import gc
import jq
from hookgate import transform

given = transform.TransformInput(b'{"a": 1}', b"{}", "s", None, "m")
def fail(program):
    try:
        transform.run_program(program, given, 1 << 20)
    except transform.TransformFailed as exc:
        kept = exc
        return kept
gc.disable()
for program in ['error("no")', ".a, .a", "empty"] * 300:
    fail(jq.compile(program))
gc.collect()
print("collected")
"""


def test_failed_runs_collected_from_a_cycle_do_not_crash_the_interpreter() -> None:
    # In a process of its own: without the fix, this ends the interpreter with SIGSEGV
    # (exit code 139 at the end of a test run, after pytest's last gc.collect).
    ran = subprocess.run(
        [sys.executable, "-c", _COLLECTED_FAILURES], capture_output=True, text=True, timeout=60
    )
    assert (ran.returncode, ran.stdout.strip()) == (0, "collected"), ran.stderr
