"""The inbound listener: route, check, verify, extract, commit, answer.

The checks run in the order of docs/interfaces.md section 1, each with its own status
and JSON error. A 2xx leaves only after the outbox writer's commit returned.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import structlog

from hookgate import addresses, filters, metrics, providers, wire
from hookgate.config import Config, DestinationConfig, SourceConfig
from hookgate.errors import StartupError, StoreError, VerificationFailed
from hookgate.inbound import http1
from hookgate.inbound.routing import Router, request_document
from hookgate.store import Accepted, NewMessage

log = structlog.get_logger("hookgate.ingress")


# Credentials and hop-by-hop headers are neither stored nor forwarded.
_UNSTORED_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "x-gitlab-token",
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "upgrade",
        "expect",
    }
)
_RETRY_AFTER_SECONDS = "5"
# Idle keep-alive connections are closed after this (or request_timeout, if shorter).
KEEPALIVE_TIMEOUT = http1.KEEPALIVE_TIMEOUT
# A webhook relayed through more hookgates than this is taken to be going round a loop.
MAX_HOPS = 10


class Rejected(Exception):
    """A request that gets an error answer; ``code`` is the JSON error code."""

    def __init__(self, status: int, code: str, detail: str, **headers: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers


@dataclass(frozen=True, slots=True)
class Expression:
    """Where a value lives: ``json:<dotted.path>``, ``header:<Name>`` or ``const:<value>``."""

    kind: str
    argument: str
    path: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Expression:
        kind, _, argument = text.partition(":")
        return cls(kind, argument, tuple(argument.split(".")) if kind == "json" else ())

    def extract(self, headers: Mapping[str, str], document: Any) -> str | None:
        if self.kind == "const":
            return self.argument
        if self.kind == "header":
            return headers.get(self.argument)
        node = document
        for part in self.path:
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]  # "events.0.type": an array's item by index
            elif isinstance(node, dict) and part in node:
                node = node[part]
            else:
                return None
        if isinstance(node, str):
            return node
        if isinstance(node, bool) or not isinstance(node, int | float):
            return None
        return str(node)


@dataclass(frozen=True, slots=True)
class Extraction:
    """Candidate expressions for one value; ``required`` when the source set it explicitly."""

    candidates: tuple[Expression, ...]
    required: bool
    name: str

    @classmethod
    def build(cls, name: str, explicit: str | None, defaults: Sequence[str]) -> Extraction:
        if explicit is not None:
            return cls((Expression.parse(explicit),), True, name)
        return cls(tuple(Expression.parse(d) for d in defaults), False, name)

    @property
    def needs_json(self) -> bool:
        return any(c.kind == "json" for c in self.candidates)

    def extract(self, headers: Mapping[str, str], document: Any) -> str | None:
        for candidate in self.candidates:
            value = candidate.extract(headers, document)
            if value is not None:
                return value
        if self.required:
            raise Rejected(400, f"missing_{self.name}", f"no {self.name} found in the request")
        return None


@dataclass(frozen=True, slots=True)
class Greeters:
    """A source's handshakes (``providers.Greeting``), split by when they are asked:
    before the signature check (they carry their own proof) or after it."""

    unsigned: tuple[tuple[str, providers.Greeter], ...]
    signed: tuple[tuple[str, providers.Greeter], ...]

    @classmethod
    def build(cls, provider: providers.Provider, settings: providers.Settings) -> Greeters:
        greetings = provider.all_greetings()
        return cls(
            tuple((g.method, g.build(settings)) for g in greetings if not g.signed),
            tuple((g.method, g.build(settings)) for g in greetings if g.signed),
        )

    @property
    def methods(self) -> frozenset[str]:
        """The methods a handshake may come with, beside the source's own."""
        return frozenset(method for method, _ in (*self.unsigned, *self.signed))

    @staticmethod
    def first(
        greeters: tuple[tuple[str, providers.Greeter], ...],
        request: providers.Request,
        now: float,
    ) -> providers.Answer | None:
        """The answer of the first greeter that takes ``request``; None if none does.

        Raises what a greeter raises for a bad handshake (``HandshakeRefused``,
        ``VerificationFailed``).
        """
        for method, greet in greeters:
            if method == request.method and (answer := greet(request, now)) is not None:
                return answer
        return None


