"""The admin API (``/api/v1``): inspect messages, retry, replay, pause and resume.

Answers are msgspec Structs, so the OpenAPI document is generated from the very
types the handlers encode; ``src/hookgate/openapi.json`` is that document, kept in
the repository (a test checks it is current).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import msgspec
import structlog
from aiohttp import web

from hookgate import __version__
from hookgate.config import Config, masked_url
from hookgate.errors import ConflictError, StoreError
from hookgate.outbound.dispatcher import Dispatcher
from hookgate.store import (
    AttemptRow,
    DeliveryRow,
    DeliveryState,
    MessageFilter,
    MessageRow,
    format_time,
    parse_message_id,
)
from hookgate.store.sqlite.admin import SQLiteAdmin

log = structlog.get_logger("hookgate.api")

PREFIX = "/api/v1"
OPENAPI_FILE = Path(__file__).with_name("openapi.json")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
_STATES: tuple[DeliveryState, ...] = ("pending", "delivered", "dead")

# -- answer shapes -------------------------------------------------------------


class ApiError(msgspec.Struct):
    error: str
    detail: str


class DeliveryCounts(msgspec.Struct):
    pending: int
    delivered: int
    dead: int


class Message(msgspec.Struct):
    id: str
    source: str
    event_type: str | None
    event_id: str | None
    received_at: str
    size: int
    deliveries: DeliveryCounts


class Attempt(msgspec.Struct):
    started_at: str
    duration_ms: float
    status: int | None
    error: str | None
    response_snippet: str


class Delivery(msgspec.Struct):
    id: int
    message_id: str
    destination: str
    state: DeliveryState
    attempts: int
    next_attempt_at: str
    last_status: int | None
    last_error: str | None
    updated_at: str
    # Why it died: "gone" (410), "max_attempts" or "max_age"; null unless dead.
    dead_reason: str | None


class DeliveryDetail(Delivery):
    attempt_log: list[Attempt]


class MessageDetail(msgspec.Struct):
    id: str
    source: str
    event_type: str | None
    event_id: str | None
    received_at: str
    size: int
    headers: dict[str, str]
    body: str | None
    body_base64: str | None
    deliveries: list[DeliveryDetail]


class MessagePage(msgspec.Struct):
    items: list[Message]
    next_cursor: str | None


class DeliveryPage(msgspec.Struct):
    items: list[Delivery]
    next_cursor: str | None


class Destination(msgspec.Struct):
    name: str
    url: str | None
    state: Literal["ok", "backing_off", "open", "paused"]
    paused: bool
    configured: bool
    pending: int
    dead: int


class DestinationList(msgspec.Struct):
    items: list[Destination]


class ReplayResult(msgspec.Struct):
    deliveries: list[Delivery]


class RetryResult(msgspec.Struct):
    retried: int


class DestinationStats(msgspec.Struct):
    pending: int
    dead: int
    delivered: int = 0


class Stats(msgspec.Struct):
    messages: int
    deliveries: DeliveryCounts
    oldest_pending_age_s: float
    destinations: dict[str, DestinationStats]


class Problem(Exception):
    """An error answer of the API."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


Handler = Callable[[web.Request], Awaitable[msgspec.Struct]]

# -- the API -------------------------------------------------------------------


