"""The HTTP client side of a delivery: one POST, its outcome and the start of its answer.

``HttpClient`` sends in the process that holds it: the daemon's own (with
``server.delivery_processes = 0``) or a delivery process's (processes.py). Both
describe a destination with a ``Target``, so the request that crosses between
processes is a body, headers and a target name.

Requests go through keep-alive connection pools (http1.py), one per
``deny_networks`` list (most destinations share the default one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import msgspec
from aiohttp.abc import AbstractResolver

from hookgate import addresses
from hookgate.config import DestinationConfig
from hookgate.outbound import retry
from hookgate.outbound.http1 import Endpoint, Pool, RequestFailed, request_head


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
    """Sends requests to targets over pooled, keep-alive connections.

    ``resolver`` replaces the system's DNS under the deny filter (tests script DNS
    answers with it).
    """

    def __init__(self, *, resolver: AbstractResolver | None = None) -> None:
        self._resolver = resolver
        self._targets: dict[str, tuple[Target, Endpoint, Pool]] = {}
        self._pools: dict[tuple[addresses.IPNetwork, ...], Pool] = {}

    def set_targets(self, targets: Sequence[Target]) -> None:
        """Send to these targets from now on (a reload replaces them all)."""
        self._targets = {t.name: (t, Endpoint.of(t.url), self._pool_for(t)) for t in targets}

    def _pool_for(self, target: Target) -> Pool:
        deny = addresses.parse_networks(list(target.deny_networks))
        pool = self._pools.get(deny)
        if pool is None:
            pool = self._pools[deny] = Pool(deny, resolver=self._resolver)
        return pool

    def pool(self, target: str) -> Pool:
        """The pool that ``target``'s requests go through."""
        return self._targets[target][2]

    async def close_unused(self) -> None:
        """A reload may leave a deny list that no target uses: close its pool."""
        used = {id(pool) for _, _, pool in self._targets.values()}
        for deny, pool in list(self._pools.items()):
            if id(pool) not in used:
                del self._pools[deny]
                await pool.close()

    async def close(self) -> None:
        for pool in self._pools.values():
            await pool.close()
        self._pools.clear()

    async def send(self, target: str, body: bytes, headers: Headers) -> Answer:
        """POST ``body`` to ``target``; every failure is an answer, never an exception.

        Redirects are not followed, no cookie is kept, no proxy is used.
        """
        url_target, endpoint, pool = self._targets[target]
        items = headers.items() if isinstance(headers, Mapping) else headers
        try:
            head = request_head(endpoint, items, len(body))
            reply = await pool.send(endpoint, head, body, url_target.timeout)
        except TimeoutError:
            return Answer(None, "timeout", None, b"")
        except RequestFailed as exc:
            return Answer(None, str(exc)[:500], None, b"")
        except (ValueError, OSError) as exc:
            # Whatever else the socket layer raises (a host name IDNA cannot encode).
            return Answer(None, f"{type(exc).__name__}: {exc}"[:500], None, b"")
        status = reply.status
        error = None if 200 <= status < 300 else f"HTTP {status}"
        return Answer(status, error, reply.retry_after, reply.snippet)