class Route:
    """Everything the ingress needs to know about one source, compiled once."""

    def __init__(self, name: str, source: SourceConfig, destinations: list[DestinationConfig]):
        self.name = name
        self.source = source
        self.methods = frozenset(source.methods)
        self.allow = addresses.parse_networks(source.allow_ips)
        self.provider = providers.get(source.verify.scheme)
        self.check = self.provider.check(source.verify)
        self.event_type = Extraction.build(
            "event_type", source.event_type, self.provider.event_type
        )
        self.event_id = Extraction.build("event_id", source.event_id, self.provider.event_id)
        self.needs_json = self.event_type.needs_json or self.event_id.needs_json
        # Handshakes are answered, never stored (see _receive); built once here, so
        # providers without one pay nothing per request.
        self.greeters = Greeters.build(self.provider, source.verify)
        self.router = Router(name, destinations)


class Outbox(Protocol):
    """Where the ingress commits a message: the store, or (in an ingest process) the
    daemon that owns the store's writer."""

    identity: str
    """The database's identity (the ``Via`` name that detects loops)."""

    def accept(self, message: NewMessage) -> asyncio.Future[Accepted]:
        """Commit ``message`` durably (the future resolves once committed), or raise
        StoreError."""
        ...


class Tallies(Protocol):
    """Where the ingress counts what it answered: metrics, and the alert rules' tallies."""

    def apply(self, config: Config) -> None:
        """Take a (re)loaded config's sources."""

    def accepted(self, message: NewMessage, accepted: Accepted) -> None: ...

    def rejected(self, source: str, reason: str) -> None: ...

    def signature_failed(self, source: str) -> None: ...


class Counts:
    """The ``Tallies`` of this process's /metrics and alert rules."""

    def __init__(self) -> None:
        self._received: dict[str, Any] = {}
        self._duplicates: dict[str, Any] = {}

    def apply(self, config: Config) -> None:
        # Here, in the daemon, and not in each ingest process: once per (re)load.
        for name, source in config.sources.items():
            # The silence of a source counts from when it is first served.
            metrics.source_tally(name)
            if source.verify.scheme == "none":
                log.warning("source.unverified", source=name)

    def accepted(self, message: NewMessage, accepted: Accepted) -> None:
        source = message.source
        if accepted.duplicate:
            counter = self._duplicates.get(source)
            if counter is None:
                counter = self._duplicates[source] = metrics.webhooks_duplicate.labels(source)
            counter.inc()
            return
        counter = self._received.get(source)
        if counter is None:
            counter = self._received[source] = metrics.webhooks_received.labels(source)
        counter.inc()
        metrics.source_tally(source).webhook_accepted(message.received_at)

    def rejected(self, source: str, reason: str) -> None:
        metrics.webhooks_rejected.labels(source, reason).inc()

    def signature_failed(self, source: str) -> None:
        metrics.source_tally(source).signature_failures += 1