class AdminApi:
    def __init__(self, config: Config, admin: SQLiteAdmin, dispatcher: Dispatcher) -> None:
        self.admin = admin
        self.dispatcher = dispatcher
        self.apply(config)

    def apply(self, config: Config) -> None:
        self.config = config
        token = config.admin.token
        self._token_digest = None if token is None else _digest(token)

    def routes(self) -> list[web.RouteDef]:
        table: list[tuple[str, str, Handler]] = [
            ("GET", "/messages", self.list_messages),
            ("GET", "/messages/{id}", self.show_message),
            ("POST", "/messages/{id}/replay", self.replay_message),
            ("GET", "/deliveries", self.list_deliveries),
            ("GET", "/deliveries/{id}", self.show_delivery),
            ("POST", "/deliveries/{id}/retry", self.retry_delivery),
            ("GET", "/destinations", self.list_destinations),
            ("POST", "/destinations/{name}/retry", self.retry_destination),
            ("POST", "/destinations/{name}/pause", self.pause_destination),
            ("POST", "/destinations/{name}/resume", self.resume_destination),
            ("GET", "/stats", self.stats),
        ]
        routes = [web.route(m, PREFIX + p, self._endpoint(h)) for m, p, h in table]
        routes.append(web.get(PREFIX + "/openapi.json", self.openapi))
        return routes

    def _endpoint(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def endpoint(request: web.Request) -> web.Response:
            try:
                self._authorize(request)
                return _answer(200, await handler(request))
            except Problem as exc:
                return _answer(exc.status, ApiError(exc.code, exc.detail))
            except StoreError as exc:
                log.error("api.store_failed", path=request.path, error=str(exc))
                return _answer(503, ApiError("unavailable", "the store cannot answer now"))

        return endpoint

    def _authorize(self, request: web.Request) -> None:
        if self._token_digest is None:
            return
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            _digest(given.strip()), self._token_digest
        ):
            raise Problem(401, "unauthorized", "a valid bearer token is required")

    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(body=OPENAPI_FILE.read_bytes(), content_type="application/json")

    # -- messages -------------------------------------------------------------

    async def list_messages(self, request: web.Request) -> MessagePage:
        query = request.query
        cursor = _get(query, "cursor")
        before = None if cursor is None else parse_message_id(cursor)
        if cursor is not None and before is None:
            raise Problem(400, "bad_request", "cursor: not a cursor from a previous page")
        message_filter = MessageFilter(
            source=_get(query, "source"),
            event_type=_get(query, "event_type"),
            state=_state(_get(query, "state")),
            since=_time(query, "since"),
            until=_time(query, "until"),
            before_id=before,
        )
        limit = _limit(query)
        rows = await self.admin.list_messages(message_filter, limit)
        next_cursor = rows[-1].id if len(rows) == limit else None
        return MessagePage([_message(r) for r in rows], next_cursor)

    async def show_message(self, request: web.Request) -> MessageDetail:
        found = await self.admin.get_message(request.match_info["id"])
        if found is None:
            raise Problem(404, "not_found", "no such message")
        row, content = found
        deliveries = await self.admin.list_deliveries(message_id=row.id, limit=MAX_LIMIT)
        body_text = _utf8(content.body)
        return MessageDetail(
            id=row.id,
            source=row.source,
            event_type=row.event_type,
            event_id=row.event_id,
            received_at=format_time(row.received_at),
            size=row.size,
            headers=msgspec.json.decode(content.headers, type=dict[str, str]),
            body=body_text,
            body_base64=None if body_text is not None else base64.b64encode(content.body).decode(),
            deliveries=[await self._delivery_detail(d) for d in reversed(deliveries)],
        )

    async def replay_message(self, request: web.Request) -> ReplayResult:
        found = await self.admin.get_message(request.match_info["id"])
        if found is None:
            raise Problem(404, "not_found", "no such message")
        row, _ = found
        name = _get(request.query, "destination")
        if name is not None:
            self._configured(name)
            targets = [name]
        else:
            targets = [
                d.name
                for d in self.config.destinations.values()
                if d.matches(row.source, row.event_type)
            ]
        created = await self.admin.replay(row.id, targets)
        if targets and not created:
            raise Problem(404, "not_found", "no such message (retention may have pruned it)")
        self.dispatcher.wake(frozenset(targets))
        return ReplayResult([_delivery(d) for d in created])

    # -- deliveries --------------------------------------------------------------

    async def list_deliveries(self, request: web.Request) -> DeliveryPage:
        query = request.query
        limit = _limit(query)
        rows = await self.admin.list_deliveries(
            destination=_get(query, "destination"),
            state=_state(_get(query, "state")),
            before_id=_int(_get(query, "cursor"), "cursor"),
            limit=limit,
        )
        next_cursor = str(rows[-1].id) if len(rows) == limit else None
        return DeliveryPage([_delivery(r) for r in rows], next_cursor)

    async def show_delivery(self, request: web.Request) -> DeliveryDetail:
        row = await self.admin.get_delivery(self._delivery_id(request))
        if row is None:
            raise Problem(404, "not_found", "no such delivery")
        return await self._delivery_detail(row)

    async def retry_delivery(self, request: web.Request) -> Delivery:
        try:
            row = await self.admin.retry_delivery(self._delivery_id(request))
        except ConflictError as exc:
            raise Problem(409, "conflict", str(exc)) from None
        if row is None:
            raise Problem(404, "not_found", "no such delivery")
        self.dispatcher.wake(frozenset({row.destination}))
        return _delivery(row)

    def _delivery_id(self, request: web.Request) -> int:
        text = request.match_info["id"]
        if not text.isascii() or not text.isdigit() or len(text) > 18:
            raise Problem(404, "not_found", "no such delivery")
        return int(text)

    async def _delivery_detail(self, row: DeliveryRow) -> DeliveryDetail:
        attempts = await self.admin.attempts(row.id)
        return DeliveryDetail(
            **msgspec.structs.asdict(_delivery(row)), attempt_log=[_attempt(a) for a in attempts]
        )

    # -- destinations ------------------------------------------------------------

    async def list_destinations(self, request: web.Request) -> DestinationList:
        counts = await self.admin.destination_counts()
        names = sorted(set(self.config.destinations) | set(counts))
        return DestinationList([self._destination(n, counts) for n in names])

    async def retry_destination(self, request: web.Request) -> RetryResult:
        name = request.match_info["name"]
        since = _time(request.query, "since")
        if (
            name not in self.config.destinations
            and name not in await self.admin.destination_counts()
        ):
            raise Problem(404, "not_found", f"no destination named {name!r}")
        retried = await self.admin.retry_dead(name, since)
        self.dispatcher.wake(frozenset({name}))
        return RetryResult(retried)

    async def pause_destination(self, request: web.Request) -> Destination:
        return await self._set_paused(request, True)

    async def resume_destination(self, request: web.Request) -> Destination:
        return await self._set_paused(request, False)

    async def _set_paused(self, request: web.Request, paused: bool) -> Destination:
        name = self._configured(request.match_info["name"])
        await self.dispatcher.set_paused(name, paused)
        return self._destination(name, await self.admin.destination_counts())

    def _configured(self, name: str) -> str:
        if name not in self.config.destinations:
            raise Problem(404, "not_found", f"no destination named {name!r} is configured")
        return name

    def _destination(self, name: str, counts: dict[str, dict[str, int]]) -> Destination:
        config = self.config.destinations.get(name)
        worker = self.dispatcher.workers.get(name)
        queue = counts.get(name, {})
        state = worker.state_with(queue.get("pending", 0)) if worker is not None else "ok"
        return Destination(
            name=name,
            url=masked_url(config.url) if config is not None else None,
            state=state,
            paused=state == "paused",
            configured=config is not None,
            pending=queue.get("pending", 0),
            dead=queue.get("dead", 0),
        )

    async def stats(self, request: web.Request) -> Stats:
        messages, by_state = await self.admin.totals()
        counts = await self.admin.destination_counts()
        queue = await self.admin.store.queue_stats()
        oldest = queue.oldest_pending_at
        return Stats(
            messages=messages,
            deliveries=DeliveryCounts(**by_state),
            oldest_pending_age_s=0.0 if oldest is None else round(time.time() - oldest, 3),
            destinations={
                name: DestinationStats(c.get("pending", 0), c.get("dead", 0), c.get("delivered", 0))
                for name in sorted(set(self.config.destinations) | set(counts))
                for c in (counts.get(name, {}),)
            },
        )


