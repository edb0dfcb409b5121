"""The HTTP client side of a delivery: one POST, its outcome and the start of its answer.

``HttpClient`` sends in the process that holds it: the daemon's own (with
``server.delivery_processes = 0``) or a delivery process's (processes.py). Both
describe a destination with a ``Target``, so the request that crosses between
processes is a body, headers and a target name.

All requests go through pooled ``aiohttp.ClientSession``s (one per ``deny_networks``
list, most destinations share the default one), so connections are kept alive
across deliveries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import aiohttp
import msgspec

from hookgate import addresses
from hookgate.config import DestinationConfig
from hookgate.outbound import egress, retry

SNIPPET_BYTES = 1024
# Read (and drop) at most this much of a response so the connection can be reused.
_DRAIN_BYTES = 64 * 1024


class Target(msgspec.Struct, frozen=True, array_like=True):
    """Where and how a destination's requests are sent."""

    name: str
    url: str
    timeout: float
    deny_networks: tuple[str, ...]

    @classmethod
    def of(cls, destination: DestinationConfig) -> Target:
        policy = destination.policy
        return cls(
            destination.name, destination.url, float(policy.timeout), tuple(policy.deny_networks)
        )


class Answer(msgspec.Struct, frozen=True, array_like=True):
    """What came of one request: the outcome and the first bytes of the response."""

    status: int | None
    error: str | None
    retry_after: str | None
    snippet: bytes

    @property
    def outcome(self) -> retry.Outcome:
        return retry.Outcome(self.status, self.error, retry_after=self.retry_after)


Headers = Mapping[str, str] | Sequence[tuple[str, str]]


class Sender(Protocol):
    """What a destination worker sends its requests through."""

    def set_targets(self, targets: Sequence[Target]) -> None: ...

    async def send(self, target: str, body: bytes, headers: Headers) -> Answer: ...

    async def close_unused(self) -> None: ...

    async def close(self) -> None: ...


class HttpClient:
    """Sends requests to targets over pooled, keep-alive sessions."""

    def __init__(self) -> None:
        self._targets: dict[str, tuple[Target, aiohttp.ClientTimeout, aiohttp.ClientSession]] = {}
        self._sessions: dict[tuple[addresses.IPNetwork, ...], aiohttp.ClientSession] = {}

    def set_targets(self, targets: Sequence[Target]) -> None:
        """Send to these targets from now on (a reload replaces them all)."""
        self._targets = {
            t.name: (t, aiohttp.ClientTimeout(total=t.timeout), self._session_for(t))
            for t in targets
        }

    def _session_for(self, target: Target) -> aiohttp.ClientSession:
        deny = addresses.parse_networks(list(target.deny_networks))
        session = self._sessions.get(deny)
        if session is None:
            # No per-host cap: each worker's own concurrency is the limit, so one
            # destination's slow requests never queue another's behind them. Cookies
            # are never kept and the process's proxy variables never used.
            session = aiohttp.ClientSession(
                connector=egress.make_connector(deny),
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
            )
            self._sessions[deny] = session
        return session

    def session(self, target: str) -> aiohttp.ClientSession:
        """The pool that ``target``'s requests go through."""
        return self._targets[target][2]

    async def close_unused(self) -> None:
        """A reload may leave a deny list that no target uses: close its pool."""
        used = {id(session) for _, _, session in self._targets.values()}
        for deny, session in list(self._sessions.items()):
            if id(session) not in used:
                del self._sessions[deny]
                await session.close()

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    async def send(self, target: str, body: bytes, headers: Headers) -> Answer:
        """POST ``body`` to ``target``; every failure is an answer, never an exception."""
        url_target, timeout, session = self._targets[target]
        try:
            async with session.post(
                url_target.url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=timeout,
            ) as response:
                snippet = await response.content.read(SNIPPET_BYTES)
                await _drain(response)
                status = response.status
                return Answer(
                    status,
                    None if status < 300 else f"HTTP {status}",
                    response.headers.get("Retry-After"),
                    snippet,
                )
        except TimeoutError:
            return Answer(None, "timeout", None, b"")
        except aiohttp.ClientError as exc:
            return Answer(None, f"{type(exc).__name__}: {exc}"[:500], None, b"")
        except (ValueError, OSError) as exc:
            # aiohttp raises these for a request it will not send (a bad header value)
            # or a socket failing outside its own error types.
            return Answer(None, f"{type(exc).__name__}: {exc}"[:500], None, b"")


async def _drain(response: aiohttp.ClientResponse) -> None:
    """Read what is left of a small answer so its connection goes back to the pool."""
    content = response.content
    remaining = _DRAIN_BYTES
    while remaining > 0 and not content.at_eof():
        chunk = await content.read(min(remaining, 16384))
        if not chunk:
            return
        remaining -= len(chunk)
