"""The overview's figures, gathered once per page or poll from the API and the metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass

import msgspec

from hookgate.admin import answers
from hookgate.admin.api import AdminApi
from hookgate.admin.dashboard import history
from hookgate.admin.dashboard.history import DAY, HOUR, History
from hookgate.store import MessageFilter

LATEST = 10
# Shown for the webhooks refused before any source matched (an unknown path).
NO_SOURCE = "(no source)"


class Charts(msgspec.Struct, frozen=True):
    """Per sampling interval over the last hour, the last point being now."""

    at: list[float]
    received: list[float]
    failures: list[float]
    p50_ms: list[float]


class Live(msgspec.Struct, frozen=True):
    """What the overview's script fetches: the cells by key, the latest messages, charts."""

    values: dict[str, str]
    latest: list[answers.Message]
    charts: Charts


@dataclass(frozen=True)
class Overview:
    sources: list[str]
    destinations: list[answers.Destination]
    live: Live


async def gather(api: AdminApi, past: History) -> Overview:
    now = time.time()
    current = history.read_counters(now)
    hour = current.delta(past.baseline(now, HOUR))
    day = current.delta(past.baseline(now, DAY))
    destinations = (await api.destinations()).items
    queue = await api.store.queue_stats()
    sources = sorted(set(api.config.sources) | {k[1] for k in day if k[0] in ("in", "rejected")})
    values: dict[str, str] = {}
    for source in sources:
        values |= _source_cells(source, hour, day)
    for destination in destinations:
        oldest = queue.destinations.get(destination.name)
        oldest_at = None if oldest is None else oldest.oldest_pending_at
        values |= _destination_cells(destination, oldest_at, now, hour)
    latest = (await api.messages(MessageFilter(), LATEST)).items
    return Overview(sources, destinations, Live(values, latest, _charts(past, current)))


def source_label(source: str) -> str:
    return source or NO_SOURCE


def _source_cells(
    source: str, hour: dict[history.Key, float], day: dict[history.Key, float]
) -> dict[str, str]:
    return {
        f"src:{source}:in_hour": _count(history.total(hour, "in", source)),
        f"src:{source}:in_day": _count(history.total(day, "in", source)),
        f"src:{source}:rejected_hour": _rejected(hour, source),
        f"src:{source}:rejected_day": _rejected(day, source),
    }


def _rejected(delta: dict[history.Key, float], source: str) -> str:
    reasons = {
        key[2]: value for key, value in delta.items() if key[:2] == ("rejected", source) and value
    }
    if not reasons:
        return "0"
    detail = ", ".join(f"{reason} {_count(n)}" for reason, n in sorted(reasons.items()))
    return f"{_count(sum(reasons.values()))} ({detail})"


def _destination_cells(
    destination: answers.Destination,
    oldest_at: float | None,
    now: float,
    hour: dict[history.Key, float],
) -> dict[str, str]:
    name = destination.name
    attempts = history.total(hour, "attempts", name)
    failures = history.total(hour, "failures", name)
    return {
        f"dst:{name}:state": destination.state,
        f"dst:{name}:pending": str(destination.pending),
        f"dst:{name}:dead": str(destination.dead),
        f"dst:{name}:oldest": "-" if oldest_at is None else age(now - oldest_at),
        f"dst:{name}:success": (
            "-" if not attempts else f"{100 * (attempts - failures) / attempts:.1f}%"
        ),
        f"dst:{name}:p50": _ms(history.quantile(hour, 0.5, name)),
        f"dst:{name}:p99": _ms(history.quantile(hour, 0.99, name)),
    }


def _charts(past: History, current: history.Sample) -> Charts:
    charts = Charts([], [], [], [])
    for before, after in past.series(current):
        delta = after.delta(before)
        charts.at.append(round(after.at, 3))
        charts.received.append(history.total(delta, "in"))
        charts.failures.append(history.total(delta, "failures"))
        p50 = history.quantile(delta, 0.5)
        charts.p50_ms.append(0.0 if p50 is None else round(p50 * 1000, 1))
    return charts


def age(seconds: float) -> str:
    """``42s``, ``7m 5s``, ``3h 2m``, ``2d 4h``."""
    whole = max(0, int(seconds))
    for unit, size, smaller, smaller_size in (
        ("d", 86400, "h", 3600),
        ("h", 3600, "m", 60),
        ("m", 60, "s", 1),
    ):
        if whole >= size:
            return f"{whole // size}{unit} {whole % size // smaller_size}{smaller}"
    return f"{whole}s"


def _count(value: float) -> str:
    return str(int(value))


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"
