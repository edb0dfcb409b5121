"""The admin API from the command line: a small synchronous client and its printing.

``http_request`` is the one place that speaks HTTP for the CLI (``send`` uses it
too): headers as written, no proxy, no redirects, a bounded timeout, and every
failure turned into a ``CommandError`` whose message is one line. ``AdminClient``
adds the bearer token and the API's error answer; ``shape`` decodes its answers into
the daemon's own types (``hookgate.admin.answers``), which the ``*_text`` functions
turn into readable tables.
"""

from __future__ import annotations

import http.client
import socket
import urllib.parse
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import orjson

from hookgate import __version__, config
from hookgate.admin import answers, routes

USER_AGENT = f"hookgate-cli/{__version__}"
DEFAULT_TIMEOUT = 30.0
API = routes.PREFIX
# A wildcard listen address accepts connections on loopback too; connect there.
_LOOPBACK_FOR = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104
_T = TypeVar("_T")


class CommandError(Exception):
    """A command could not do its work; the message is printed after "hookgate: "."""


class ErrorAnswer(CommandError):
    """The admin API answered ``status`` and an ``ApiError``; the message is its detail."""

    def __init__(self, status: int, error: answers.ApiError) -> None:
        super().__init__(error.detail)
        self.status = status
        self.error = error


# -- HTTP ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpResponse:
    """What a server answered."""

    status: int
    reason: str
    body: bytes

    @property
    def ok(self) -> bool:
        """A 2xx status."""
        return 200 <= self.status < 300


def http_request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    body: bytes | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> HttpResponse:
    """Make one request and return the answer, whatever its status.

    Header names go out as written; no proxy is used (the admin API is local, and a
    bearer token has no business in a proxy) and no redirect is followed (hookgate
    does not follow them either). Raises ``CommandError`` when there is no answer: a
    refused connection, an unknown host, a timeout, a URL that is not http(s).
    """
    connection = _connection(url, timeout)
    parts = urllib.parse.urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        try:
            connection.connect()
        except OSError as exc:
            raise CommandError(f"cannot connect to {url}: {_why(exc)}") from None
        try:
            connection.request(method, target, body=body, headers=dict(headers))
            response = connection.getresponse()
            return HttpResponse(response.status, response.reason, response.read())
        except (OSError, http.client.HTTPException) as exc:
            raise CommandError(f"no answer from {url}: {_why(exc)}") from None
    finally:
        connection.close()


def _connection(url: str, timeout: float) -> http.client.HTTPConnection:
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port  # ValueError: not a number, or out of range
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
        raise CommandError(f"expected an http:// or https:// URL, got {url!r}")
    if parts.scheme == "https":
        return http.client.HTTPSConnection(parts.hostname, port, timeout=timeout)
    return http.client.HTTPConnection(parts.hostname, port, timeout=timeout)


def _why(exc: Exception) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


# -- the admin API ------------------------------------------------------------------


