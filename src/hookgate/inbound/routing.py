"""Which of a source's destinations get a webhook, and why the others do not.

A destination is skipped when its ``events`` do not hold the event type
(``"event_type"``, decided once per event type and cached) or when its content
``filter`` does not match the request (``"filter"``, decided per webhook). The
skipped ones are stored with the message, so the API can say why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from hookgate import filters
from hookgate.config import DestinationConfig
from hookgate.store import SkippedDestination

_CACHED_EVENT_TYPES = 10_000
_CACHED_EVENT_TYPE_CHARS = 200

Routing = tuple[tuple[str, ...], tuple[SkippedDestination, ...]]
"""The destinations a message goes to, and those skipped with their reason."""


class Router:
    """One source's routing, with its destinations' filters compiled once (per load)."""

    def __init__(self, source: str, destinations: list[DestinationConfig]) -> None:
        self.source = source
        self.destinations = destinations
        self.filters = {
            d.name: filters.compile_filter(d.filter) for d in destinations if d.filter is not None
        }
        self.parts: frozenset[str] = frozenset().union(*(f.parts for f in self.filters.values()))
        self.needs_body = "body" in self.parts
        self._by_event_type: dict[str | None, Routing] = {}

    def route(self, event_type: str | None, request: Callable[[], Mapping[str, Any]]) -> Routing:
        """Where a message of ``event_type`` goes; ``request()`` builds the filters' document
        (called at most once, and only when a filter has to decide)."""
        chosen, skipped = self._for_event_type(event_type)
        if not self.filters or self.filters.keys().isdisjoint(chosen):
            return chosen, skipped
        document = request()
        kept: list[str] = []
        refused = list(skipped)
        for name in chosen:
            content_filter = self.filters.get(name)
            if content_filter is None or content_filter.matches(document):
                kept.append(name)
            else:
                refused.append(SkippedDestination(name, "filter"))
        return tuple(kept), tuple(refused)

    def _for_event_type(self, event_type: str | None) -> Routing:
        cached = self._by_event_type.get(event_type)
        if cached is None:
            chosen = tuple(d.name for d in self.destinations if d.matches(self.source, event_type))
            skipped = tuple(
                SkippedDestination(d.name, "event_type")
                for d in self.destinations
                if d.name not in chosen
            )
            cached = (chosen, skipped)
            # Event types are few and short; a client choosing them (an unverified
            # source) must not grow this: at most 10,000 entries of 200 characters.
            short = event_type is None or len(event_type) <= _CACHED_EVENT_TYPE_CHARS
            if short and len(self._by_event_type) < _CACHED_EVENT_TYPES:
                self._by_event_type[event_type] = cached
        return cached


def request_document(
    parts: frozenset[str],
    headers: Iterable[tuple[str, str]],
    query: Iterable[tuple[str, str]],
    path: str,
    body: Any,
) -> dict[str, Any]:
    """The request as filters read it, with only the ``parts`` they use.

    Header names in lower case (the last of a repeated header wins, as stored); a
    repeated query parameter is a list; ``body`` is the parsed JSON, or
    ``filters.MISSING`` when the body is not JSON (then left out).
    """
    document: dict[str, Any] = {}
    if "headers" in parts:
        document["headers"] = {name.lower(): value for name, value in headers}
    if "query" in parts:
        params: dict[str, Any] = {}
        for name, value in query:
            held = params.get(name)
            if held is None:
                params[name] = value
            elif isinstance(held, list):
                held.append(value)
            else:
                params[name] = [held, value]
        document["query"] = params
    if "path" in parts:
        document["path"] = path
    if "body" in parts and body is not filters.MISSING:
        document["body"] = body
    return document
