"""IP addresses and networks, as hookgate compares them everywhere.

Allowlists, trusted proxies and the egress deny list all meet the same traps: an
IPv6 zone (``fe80::1%eth0``), and IPv4 addresses written in IPv6's mapped form
(``::ffff:169.254.169.254``), which must match an IPv4 network and the other way
round. One parser and one membership test, so a rule cannot be dodged by spelling.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def parse_address(text: str | None) -> IPAddress | None:
    """``text`` as an IP address (zone ignored; IPv4-mapped IPv6 as IPv4), else None."""
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """``["169.254.0.0/16", "::1"]`` as networks (host bits allowed); ValueError if one is not."""
    return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs)


def network_holding(
    address: IPAddress | str | None, networks: Sequence[IPNetwork]
) -> IPNetwork | None:
    """The first of ``networks`` that holds ``address`` in either IPv4 form, else None.

    A string that is not an IP address is held by none.
    """
    addr = parse_address(address) if isinstance(address, str) or address is None else address
    if addr is None:
        return None
    forms: list[IPAddress] = [addr]
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        forms.append(addr.ipv4_mapped)
    elif isinstance(addr, ipaddress.IPv4Address):
        forms.append(ipaddress.IPv6Address(int(_MAPPED.network_address) | int(addr)))
    for network in networks:
        if any(form.version == network.version and form in network for form in forms):
            return network
    return None


def within(address: IPAddress | str | None, networks: Sequence[IPNetwork]) -> bool:
    return network_holding(address, networks) is not None