class Ingress:
    """The application that receives webhooks, served by ``http1.Server``."""

    def __init__(self, config: Config, outbox: Outbox, tallies: Tallies | None = None) -> None:
        self.outbox = outbox
        self.tallies = Counts() if tallies is None else tallies
        self.own_via = wire.via_name(outbox.identity)
        self.apply(config)

    def apply(self, config: Config) -> None:
        """Take a (re)loaded config; requests already running keep the route they had."""
        self.tallies.apply(config)
        self.max_body = config.server.max_body
        self.request_timeout = config.server.request_timeout
        self.trusted_proxies = addresses.parse_networks(config.server.trusted_proxies)
        self.routes = {
            source.path: Route(
                name,
                source,
                [d for d in config.destinations.values() if name in d.sources],
            )
            for name, source in config.sources.items()
        }

    def server(self, tls: ssl.SSLContext | None = None) -> http1.Server:
        """The HTTP server for this ingress (not listening yet: ``listen``/``serve_socket``).

        It closes a connection that has not delivered a whole request head within
        ``min(KEEPALIVE_TIMEOUT, request_timeout)`` of connecting (or of its last
        answer), partial data or not: slow headers meet the same deadline as a slow
        body. Bodies are never decompressed (see ``_receive``).
        """
        return http1.Server(self, tls)

    def refused(self, peer: str | None, status: int, code: str) -> None:
        """A request the HTTP server refused before routing (malformed, over a limit)."""
        self.tallies.rejected("", code)
        log.warning("webhook.rejected", source=None, status=status, reason=code, peer=peer)

    def handle(self, request: http1.Request) -> http1.Answer:
        """The answer to ``request``: at once when its body is buffered (the common
        webhook, whose answer then only waits for the commit: ``http1.Deferred``), else
        a coroutine that waits for the body first. The checks and their order are the
        same either way."""
        route = self.routes.get(request.path)
        try:
            if route is None:
                raise Rejected(404, "not_found", "no source is configured at this path")
            self._check_request_head(route, request)
            body = self._buffered_body(request)
            if body is None:
                return self._receive_later(route, request, time.monotonic())
            return self._receive(route, request, body)
        except Rejected as exc:
            return self._rejected(route, request, exc)

    async def _receive_later(
        self, route: Route, request: http1.Request, started: float
    ) -> http1.Response:
        """``_receive`` once the body arrived (a large or slow one, ``Expect:
        100-continue``)."""
        try:
            body = await self._read_body(request, started)
            answer = self._receive(route, request, body)
        except Rejected as exc:
            return self._rejected(route, request, exc)
        if isinstance(answer, http1.Deferred):
            await asyncio.wait((answer.future,))
            return answer.answer(answer.future)
        return answer

    def _receive(
        self, route: Route, request: http1.Request, body: bytes
    ) -> http1.Response | http1.Deferred:
        """The checks after the head's, then the commit; raises ``Rejected``."""
        now = time.time()
        inbound = self._inbound(route, request, body)
        answer = self._handshake(route, route.greeters.unsigned, inbound, now)
        if answer is not None:
            return answer
        if request.method not in route.methods:
            # A request of a handshake's method that is not that handshake.
            raise Rejected(400, "invalid_handshake", "not a handshake this source answers")
        try:
            route.check(inbound, now)
        except VerificationFailed as exc:
            self.tallies.signature_failed(route.name)
            log.warning("webhook.unverified", source=route.name, reason=exc.reason)
            raise Rejected(
                401, "invalid_signature", "the signature is missing or invalid"
            ) from None
        answer = self._handshake(route, route.greeters.signed, inbound, now)
        if answer is not None:
            return answer
        message = self._message(route, request, body, now)
        return self._store(route, request, message)

    def _inbound(self, route: Route, request: http1.Request, body: bytes) -> providers.Request:
        """The request as providers see it, at the URL the provider sent it to, its
        query string as sent (signatures cover the bytes, not a re-encoding)."""
        target = request.raw_path
        if route.source.public_url is None:
            url = f"{request.scheme}://{request.host}{target}"
        else:
            _, question, query = target.partition("?")
            url = route.source.public_url + question + query
        return providers.Request(request.method, url, request.query, request.headers, body)

    def _handshake(
        self,
        route: Route,
        greeters: tuple[tuple[str, providers.Greeter], ...],
        request: providers.Request,
        now: float,
    ) -> http1.Response | None:
        """The answer to a handshake among ``greeters``; None for any other request."""
        try:
            answer = Greeters.first(greeters, request, now)
        except providers.HandshakeRefused as exc:
            raise Rejected(exc.status, exc.code, exc.detail) from None
        except VerificationFailed as exc:
            log.warning("handshake.unverified", source=route.name, reason=exc.reason)
            raise Rejected(401, "invalid_handshake", "the handshake does not check out") from None
        if answer is None:
            return None
        log.info("handshake.answered", source=route.name, method=request.method)
        return http1.Response(answer.status, answer.body, answer.content_type, answer.headers)

    def _check_request_head(self, route: Route, request: http1.Request) -> None:
        """The checks that need no body: method, loop, client address, encoding."""
        if request.method not in route.methods and request.method not in route.greeters.methods:
            allow = ", ".join(sorted({*route.methods, *route.greeters.methods}))
            raise Rejected(405, "method_not_allowed", f"use {allow}", Allow=allow)
        via = request.headers.getall("Via", None)
        if via is not None and self._is_loop(", ".join(via)):
            raise Rejected(508, "loop_detected", "this webhook already passed through this relay")
        if route.allow and not addresses.within(self.client_ip(request), route.allow):
            raise Rejected(403, "forbidden", "this client address is not allowed")
        encoding = request.headers.get("Content-Encoding")
        if encoding is not None and encoding.strip().lower() != "identity":
            # Signatures cover the bytes as sent, and a compressed body is a zip-bomb risk.
            raise Rejected(415, "unsupported_encoding", "send the body without Content-Encoding")

    def _store(self, route: Route, request: http1.Request, message: NewMessage) -> http1.Deferred:
        """Queue the message for commit; it is answered only once the commit returned."""
        try:
            committed = self.outbox.accept(message)
        except StoreError as exc:
            raise _not_stored(route, exc) from None
        return http1.Deferred(
            committed, functools.partial(self._committed, route, request, message)
        )

    def _committed(
        self,
        route: Route,
        request: http1.Request,
        message: NewMessage,
        committed: asyncio.Future[Accepted],
    ) -> http1.Response:
        """The answer once the commit is done: 2xx if it committed, else 503."""
        try:
            accepted = committed.result()
        except (StoreError, asyncio.CancelledError) as exc:
            return self._rejected(route, request, _not_stored(route, exc))
        self.tallies.accepted(message, accepted)
        if accepted.duplicate:
            log.debug(
                "webhook.duplicate",
                source=route.name,
                message_id=accepted.message_id,
                event_id=message.event_id,
            )
            return _json(200, {"id": accepted.message_id, "duplicate": True})
        log.debug(
            "webhook.accepted",
            source=route.name,
            message_id=accepted.message_id,
            event_type=message.event_type,
            deliveries=len(message.destinations),
        )
        return _json(202, {"id": accepted.message_id})

    def _buffered_body(self, request: http1.Request) -> bytes | None:
        """The body if it is all buffered (the common small webhook); None while it is
        still arriving. Raises ``Rejected`` (413) past the limit."""
        length = request.content_length
        try:
            if length is not None and length > request.limit:
                raise http1.BodyTooLarge()
            if request.body_complete:
                return request.body
        except http1.BodyTooLarge:
            raise _too_large(request) from None
        return None

    async def _read_body(self, request: http1.Request, started: float) -> bytes:
        """The body still arriving, within ``request_timeout`` of ``started``; the
        server stops buffering it past the ``max_body`` of its head."""
        try:
            remaining = self.request_timeout - (time.monotonic() - started)
            return await request.read_body(remaining)
        except http1.BodyTooLarge:
            raise _too_large(request) from None
        except TimeoutError:
            raise Rejected(408, "request_timeout", "the request did not arrive in time") from None
        except ConnectionError:
            # The client (or a proxy that gave up on it) closed mid-body: an answer it
            # will not read, and a log line.
            raise Rejected(400, "incomplete_body", "the connection closed mid-body") from None

    def _message(self, route: Route, request: http1.Request, body: bytes, now: float) -> NewMessage:
        document: Any = None
        # Parsed at most once, for the extractions and the content filters alike.
        parsed: Any = filters.MISSING
        if route.needs_json or route.router.needs_body:
            try:
                document = parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                if route.event_type.required or route.event_id.required:
                    raise Rejected(400, "invalid_json", "the body is not valid JSON") from None
        headers = request.headers
        event_type = route.event_type.extract(headers, document)
        event_id = route.event_id.extract(headers, document)
        destinations, skipped = route.router.route(
            event_type,
            lambda: request_document(
                route.router.parts, headers.items(), request.query.items(), request.path, parsed
            ),
        )
        stored = {
            name: v for k, v in headers.items() if (name := k.lower()) not in _UNSTORED_HEADERS
        }
        return NewMessage(
            source=route.name,
            received_at=now,
            event_type=event_type,
            event_id=event_id,
            dedup_window=route.source.dedup_window,
            headers=orjson.dumps(stored),
            body=body,
            destinations=destinations,
            skipped=skipped,
        )

    def _is_loop(self, via: str) -> bool:
        """Did this relay send it (a destination pointing back here), or too many relays?"""
        return self.own_via in via or via.count(wire.VIA_PREFIX) >= MAX_HOPS

    def client_ip(self, request: http1.Request) -> addresses.IPAddress | None:
        """The client's address; X-Forwarded-For counts only when the peer is a trusted proxy."""
        peer = addresses.parse_address(request.remote)
        if not self.trusted_proxies or not addresses.within(peer, self.trusted_proxies):
            return peer
        hops = [
            h.strip() for v in request.headers.getall("X-Forwarded-For", []) for h in v.split(",")
        ]
        client = peer
        for hop in reversed(hops):
            address = addresses.parse_address(hop)
            if address is None:
                return client
            client = address
            if not addresses.within(address, self.trusted_proxies):
                return address
        return client

    def _rejected(
        self, route: Route | None, request: http1.Request, exc: Rejected
    ) -> http1.Response:
        """The error answer to a rejected request, counted and logged."""
        self._log_rejected(route, request, exc)
        return _error(exc)

    def _log_rejected(self, route: Route | None, request: http1.Request, exc: Rejected) -> None:
        self.tallies.rejected(route.name if route else "", exc.code)
        log.warning(
            "webhook.rejected",
            source=route.name if route else None,
            path=request.path,
            method=request.method,
            status=exc.status,
            reason=exc.code,
            peer=request.remote,
            client=str(self.client_ip(request)),
        )


