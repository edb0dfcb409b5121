"""The admin API (``/api/v1``): inspect messages, retry, replay, pause and resume.

``ROUTES`` at the end declares every route once; ``AdminApi.routes`` serves them
and ``openapi_document`` describes them. ``src/hookgate/admin/openapi.json`` is
that document, kept in the repository (a test checks it is current; regenerate it
with ``python -m hookgate.admin.api``).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler as RequestHandler

from hookgate import __version__, filters
from hookgate.admin import answers, convert, params, routes
from hookgate.admin.routes import DOCUMENT_PATH, PREFIX, Problem, Route
from hookgate.config import Config, DestinationConfig, masked_url
from hookgate.errors import ConflictError, StoreError
from hookgate.outbound.dispatcher import Dispatcher
from hookgate.store import DeliveryRow, MessageContent, MessageFilter, Store

log = structlog.get_logger("hookgate.api")

# Who changed something through the API: whoever holds the bearer token.
API_ACTOR = "api"

OPENAPI_FILE = Path(__file__).with_name("openapi.json")


class AdminApi:
    """The ``/api/v1`` handlers over the store and the dispatcher."""

    def __init__(self, config: Config, store: Store, dispatcher: Dispatcher) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.apply(config)

    def apply(self, config: Config) -> None:
        """Take a reloaded config: destinations (replay, listings) and the token."""
        self.config = config
        token = config.admin.token
        self._token_digest = None if token is None else _digest(token)

    def routes(self) -> list[web.RouteDef]:
        """Every route of ``ROUTES``, and the document."""
        served = [web.route(r.method, PREFIX + r.path, self._endpoint(r.handler)) for r in ROUTES]
        served.append(web.get(PREFIX + DOCUMENT_PATH, self.openapi))
        return served

    def _endpoint(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def endpoint(request: web.Request) -> web.Response:
            try:
                self._authorize(request)
                return _answer(200, await handler(self, request))
            except Problem as exc:
                return _answer(exc.status, answers.ApiError(exc.code, exc.detail))
            except StoreError as exc:
                log.error("api.store_failed", path=request.path, error=str(exc))
                error = answers.ApiError("unavailable", "the store cannot answer now")
                return _answer(503, error)

        return endpoint

    @web.middleware
    async def errors(self, request: web.Request, handler: RequestHandler) -> web.StreamResponse:
        """Errors the routes do not answer themselves: a bug (500 ``internal_error``, one
        log line, no traceback), and under ``/api/v1`` the router's 404 and 405 as the
        API's JSON errors, for a caller with the token (without it: 401)."""
        try:
            return await handler(request)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as exc:
            if request.path != PREFIX and not request.path.startswith(PREFIX + "/"):
                raise
            return self._unrouted(request, exc)
        except web.HTTPException:
            raise
        except Exception as exc:
            log.error("admin.failed", path=request.path, error=repr(exc))
            error = answers.ApiError("internal_error", "the request could not be handled")
            return _answer(500, error)

    def _unrouted(
        self, request: web.Request, exc: web.HTTPNotFound | web.HTTPMethodNotAllowed
    ) -> web.Response:
        try:
            self._authorize(request)
        except Problem as problem:
            return _answer(problem.status, answers.ApiError(problem.code, problem.detail))
        if isinstance(exc, web.HTTPNotFound):
            return _answer(404, answers.ApiError("not_found", "no such route"))
        allowed = ", ".join(sorted(exc.allowed_methods))
        detail = f"{request.method} is not one of {allowed}"
        answer = _answer(405, answers.ApiError("method_not_allowed", detail))
        answer.headers["Allow"] = allowed
        return answer

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

    async def list_messages(self, request: web.Request) -> answers.MessagePage:
        query = request.query
        return await self.messages(params.message_filter(query), params.limit(query))

    async def messages(self, message_filter: MessageFilter, limit: int) -> answers.MessagePage:
        """A page of messages, newest first (the API's and the dashboard's listing)."""
        rows = await self.store.list_messages(message_filter, limit)
        next_cursor = rows[-1].id if len(rows) == limit else None
        return answers.MessagePage([convert.message(r) for r in rows], next_cursor)

    async def show_message(self, request: web.Request) -> answers.MessageDetail:
        return await self.message_detail(request.match_info["id"])

    async def message_detail(self, message_id: str) -> answers.MessageDetail:
        """One message with its deliveries and their attempts; Problem 404 when none."""
        found = await self.store.get_message(message_id)
        if found is None:
            raise Problem(404, "not_found", "no such message")
        row, content = found
        deliveries = await self.store.list_deliveries(message_id=row.id, limit=params.MAX_LIMIT)
        details = [await self._delivery_detail(d) for d in reversed(deliveries)]
        return convert.message_detail(row, content, details)

    async def replay_message(self, request: web.Request) -> answers.ReplayResult:
        name = params.DESTINATION.get(request.query)
        return await self.replay(request.match_info["id"], name, actor=API_ACTOR)

    async def replay(
        self, message_id: str, name: str | None, *, actor: str
    ) -> answers.ReplayResult:
        """New deliveries of a message to destination ``name``, or to every one it matches."""
        found = await self.store.get_message(message_id)
        if found is None:
            raise Problem(404, "not_found", "no such message")
        row, content = found
        if name is not None:
            targets = [self._configured(name)]
        else:
            source = self.config.sources.get(row.source)
            stored = _stored_request(content, source.path if source else "")
            targets = [
                d.name
                for d in self.config.destinations.values()
                if d.matches(row.source, row.event_type) and _filter_passes(d, stored)
            ]
        created = await self.store.replay(row.id, targets)
        if targets and not created:
            raise Problem(404, "not_found", "no such message (retention may have pruned it)")
        self.dispatcher.wake(frozenset(targets))
        _log_action("replay", actor, message=row.id, destinations=targets, created=len(created))
        return answers.ReplayResult([convert.delivery(d) for d in created])

    # -- deliveries --------------------------------------------------------------

    async def list_deliveries(self, request: web.Request) -> answers.DeliveryPage:
        query = request.query
        limit = params.limit(query)
        rows = await self.store.list_deliveries(
            destination=params.DESTINATION.get(query),
            state=params.state(query),
            before_id=params.whole_number(query, params.DELIVERY_CURSOR),
            limit=limit,
        )
        next_cursor = str(rows[-1].id) if len(rows) == limit else None
        return answers.DeliveryPage([convert.delivery(r) for r in rows], next_cursor)

    async def show_delivery(self, request: web.Request) -> answers.DeliveryDetail:
        row = await self.store.get_delivery(_delivery_id(request))
        if row is None:
            raise Problem(404, "not_found", "no such delivery")
        return await self._delivery_detail(row)

    async def retry_delivery(self, request: web.Request) -> answers.Delivery:
        return await self.retry(_delivery_id(request), actor=API_ACTOR)

    async def retry(self, delivery_id: int, *, actor: str) -> answers.Delivery:
        """Make a dead or pending delivery due now (Problem 404, or 409 when delivered)."""
        try:
            row = await self.store.retry_delivery(delivery_id)
        except ConflictError as exc:
            raise Problem(409, "conflict", str(exc)) from None
        if row is None:
            raise Problem(404, "not_found", "no such delivery")
        self.dispatcher.wake(frozenset({row.destination}))
        _log_action("retry", actor, delivery=delivery_id, destination=row.destination)
        return convert.delivery(row)

    async def _delivery_detail(self, row: DeliveryRow) -> answers.DeliveryDetail:
        return convert.delivery_detail(row, await self.store.attempts(row.id))

    # -- destinations ------------------------------------------------------------

    async def list_destinations(self, request: web.Request) -> answers.DestinationList:
        return await self.destinations()

    async def destinations(self) -> answers.DestinationList:
        """Every destination configured or with deliveries in the store."""
        counts = await self.store.destination_counts()
        names = sorted(set(self.config.destinations) | set(counts))
        return answers.DestinationList([self._destination(n, counts) for n in names])

    async def retry_destination(self, request: web.Request) -> answers.RetryResult:
        since = params.moment(request.query, params.SINCE)
        return await self.retry_dead(request.match_info["name"], since, actor=API_ACTOR)

    async def retry_dead(
        self, name: str, since: float | None, *, actor: str
    ) -> answers.RetryResult:
        """Make due now the dead deliveries of ``name`` (that died since ``since``)."""
        if (
            name not in self.config.destinations
            and name not in await self.store.destination_counts()
        ):
            raise Problem(404, "not_found", f"no destination named {name!r}")
        retried = await self.store.retry_dead(name, since)
        self.dispatcher.wake(frozenset({name}))
        _log_action("retry_dead", actor, destination=name, since=since, retried=retried)
        return answers.RetryResult(retried)

    async def pause_destination(self, request: web.Request) -> answers.Destination:
        return await self.set_paused(request.match_info["name"], True, actor=API_ACTOR)

    async def resume_destination(self, request: web.Request) -> answers.Destination:
        return await self.set_paused(request.match_info["name"], False, actor=API_ACTOR)

    async def set_paused(self, name: str, paused: bool, *, actor: str) -> answers.Destination:
        """Pause or resume a configured destination (Problem 404 for any other name)."""
        name = self._configured(name)
        await self.dispatcher.set_paused(name, paused)
        _log_action("pause" if paused else "resume", actor, destination=name)
        return self._destination(name, await self.store.destination_counts())

    def _configured(self, name: str) -> str:
        if name not in self.config.destinations:
            raise Problem(404, "not_found", f"no destination named {name!r} is configured")
        return name

    def _destination(self, name: str, counts: dict[str, dict[str, int]]) -> answers.Destination:
        config = self.config.destinations.get(name)
        worker = self.dispatcher.workers.get(name)
        queue = counts.get(name, {})
        state = worker.state_with(queue.get("pending", 0)) if worker is not None else "ok"
        return answers.Destination(
            name=name,
            url=masked_url(config.url) if config is not None else None,
            state=state,
            paused=state == "paused",
            configured=config is not None,
            pending=queue.get("pending", 0),
            dead=queue.get("dead", 0),
        )

    async def stats(self, request: web.Request) -> answers.Stats:
        messages, by_state = await self.store.totals()
        counts = await self.store.destination_counts()
        queue = await self.store.queue_stats()
        oldest = queue.oldest_pending_at
        names = sorted(set(self.config.destinations) | set(counts))
        return answers.Stats(
            messages=messages,
            deliveries=answers.DeliveryCounts(**by_state),
            oldest_pending_age_s=0.0 if oldest is None else round(time.time() - oldest, 3),
            destinations={name: _destination_stats(counts.get(name, {})) for name in names},
        )


