"""The outbound address policy: the delivery client (``HttpClient``) against a real
HTTP server on 127.0.0.1, and the config's check of literal IPs.

127.0.0.0/8 stands in for a denied network (in production: 169.254.0.0/16 and the
other defaults), since a test can only listen on loopback. Where DNS answers must
be scripted (a name resolving to a metadata address), a resolver stub replaces the
system's, under the same deny filter.
"""

from __future__ import annotations

import socket
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from hookgate import addresses, config
from hookgate.errors import ConfigError
from hookgate.outbound.client import Answer, HttpClient, Target

from ..harness import HOST, WAIT, Downstream, Received

DEFAULTS = addresses.parse_networks(config.DEFAULT_DENY_NETWORKS)
LOOPBACK = ["127.0.0.0/8", "::1/128"]
DEFAULT_LIST = tuple(config.DEFAULT_DENY_NETWORKS)


async def metadata(received: Received, number: int) -> web.StreamResponse:
    return web.Response(text="secret metadata")


@pytest.fixture
def server(downstream: Downstream) -> Downstream:
    """The recording downstream, answering as a metadata service would."""
    downstream.handler = metadata
    return downstream


class ScriptedResolver(AbstractResolver):
    """Answers every name with ``addresses``, as DNS would."""

    def __init__(self, addresses: Sequence[str]) -> None:
        self.addresses = addresses
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in self.addresses
        ]

    async def close(self) -> None:
        self.closed = True


async def post(url: str, deny: Sequence[str], resolver: AbstractResolver | None = None) -> Answer:
    """POST to ``url`` as a delivery does: the client, its pools and their deny list."""
    client = HttpClient(resolver=resolver)
    client.set_targets([Target("t", url, WAIT, tuple(deny))])
    try:
        return await client.send("t", b"{}", {})
    finally:
        await client.close()


def refused(answer: Answer, kind: str, host: str, reason: str) -> None:
    """Refused by the policy, with aiohttp's wording, not some other connection failure."""
    assert answer.status is None
    assert answer.error is not None
    assert answer.error.startswith(f"{kind}: Cannot connect to host {host}:"), answer.error
    assert answer.error.endswith(f"[{host}: {reason}]"), answer.error
    assert answer.outcome.kind == "connection_error"


# -- connecting ---------------------------------------------------------------------


async def test_the_default_policy_allows_loopback_by_name_and_address(server: Downstream) -> None:
    for host in (HOST, "localhost"):
        answer = await post(f"http://{host}:{server.port}/", DEFAULT_LIST)
        assert (answer.status, answer.snippet) == (200, b"secret metadata")
    assert len(server.received) == 2


async def test_a_name_resolving_only_to_denied_addresses_is_refused(server: Downstream) -> None:
    answer = await post(f"http://localhost:{server.port}/", LOOPBACK)
    refused(
        answer,
        "ClientConnectorDNSError",
        "localhost",
        "every address it resolves to is in deny_networks",
    )
    assert len(server.received) == 0


async def test_denying_127_0_0_0_8_alone_keeps_localhost_off_the_server(server: Downstream) -> None:
    """The brief's case: whatever else localhost resolves to (::1), 127.0.0.1 is not used."""
    answer = await post(f"http://localhost:{server.port}/", ["127.0.0.0/8"])
    assert answer.status is None
    assert answer.error is not None and answer.error.startswith("ClientConnector")
    assert len(server.received) == 0


async def test_a_literal_denied_address_is_refused_at_the_socket(server: Downstream) -> None:
    """IP literals are not resolved; the address is checked before its socket is made."""
    answer = await post(f"http://{HOST}:{server.port}/", LOOPBACK)
    refused(answer, "ClientConnectorError", HOST, "this address is in deny_networks")
    assert len(server.received) == 0


async def test_an_empty_deny_list_allows_everything(server: Downstream) -> None:
    assert (await post(f"http://localhost:{server.port}/", [])).status == 200
    assert len(server.received) == 1


async def test_denied_answers_are_dropped_and_the_others_used(server: Downstream) -> None:
    """A name answering a metadata address and a loopback one reaches only the latter."""
    resolver = ScriptedResolver(["169.254.169.254", HOST])
    answer = await post(f"http://mixed.example:{server.port}/", DEFAULT_LIST, resolver)
    assert answer.status == 200
    assert len(server.received) == 1
    assert resolver.closed  # closing the client closes the resolver it was given


@pytest.mark.parametrize(
    "answers",
    [
        ["169.254.169.254"],
        ["::ffff:169.254.169.254"],  # IPv4-mapped: the same address over IPv6
        ["fd00:ec2::254"],
        ["100.100.100.200", "169.254.170.2", "fe80::1"],
        ["0.0.0.0"],
    ],
)
async def test_names_resolving_to_metadata_addresses_are_refused(answers: list[str]) -> None:
    answer = await post(
        "http://metadata.example/latest/meta-data/", DEFAULT_LIST, ScriptedResolver(answers)
    )
    refused(
        answer,
        "ClientConnectorDNSError",
        "metadata.example",
        "every address it resolves to is in deny_networks",
    )
    # The resolved addresses are internal: the error (stored, shown by the API) omits them.
    for address in answers:
        assert address not in str(answer.error)