def _json(
    status: int, payload: dict[str, Any], headers: Mapping[str, str] | None = None
) -> http1.Response:
    pairs = tuple(headers.items()) if headers else ()
    return http1.Response(status, orjson.dumps(payload), "application/json", pairs)


def _error(exc: Rejected) -> http1.Response:
    return _json(exc.status, {"error": exc.code, "detail": exc.detail}, exc.headers)


def _too_large(request: http1.Request) -> Rejected:
    return Rejected(413, "payload_too_large", f"the body exceeds {request.limit} bytes")


def _not_stored(route: Route, exc: BaseException) -> Rejected:
    """A commit that failed (or never ran): 503, and one error line."""
    log.error("webhook.not_stored", source=route.name, error=str(exc))
    return Rejected(
        503,
        "unavailable",
        "cannot store the webhook now; retry later",
        **{"Retry-After": _RETRY_AFTER_SECONDS},
    )


def tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """The ingress's TLS context from ``server.tls_cert``/``tls_key`` (None: plain HTTP)."""
    if cert is None or key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise StartupError(f"server.tls_cert/tls_key: no such file: {exc.filename}") from None
    except PermissionError as exc:
        raise StartupError(f"server.tls_cert/tls_key: cannot read {exc.filename}") from None
    except ssl.SSLError as exc:
        raise StartupError(
            f"server.tls_cert/tls_key: not a matching PEM certificate and key ({exc.reason})"
        ) from None
    except OSError as exc:  # after SSLError, which is an OSError too
        raise StartupError(
            f"server.tls_cert/tls_key: cannot read {exc.filename}: {exc.strerror}"
        ) from None
    return context