def admin_url(listen: str) -> str:
    """The URL that reaches an admin listener bound to ``listen`` from this host."""
    host, port = config.parse_listen(listen)
    host = _LOOPBACK_FOR.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class AdminClient:
    """Calls the admin API at ``base_url`` with the bearer ``token`` (if any)."""

    def __init__(self, base_url: str, token: str | None, timeout: float = DEFAULT_TIMEOUT):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, query: Mapping[str, str | int | None] | None = None) -> Any:
        """GET an API route; its JSON answer, or ``ErrorAnswer``."""
        return self._json(self._call("GET", path, query))

    def post(self, path: str, query: Mapping[str, str | int | None] | None = None) -> Any:
        """POST to an API route; its JSON answer, or ``ErrorAnswer``."""
        return self._json(self._call("POST", path, query))

    def readiness(self) -> tuple[bool, Any]:
        """GET /readyz: whether hookgate is ready, and the JSON it answered."""
        response = self._call("GET", "/readyz", None)
        if response.status not in (200, 503):
            raise _api_error(response)
        return response.status == 200, _decode(response.body)

    def _call(
        self, method: str, path: str, query: Mapping[str, str | int | None] | None
    ) -> HttpResponse:
        url = self.base_url + path
        params = {k: str(v) for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urllib.parse.urlencode(params)
        return http_request(method, url, headers=self._headers, timeout=self.timeout)

    @staticmethod
    def _json(response: HttpResponse) -> Any:
        if not response.ok:
            raise _api_error(response)
        return _decode(response.body)


def segment(value: str) -> str:
    """``value`` quoted to be one path segment of a route."""
    return urllib.parse.quote(value, safe="")


def _decode(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise CommandError("the admin API answered something that is not JSON") from None


def _api_error(response: HttpResponse) -> ErrorAnswer:
    try:
        error = msgspec.json.decode(response.body, type=answers.ApiError, strict=False)
    except msgspec.DecodeError:  # not JSON, or not an ApiError (a proxy's page, say)
        detail = f"the admin API answered HTTP {response.status} {response.reason}".rstrip()
        error = answers.ApiError("http", detail)
    return ErrorAnswer(response.status, error)


def json_text(payload: Any) -> str:
    """``payload`` as indented JSON, for ``--json``."""
    return orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode()


def shape(payload: Any, tp: type[_T]) -> _T:
    """The API's JSON ``payload`` as the answer type ``tp``, or ``CommandError``; as
    lenient as ``answers`` makes it (a daemon may be older or newer than this CLI)."""
    try:
        return msgspec.convert(payload, tp, strict=False)
    except msgspec.ValidationError as exc:
        raise CommandError(f"unexpected answer from the admin API: {exc}") from None


# -- readable text --------------------------------------------------------------------


def printable(text: str, *, multiline: bool = False) -> str:
    """``text`` with control characters escaped, so a payload cannot drive the terminal."""
    keep = "\n\t" if multiline else ""
    return "".join(
        c if c.isprintable() or c in keep else c.encode("unicode_escape").decode() for c in text
    )


def table(
    header: Sequence[str], rows: Iterable[Sequence[object]], *, right: Collection[int] = ()
) -> str:
    """Columns padded to their widest cell; columns in ``right`` are right-aligned."""
    cells = [list(header), *([printable(str(c)) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        padded = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def when(iso: str | None) -> str:
    """An API time, shortened to the second: ``2026-11-27 09:30:28Z``."""
    if not iso:
        return "-"
    stamp, dot, _ = iso.partition(".")
    return stamp.replace("T", " ") + "Z" if dot else iso.replace("T", " ")


def messages_text(page: answers.MessagePage) -> str:
    """``messages list``: one row per message, and how to get the next page."""
    if not page.items:
        return "no messages"
    rows = [
        (
            m.id,
            when(m.received_at),
            m.source,
            m.event_type or "-",
            m.size,
            m.deliveries.pending,
            m.deliveries.delivered,
            m.deliveries.dead,
        )
        for m in page.items
    ]
    header = ("ID", "RECEIVED", "SOURCE", "EVENT TYPE", "SIZE", "PENDING", "DELIVERED", "DEAD")
    text = table(header, rows, right={4, 5, 6, 7})
    if page.next_cursor:
        text += f"\nmore: --cursor {printable(page.next_cursor)}"
    return text


def deliveries_text(deliveries: Sequence[answers.Delivery]) -> str:
    """A table of deliveries: where each goes, its state and its last result."""
    rows = [
        (
            d.id,
            d.message_id,
            d.destination,
            d.state,
            d.attempts,
            when(d.next_attempt_at) if d.state == "pending" else "-",
            _result(d.last_status, d.last_error),
        )
        for d in deliveries
    ]
    header = ("ID", "MESSAGE", "DESTINATION", "STATE", "ATTEMPTS", "NEXT ATTEMPT", "LAST RESULT")
    return table(header, rows, right={0, 4})


def message_text(message: answers.MessageDetail) -> str:
    """``messages show``: the message, its headers and body, its deliveries and attempts."""
    fields = [
        ("id", message.id),
        ("source", message.source),
        ("event type", message.event_type or "-"),
        ("event id", message.event_id or "-"),
        ("received", when(message.received_at)),
        ("size", f"{message.size} bytes"),
    ]
    parts = ["\n".join(f"{name + ':':<12}{printable(value)}" for name, value in fields)]
    headers = [f"  {printable(k)}: {printable(v)}" for k, v in message.headers.items()]
    parts.append("\n".join(["headers:", *headers]) if headers else "headers: none")
    parts.append(_body_text(message))
    if message.deliveries:
        parts.append("deliveries:\n" + deliveries_text(message.deliveries))
        parts.extend(_attempts_text(d) for d in message.deliveries if d.attempt_log)
    else:
        parts.append("deliveries: none (no destination matched)")
    if message.skipped:
        skipped = [
            f"  {printable(s.destination)}: {_SKIP_REASONS.get(s.reason, s.reason)}"
            for s in message.skipped
        ]
        parts.append("\n".join(["skipped:", *skipped]))
    return "\n\n".join(parts)


_SKIP_REASONS = {
    "event_type": "its events do not include this event type",
    "filter": "its filter did not match",
}


def _body_text(message: answers.MessageDetail) -> str:
    if message.body is not None:
        # One trailing newline is the usual end of a body, not a line worth showing.
        return "body:\n" + printable(message.body.removesuffix("\n"), multiline=True)
    if message.body_base64 is not None:
        return "body (not UTF-8, base64):\n" + message.body_base64
    return "body: (not available)"


def _attempts_text(delivery: answers.DeliveryDetail) -> str:
    rows = [
        (
            when(a.started_at),
            f"{a.duration_ms:.1f}ms",
            _result(a.status, a.error),
            _snippet(a.response_snippet),
        )
        for a in delivery.attempt_log
    ]
    title = f"attempts of delivery {delivery.id} ({printable(delivery.destination)}):\n"
    text = title + table(("STARTED", "DURATION", "RESULT", "RESPONSE"), rows, right={1})
    if delivery.state == "dead" and delivery.dead_reason:
        text += f"\ndead: {_DEAD_REASONS.get(delivery.dead_reason, delivery.dead_reason)}"
    return text


_DEAD_REASONS = {
    "gone": "gone (the destination answered 410 Gone)",
    "max_attempts": "max_attempts (no attempt left)",
    "max_age": "max_age (the message grew too old to retry)",
    "transform": "transform (its transform failed; fix it, reload, then retry)",
}


def _result(status: int | None, error: str | None) -> str:
    return str(status) if status is not None else error or "-"


def _snippet(text: str, width: int = 60) -> str:
    first = text.strip().split("\n", 1)[0]
    return first if len(first) <= width else first[: width - 1] + "…"


def status_text(
    url: str, ready: bool, readiness: answers.Readiness, stats: answers.Stats | None
) -> str:
    """``hookgate status``: readiness, its checks, the queue and each destination."""
    checks = ", ".join(f"{name} {printable(value)}" for name, value in readiness.checks.items())
    lines = [f"hookgate at {url}: {'ready' if ready else 'NOT READY'}", f"checks: {checks}"]
    if stats is not None:
        counts = stats.deliveries
        age = f" (oldest {stats.oldest_pending_age_s:.1f}s)" if counts.pending else ""
        lines.append(f"messages: {stats.messages}")
        lines.append(
            f"deliveries: {counts.pending} pending{age}, {counts.delivered} delivered,"
            f" {counts.dead} dead"
        )
    destinations = destinations_rows(readiness, stats)
    if destinations:
        header = ("DESTINATION", "STATE", "PENDING", "DEAD")
        lines += ["", table(header, destinations, right={2, 3})]
    return "\n".join(lines)


def destinations_rows(
    readiness: answers.Readiness, stats: answers.Stats | None
) -> list[tuple[str, ...]]:
    """Each destination's state (from /readyz) beside its counts (from /stats)."""
    counts = stats.destinations if stats is not None else {}
    states = readiness.destinations or {}
    rows: list[tuple[str, ...]] = []
    for name in sorted({*states, *counts}):
        ready = states.get(name)
        queue = counts.get(name)
        pending = queue.pending if queue else ready.pending if ready else 0
        dead = "-" if stats is None else str(queue.dead if queue else 0)
        rows.append((name, ready.state if ready else "-", str(pending), dead))
    return rows


def plural(count: int, one: str, many: str) -> str:
    """``1 delivery``, ``2 deliveries``."""
    return f"{count} {one if count == 1 else many}"


def destination_text(destination: answers.Destination) -> str:
    """One line for ``pause`` and ``resume``."""
    action = "paused" if destination.paused else "resumed"
    return (
        f"{printable(destination.name)}: {action}, state {destination.state}"
        f" ({destination.pending} pending, {destination.dead} dead)"
    )