def _log_action(action: str, actor: str, **fields: Any) -> None:
    """One log event per change an operator asked for, with who asked."""
    log.info("admin.action", action=action, actor=actor, **fields)


def _destination_stats(counts: dict[str, int]) -> answers.DestinationStats:
    return answers.DestinationStats(
        counts.get("pending", 0), counts.get("dead", 0), counts.get("delivered", 0)
    )


def _delivery_id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not params.is_whole_number(text):
        raise Problem(404, "not_found", "no such delivery")
    return int(text)


def _digest(token: str) -> bytes:
    # Comparing fixed-length digests keeps the token's length out of the timing.
    return hashlib.sha256(token.encode("utf-8", errors="surrogateescape")).digest()


def _answer(status: int, payload: msgspec.Struct) -> web.Response:
    return web.Response(
        status=status, body=msgspec.json.encode(payload), content_type="application/json"
    )


# -- the routes ----------------------------------------------------------------------

Handler = Callable[[AdminApi, web.Request], Awaitable[msgspec.Struct]]

ROUTES: tuple[Route[Handler], ...] = (
    Route(
        "GET",
        "/messages",
        AdminApi.list_messages,
        "List messages, newest first",
        answers.MessagePage,
        (
            params.SOURCE,
            params.EVENT_TYPE,
            params.EVENT_ID,
            params.DESTINATION,
            params.STATE,
            params.SINCE,
            params.UNTIL,
            params.LIMIT,
            params.MESSAGE_CURSOR,
        ),
        errors=(400,),
    ),
    Route(
        "GET",
        "/messages/{id}",
        AdminApi.show_message,
        "One message with its deliveries and attempts",
        answers.MessageDetail,
        (params.MESSAGE_ID,),
        errors=(404,),
    ),
    Route(
        "POST",
        "/messages/{id}/replay",
        AdminApi.replay_message,
        "New deliveries of a message",
        answers.ReplayResult,
        (params.MESSAGE_ID, params.DESTINATION),
        errors=(404,),
    ),
    Route(
        "GET",
        "/deliveries",
        AdminApi.list_deliveries,
        "List deliveries, newest first",
        answers.DeliveryPage,
        (params.DESTINATION, params.STATE, params.LIMIT, params.DELIVERY_CURSOR),
        errors=(400,),
    ),
    Route(
        "GET",
        "/deliveries/{id}",
        AdminApi.show_delivery,
        "One delivery with its attempts",
        answers.DeliveryDetail,
        (params.DELIVERY_ID,),
        errors=(404,),
    ),
    Route(
        "POST",
        "/deliveries/{id}/retry",
        AdminApi.retry_delivery,
        "Make a dead or pending delivery due now",
        answers.Delivery,
        (params.DELIVERY_ID,),
        errors=(404, 409),
    ),
    Route(
        "GET",
        "/destinations",
        AdminApi.list_destinations,
        "List destinations",
        answers.DestinationList,
        (),
        errors=(),
    ),
    Route(
        "POST",
        "/destinations/{name}/retry",
        AdminApi.retry_destination,
        "Retry every dead delivery of a destination",
        answers.RetryResult,
        (params.NAME, params.SINCE),
        errors=(400, 404),
    ),
    Route(
        "POST",
        "/destinations/{name}/pause",
        AdminApi.pause_destination,
        "Pause a destination",
        answers.Destination,
        (params.NAME,),
        errors=(404,),
    ),
    Route(
        "POST",
        "/destinations/{name}/resume",
        AdminApi.resume_destination,
        "Resume a destination",
        answers.Destination,
        (params.NAME,),
        errors=(404,),
    ),
    Route("GET", "/stats", AdminApi.stats, "Counts", answers.Stats, (), errors=()),
)


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of ``ROUTES``, as served and kept in the repository."""
    return routes.openapi_document(ROUTES, __version__)


if __name__ == "__main__":
    # Regenerate the document kept in the repository: python -m hookgate.admin.api
    OPENAPI_FILE.write_bytes(msgspec.json.format(msgspec.json.encode(openapi_document())) + b"\n")


def _stored_request(content: MessageContent, path: str) -> dict[str, Any]:
    """A stored message as content filters read a request. The query string is not
    stored: a replay's filters see none."""
    document: dict[str, Any] = {
        "headers": msgspec.json.decode(content.headers),
        "query": {},
        "path": path,
    }
    try:
        document["body"] = msgspec.json.decode(content.body)
    except msgspec.DecodeError:
        pass  # not JSON: no body to match, as at ingest
    return document


def _filter_passes(destination: DestinationConfig, request: dict[str, Any]) -> bool:
    """A replay goes where the message would go now: content filters included."""
    if destination.filter is None:
        return True
    return filters.compile_filter(destination.filter).matches(request)
