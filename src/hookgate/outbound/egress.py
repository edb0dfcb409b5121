"""Outbound address policy: deliveries never reach the networks in ``deny_networks``.

A destination's URL comes from the config, but the address its host name resolves
to comes from DNS at send time, and an answer from a cloud metadata service
(169.254.169.254 and friends) is stored and shown by the admin API. So the policy
is enforced where the address is known:

- ``DenyingResolver`` wraps aiohttp's resolver and drops denied addresses from each
  answer; a host left with none fails with ``EgressDenied`` (an ``OSError``; the
  attempt's error reads ``ClientConnectorDNSError: Cannot connect to host ...``);
- the client (http1.py) checks every address once more right before its socket is
  made, which also covers IP literals (they are not resolved; the config loader
  already refuses a destination URL whose literal IP is denied).

The connection is made to the very address that was checked, so a DNS answer that
changes between the check and the connect (rebinding) gains nothing.

IPv4-mapped IPv6 addresses (``::ffff:169.254.169.254``) are matched against IPv4
networks, and IPv4 addresses against networks written in the mapped form.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from hookgate.addresses import IPNetwork, within


class EgressDenied(OSError):
    """A host's every address, or the address about to be connected, is denied.

    The message names the host (or the literal address being connected), never the
    addresses a name resolved to: those are internal, and an attempt's error text
    is stored and shown by the admin API.
    """

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(errno.EACCES, f"{host}: {reason}")
        self.host = host


class DenyingResolver(AbstractResolver):
    """aiohttp's resolver (or ``resolver``) without the addresses in ``deny``.

    Must be made inside a running event loop, as aiohttp's own resolvers are.
    """

    def __init__(self, deny: Sequence[IPNetwork], resolver: AbstractResolver | None = None) -> None:
        self.deny = tuple(deny)
        self._resolver = resolver if resolver is not None else aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._resolver.resolve(host, port, family)
        allowed = [answer for answer in answers if not within(answer["host"], self.deny)]
        if not allowed:
            raise EgressDenied(host, "every address it resolves to is in deny_networks")
        return allowed

    async def close(self) -> None:
        await self._resolver.close()