# -- conversions -----------------------------------------------------------------


def _message(row: MessageRow) -> Message:
    return Message(
        id=row.id,
        source=row.source,
        event_type=row.event_type,
        event_id=row.event_id,
        received_at=format_time(row.received_at),
        size=row.size,
        deliveries=DeliveryCounts(row.pending, row.delivered, row.dead),
    )


def _delivery(row: DeliveryRow) -> Delivery:
    return Delivery(
        id=row.id,
        message_id=row.message_id,
        destination=row.destination,
        state=row.state,
        attempts=row.attempts,
        next_attempt_at=format_time(row.next_attempt_at),
        last_status=row.last_status,
        last_error=row.last_error,
        dead_reason=row.dead_reason,
        updated_at=format_time(row.updated_at),
    )


def _attempt(row: AttemptRow) -> Attempt:
    return Attempt(
        started_at=format_time(row.started_at),
        duration_ms=round(row.duration_ms, 3),
        status=row.status,
        error=row.error,
        response_snippet=row.response_snippet.decode("utf-8", errors="replace"),
    )


def _utf8(body: bytes) -> str | None:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _get(query: Any, name: str) -> str | None:
    """A query parameter; an empty value counts as absent."""
    value: str | None = query.get(name)
    return value or None


def _state(value: str | None) -> DeliveryState | None:
    if value is None:
        return None
    for state in _STATES:
        if value == state:
            return state
    raise Problem(400, "bad_request", f"state: expected one of {', '.join(_STATES)}")


def _limit(query: Any) -> int:
    value = _int(_get(query, "limit"), "limit")
    if value is None:
        return DEFAULT_LIMIT
    if not 1 <= value <= MAX_LIMIT:
        raise Problem(400, "bad_request", f"limit: expected 1 to {MAX_LIMIT}")
    return value