# -- matching -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "denied"),
    [
        ("169.254.169.254", True),
        ("::ffff:169.254.169.254", True),
        ("::ffff:a9fe:a9fe", True),
        ("fd00:ec2::254", True),
        ("fd00:ec2::253", False),
        ("fe80::1%eth0", True),
        ("100.100.100.200", True),
        ("100.100.100.201", False),
        ("0.0.0.0", True),
        ("::", True),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("127.0.0.1", False),
        ("::1", False),
        ("fd12:3456::1", False),
        ("::ffff:10.0.0.1", False),
        ("8.8.8.8", False),
        ("not-an-address", False),
    ],
)
def test_default_networks(address: str, denied: bool) -> None:
    assert addresses.within(address, DEFAULTS) is denied


def test_a_network_in_mapped_form_holds_the_ipv4_address() -> None:
    deny = addresses.parse_networks(["::ffff:10.0.0.0/104"])
    assert addresses.within("10.9.9.9", deny)
    assert addresses.within("::ffff:10.9.9.9", deny)
    assert not addresses.within("11.0.0.1", deny)


def test_parse_networks_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        addresses.parse_networks(["169.254.0.0/16", "metadata"])


# -- the config: literal addresses, and the key ------------------------------------


def load(tmp_path: Path, text: str) -> config.Config:
    path = tmp_path / "hookgate.toml"
    path.write_text(textwrap.dedent(text))
    return config.load(path, {})


def errors_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return info.value.errors


SOURCE = """
[sources.shop]
path = "/hooks/shop"
"""


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://user:pass@169.254.169.254:80/x",
        "https://[fd00:ec2::254]/latest",
        "http://[::ffff:169.254.169.254]/",
        "http://100.100.100.200/",
        "http://0.0.0.0:8080/",
    ],
)
def test_a_literal_denied_address_is_a_config_error(tmp_path: Path, url: str) -> None:
    errors = errors_of(
        tmp_path,
        SOURCE
        + f"""
        [destinations.meta]
        url = "{url}"
        sources = ["shop"]
        """,
    )
    assert len(errors) == 1
    assert errors[0].startswith("destinations.meta.url: address ")
    assert "is in deny_networks" in errors[0]
    assert "pass" not in errors[0]  # a URL's password is never echoed
    assert errors[0].endswith("(line 6)")


def test_a_legacy_numeric_address_is_a_config_error(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        SOURCE + '[destinations.meta]\nurl = "http://2852039166/"\nsources = ["shop"]\n',
    )
    assert errors == [
        "destinations.meta.url: expected a dotted IPv4 address such as 10.0.0.1, "
        "got 2852039166 (line 5)"
    ]


def test_private_addresses_and_names_are_allowed_by_default(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        SOURCE
        + """
        [destinations.a]
        url = "http://10.0.0.5:8080/"
        sources = ["shop"]
        [destinations.b]
        url = "http://[::1]:8080/"
        sources = ["shop"]
        [destinations.c]
        url = "http://metadata.google.internal/"   # a name: checked when it resolves
        sources = ["shop"]
        """,
    )
    policy = loaded.destinations["a"].policy
    assert policy.deny_networks == list(config.DEFAULT_DENY_NETWORKS)
    assert addresses.parse_networks(policy.deny_networks) == DEFAULTS


def test_deny_networks_is_inherited_and_overridden(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        SOURCE
        + """
        [delivery]
        deny_networks = ["169.254.0.0/16", "10.20.0.0/16"]

        [destinations.agent]
        url = "http://169.254.10.10/hooks"
        sources = ["shop"]
        deny_networks = []

        [destinations.other]
        url = "http://10.30.0.1/hooks"
        sources = ["shop"]
        """,
    )
    assert loaded.destinations["agent"].policy.deny_networks == []
    assert loaded.destinations["other"].policy.deny_networks == ["169.254.0.0/16", "10.20.0.0/16"]
    assert loaded.delivery.deny_networks == ["169.254.0.0/16", "10.20.0.0/16"]


def test_the_delivery_list_applies_to_alerts_and_destinations(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        SOURCE
        + """
        [delivery]
        deny_networks = ["10.20.0.0/16"]

        [destinations.a]
        url = "http://10.20.1.1/hooks"
        sources = ["shop"]

        [alerts]
        url = "http://10.20.1.2/alerts"
        sign = "none"
        """,
    )
    assert [e.split(":")[0] for e in errors] == ["destinations.a.url", "alerts.url"]


def test_an_empty_delivery_list_allows_metadata_addresses(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        SOURCE
        + """
        [delivery]
        deny_networks = []
        [destinations.meta]
        url = "http://169.254.169.254/"
        sources = ["shop"]
        """,
    )
    assert loaded.destinations["meta"].policy.deny_networks == []


def test_bad_networks_are_config_errors(tmp_path: Path) -> None:
    text = """
    [delivery]
    deny_networks = ["169.254.0.0/16", "metadata"]
    [sources.shop]
    path = "/hooks/shop"
    [destinations.a]
    url = "http://example.com/"
    sources = ["shop"]
    deny_networks = ["10.0.0.0/33"]
    """
    assert errors_of(tmp_path, text) == [
        "delivery.deny_networks[1]: expected an IP address or CIDR such as 10.0.0.0/8, "
        "got 'metadata' (line 3)",
        "destinations.a.deny_networks[0]: expected an IP address or CIDR such as 10.0.0.0/8, "
        "got '10.0.0.0/33' (line 9)",
    ]