def _int(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise Problem(400, "bad_request", f"{name}: expected a whole number")
    return int(value)


def _time(query: Any, name: str) -> float | None:
    """A time parameter: unix seconds or ISO 8601 (UTC when no offset is given)."""
    value = _get(query, name)
    if value is None:
        return None
    try:
        return float(value) if value.replace(".", "", 1).isdigit() else _iso(value)
    except ValueError:
        raise Problem(400, "bad_request", f"{name}: expected ISO 8601 or unix seconds") from None


def _iso(value: str) -> float:
    parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def _digest(token: str) -> bytes:
    # Comparing fixed-length digests keeps the token's length out of the timing.
    return hashlib.sha256(token.encode("utf-8", errors="surrogateescape")).digest()


def _answer(status: int, payload: msgspec.Struct) -> web.Response:
    return web.Response(
        status=status, body=msgspec.json.encode(payload), content_type="application/json"
    )


# -- the OpenAPI document ----------------------------------------------------------


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of this API, built from the answer types."""
    answers = [
        MessagePage,
        MessageDetail,
        ReplayResult,
        DeliveryPage,
        DeliveryDetail,
        Delivery,
        DestinationList,
        Destination,
        RetryResult,
        Stats,
        ApiError,
    ]
    _, components = msgspec.json.schema_components(
        answers, ref_template="#/components/schemas/{name}"
    )
    return {
        "openapi": "3.1.0",
        "info": {"title": "hookgate admin API", "version": __version__},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": _paths(),
    }


def _paths() -> dict[str, Any]:
    text = {"type": "string"}
    time_param = {"type": "string", "description": "ISO 8601 or unix seconds"}
    state = {"type": "string", "enum": list(_STATES)}
    limit = {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}
    message_id = _param("id", "path", {"type": "string", "pattern": "^msg_[0-9a-f]{16}$"})
    message_cursor = _param("cursor", "query", {"type": "string", "pattern": "^msg_[0-9a-f]{16}$"})
    delivery_cursor = _param("cursor", "query", {"type": "string", "pattern": "^[0-9]{1,18}$"})
    delivery_id = _param("id", "path", {"type": "integer", "minimum": 0})
    name = _param("name", "path", text)
    since = _param("since", "query", time_param)
    return {
        PREFIX + "/messages": {
            "get": _op(
                "List messages, newest first",
                "MessagePage",
                [
                    _param("source", "query", text),
                    _param("event_type", "query", text),
                    _param("state", "query", state),
                    since,
                    _param("until", "query", time_param),
                    _param("limit", "query", limit),
                    message_cursor,
                ],
                errors=(400,),
            )
        },
        PREFIX + "/messages/{id}": {
            "get": _op(
                "One message with its deliveries and attempts", "MessageDetail", [message_id]
            )
        },
        PREFIX + "/messages/{id}/replay": {
            "post": _op(
                "New deliveries of a message",
                "ReplayResult",
                [message_id, _param("destination", "query", text)],
            )
        },
        PREFIX + "/deliveries": {
            "get": _op(
                "List deliveries, newest first",
                "DeliveryPage",
                [
                    _param("destination", "query", text),
                    _param("state", "query", state),
                    _param("limit", "query", limit),
                    delivery_cursor,
                ],
                errors=(400,),
            )
        },
        PREFIX + "/deliveries/{id}": {
            "get": _op("One delivery with its attempts", "DeliveryDetail", [delivery_id])
        },
        PREFIX + "/deliveries/{id}/retry": {
            "post": _op(
                "Make a dead or pending delivery due now",
                "Delivery",
                [delivery_id],
                errors=(404, 409),
            )
        },
        PREFIX + "/destinations": {"get": _op("List destinations", "DestinationList", [])},
        PREFIX + "/destinations/{name}/retry": {
            "post": _op(
                "Retry every dead delivery of a destination",
                "RetryResult",
                [name, since],
                errors=(400, 404),
            )
        },
        PREFIX + "/destinations/{name}/pause": {
            "post": _op("Pause a destination", "Destination", [name])
        },
        PREFIX + "/destinations/{name}/resume": {
            "post": _op("Resume a destination", "Destination", [name])
        },
        PREFIX + "/stats": {"get": _op("Counts", "Stats", [], errors=())},
        PREFIX + "/openapi.json": {
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
        },
    }


def _param(name: str, where: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "schema": schema}


def _op(
    summary: str, answer: str, params: list[dict[str, Any]], errors: tuple[int, ...] = (404,)
) -> dict[str, Any]:
    def ref(name: str) -> dict[str, Any]:
        return {
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}
        }

    responses: dict[str, Any] = {"200": {"description": "OK", **ref(answer)}}
    for status in (401, *errors, 503):
        responses[str(status)] = {"description": "Error", **ref("ApiError")}
    return {"summary": summary, "parameters": params, "responses": responses}


if __name__ == "__main__":
    # Regenerate the document kept in the repository: python -m hookgate.admin.api
    OPENAPI_FILE.write_bytes(msgspec.json.format(msgspec.json.encode(openapi_document())) + b"\n")
