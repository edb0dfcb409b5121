"""What a config file may hold: one frozen msgspec Struct per table.

msgspec decodes and type-checks each table with these; the loader adds what a type
cannot say (``${ENV}``, secret files, relative paths, checks across keys).

The delivery policy is declared once, in ``DeliveryPolicy``: each field is one
setting with its type, its default, its help text and the rule its value must
meet (``setting()``). The ``[delivery]`` table decodes as it is; a destination's
table gets every setting again, optional (unset: inherited from ``[delivery]``),
derived from it in ``DestinationTable``.
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple

import msgspec

from hookgate import providers
from hookgate.config.values import Duration, Size

if TYPE_CHECKING:
    Scheme = str
else:
    # Every registered provider, in the registry's order: a provider module added to
    # the registry is a scheme (and a ``provider`` name) without an edit here, and
    # msgspec's error lists them all (`unknown scheme "strpe" (expected one of: ...)`).
    Scheme = Literal[providers.SCHEMES]
SignMode = Literal["none", "standard", "hmac-sha256"]
Method = Literal["POST", "PUT", "PATCH"]

# The internal source and destination that carry alerts (see AlertsConfig).
ALERT_SOURCE = "hookgate"
ALERT_DESTINATION = "_alerts"


class _Table(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


class Rule(NamedTuple):
    """What a setting's value must be, checked after decoding.

    ``holds(value, policy)`` is the test, "expected <expected>" the error. With
    ``each``, the test applies to every item of a list and the error names the item.
    ``also_after``: the settings whose own value changes this one's test.
    """

    expected: str
    holds: Callable[[Any, Any], bool]
    each: bool = False
    also_after: tuple[str, ...] = ()


def _is_cidr(value: str, _: object = None) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


POSITIVE_DURATION = Rule("a duration > 0", lambda value, _: value > 0)
AT_LEAST_ONE = Rule("an integer >= 1", lambda value, _: value >= 1)
POSITIVE_OR_UNSET = Rule("a number > 0", lambda value, _: value is None or value > 0)
CIDR = Rule("an IP address or CIDR such as 10.0.0.0/8", _is_cidr, each=True)
NOT_BELOW_INITIAL_BACKOFF = Rule(
    ">= initial_backoff",
    lambda value, policy: value >= policy.initial_backoff,
    also_after=("initial_backoff",),
)
# [alerts]: a window shorter than the evaluation interval would hold at most one sample.
WINDOW = Rule(
    "a duration >= alerts.interval", lambda value, alerts: value > 0 and value >= alerts.interval
)
SHARE = Rule("a number from 0 to 1", lambda value, _: 0 <= value <= 1)
ABOVE_ONE = Rule("a number > 1", lambda value, _: value > 1)
DELIVERY_PROCESSES = Rule("an integer from 0 to 64", lambda value, _: 0 <= value <= 64)
INGEST_PROCESSES = Rule("an integer from 0 to 64", lambda value, _: 0 <= value <= 64)
NOT_NEGATIVE = Rule("a number >= 0", lambda value, _: value >= 0)
LONGER_THAN_TRAFFIC_WINDOW = Rule(
    "a duration > alerts.traffic_window",
    lambda value, alerts: value > alerts.traffic_window,
)
# (The annotations below are evaluated again each time their types are read, so the
# rules they name are made once, here.)


def setting(help_text: str, rule: Rule | None = None) -> msgspec.Meta:
    """A setting's one-line help text and the rule its value must meet (``table_rules``)."""
    return msgspec.Meta(description=help_text, extra={} if rule is None else {"rule": rule})


class ServerConfig(_Table, frozen=True):
    listen: str = "0.0.0.0:8080"  # the ingress is public by design
    max_body: Size = Size(1024**2)
    request_timeout: Duration = Duration(15)
    shutdown_grace: Duration = Duration(10)
    trusted_proxies: list[str] = []
    tls_cert: str | None = None
    tls_key: str | None = None
    # Child processes that send the deliveries' HTTP requests (0: this process sends; on
    # two cores that moved more end to end than a child: docs/benchmarks.md, session 19).
    delivery_processes: Annotated[
        int, setting("child processes sending deliveries; 0: none", DELIVERY_PROCESSES)
    ] = 0
    # Child processes that serve the ingress listener (0: this process serves it).
    ingest_processes: Annotated[
        int, setting("child processes serving the ingress; 0: none", INGEST_PROCESSES)
    ] = 0


class AdminConfig(_Table, frozen=True):
    listen: str = "127.0.0.1:9090"
    token: str | None = None
    token_file: str | None = None
    # The dashboard: false shows no message body at all (personal data), and a body
    # longer than body_preview is cut there.
    show_bodies: bool = True
    body_preview: Size = Size(64 * 1024)


class StorageConfig(_Table, frozen=True):
    path: str = "hookgate.db"
    retention: Duration = Duration(7 * 86400)
    sync: Literal["full", "normal"] = "full"
    # Set: the PostgreSQL store at this URL instead of the SQLite file at ``path``.
    url: str | None = None
    password: str | None = None
    secret_file: str | None = None  # the password, from a file
    # How long a delivery claimed by a process that stopped renewing it stays its own.
    lease: Duration = Duration(30)


class LogConfig(_Table, frozen=True):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"


# Where deliveries may not go unless the config says so: link-local addresses (the
# cloud metadata services of AWS, GCP, Azure, OpenStack... at 169.254.169.254), AWS's
# IPv6 metadata address, Alibaba Cloud's metadata address, and "this host" (0.0.0.0,
# ::), which reaches local services. Private networks (10/8, 172.16/12, 192.168/16,
# 127/8, ::1, fc00::/7) stay allowed: internal services live there.
DEFAULT_DENY_NETWORKS = (
    "169.254.0.0/16",
    "fe80::/10",
    "fd00:ec2::254/128",
    "100.100.100.200/32",
    "0.0.0.0/8",
    "::/128",
)


class DeliveryPolicy(_Table, frozen=True):
    """How one destination's deliveries are attempted and retried.

    Each field is a setting of ``[delivery]``, which every destination may override.
    """

    timeout: Annotated[
        Duration, setting("per attempt, connect to last byte", POSITIVE_DURATION)
    ] = Duration(10)
    max_attempts: Annotated[int, setting("then the delivery is dead", AT_LEAST_ONE)] = 12
    max_age: Annotated[
        Duration, setting("or dead once the message is older than this", POSITIVE_DURATION)
    ] = Duration(3 * 86400)
    initial_backoff: Annotated[
        Duration, setting("the first retry's backoff bound (full jitter)", POSITIVE_DURATION)
    ] = Duration(1)
    max_backoff: Annotated[
        Duration, setting("the largest backoff bound", NOT_BELOW_INITIAL_BACKOFF)
    ] = Duration(3600)
    concurrency: Annotated[int, setting("requests in flight per destination", AT_LEAST_ONE)] = 16
    rate_limit: Annotated[
        float | None,
        setting("requests per second per destination (unset: no limit)", POSITIVE_OR_UNSET),
    ] = None
    circuit_failures: Annotated[
        int, setting("consecutive failures that open the circuit", AT_LEAST_ONE)
    ] = 5
    circuit_cooldown: Annotated[
        Duration, setting("how long an open circuit waits before a probe", POSITIVE_DURATION)
    ] = Duration(30)
    # See hookgate.outbound.egress, which enforces it at each connection.
    deny_networks: Annotated[
        list[str], setting("CIDRs no delivery may connect to; [] allows every address", CIDR)
    ] = msgspec.field(default_factory=lambda: list(DEFAULT_DENY_NETWORKS))


POLICY_SETTINGS: tuple[str, ...] = DeliveryPolicy.__struct_fields__
"""The names of the delivery policy's settings, in declaration order."""


def policy_rules() -> tuple[tuple[str, Rule], ...]:
    """Each setting of ``DeliveryPolicy`` that has a rule, with its rule, in order."""
    return table_rules(DeliveryPolicy)


@functools.cache
def table_rules(struct: type[msgspec.Struct]) -> tuple[tuple[str, Rule], ...]:
    """Each setting of ``struct`` declared with a rule (``setting()``), with it, in order."""
    return tuple(
        (field.name, meta.extra["rule"])
        for field in msgspec.structs.fields(struct)
        for meta in _metas(field.type)
        if meta.extra and "rule" in meta.extra
    )


def help_text(struct: type[msgspec.Struct], name: str) -> str | None:
    """The help text of setting ``name`` of ``struct``, if it has one."""
    field = next(f for f in msgspec.structs.fields(struct) if f.name == name)
    return next((m.description for m in _metas(field.type) if m.description), None)


def _metas(tp: Any) -> list[msgspec.Meta]:
    return [m for m in getattr(tp, "__metadata__", ()) if isinstance(m, msgspec.Meta)]


class AlertsConfig(_Table, frozen=True):
    """Operational webhooks about hookgate itself, sent through its own outbox.

    The rules' settings (hookgate.outbound.alerts.rules) each carry their rule.
    """

    url: str
    sign: SignMode = "standard"
    secret: str | None = None
    secret_file: str | None = None
    headers: dict[str, str] = {}
    backlog_age: Annotated[
        Duration, setting("alert when the oldest pending message is older", POSITIVE_DURATION)
    ] = Duration(900)
    interval: Annotated[
        Duration, setting("how often the rules are evaluated", POSITIVE_DURATION)
    ] = Duration(30)
    failure_rate: Annotated[
        float, setting("a destination fails when more of its attempts than this fail", SHARE)
    ] = 0.5
    failure_window: Annotated[
        Duration, setting("the window the failure rate is measured over", WINDOW)
    ] = Duration(300)
    failure_min_attempts: Annotated[
        int, setting("fewer attempts in the window never alert", AT_LEAST_ONE)
    ] = 10
    traffic_spike_factor: Annotated[
        float, setting("a spike is more than this many times the usual rate", ABOVE_ONE)
    ] = 10.0
    traffic_floor: Annotated[
        float, setting("webhooks per second below which no spike alerts", NOT_NEGATIVE)
    ] = 1.0
    traffic_window: Annotated[
        Duration, setting("the window the current rate is measured over", WINDOW)
    ] = Duration(300)
    traffic_baseline: Annotated[
        Duration,
        setting("the time constant of the usual rate's average", LONGER_THAN_TRAFFIC_WINDOW),
    ] = Duration(3600)
    signature_failures: Annotated[
        int, setting("invalid signatures in the window that alert", AT_LEAST_ONE)
    ] = 10
    signature_window: Annotated[
        Duration, setting("the window invalid signatures are counted over", WINDOW)
    ] = Duration(300)


class VerifyConfig(_Table, frozen=True):
    scheme: Scheme = "none"
    secrets: list[str] = []
    secret_file: str | None = None
    tolerance: Duration = Duration(300)
    # The generic "hmac" scheme:
    header: str | None = None
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""
    timestamp_header: str | None = None
    signed_payload: str = "{body}"
    # Meta's GET hub.challenge handshake: the token chosen when subscribing.
    verify_token: str | None = None
    # The public-key schemes (sendgrid, discord, ed25519, paypal): the provider's keys.
    public_keys: list[str] = []
    # Asana: where the X-Hook-Secret of the first handshake is written (once).
    handshake_secret_file: str | None = None


class SourceConfig(_Table, frozen=True):
    path: str
    methods: list[Method] = msgspec.field(default_factory=lambda: ["POST"])
    allow_ips: list[str] = []
    event_type: str | None = None
    event_id: str | None = None
    dedup_window: Duration = Duration(86400)
    # Alert (source.silent) when nothing is accepted for longer than this.
    expect_every: Duration | None = None
    # A named provider: its scheme, and its recommended allow_ips and tolerance where
    # the source sets none (resolved by the loader).
    provider: Scheme | None = None
    # The URL the provider posts to, as the provider sees it (behind a reverse proxy,
    # not the one hookgate sees): what Twilio, Square, HubSpot, Trello and Contentful
    # sign.
    public_url: str | None = None
    verify: VerifyConfig = VerifyConfig()


class DestinationKeys(_Table, frozen=True):
    """A ``[destinations.<name>]`` table's own keys; ``DestinationTable`` adds the policy's."""

    url: str
    sources: list[str]
    events: list[str] | None = None
    forward_headers: list[str] = []
    headers: dict[str, str] = {}
    sign: SignMode = "none"
    secret: str | None = None
    secret_file: str | None = None
    ordered: bool = False
    batch_max: int = 1
    batch_wait: Duration = Duration(0.05)
    # A content filter (hookgate.filters): a table, or the same as JSON text.
    filter: dict[str, Any] | str | None = None
    # A jq program run on each delivery (hookgate.transform), with its limits.
    transform: str | None = None
    transform_timeout: Duration = Duration(1)
    transform_max_size: Size = Size(1024**2)


DestinationTable = typing.cast(
    type[DestinationKeys],
    msgspec.defstruct(
        "DestinationTable",
        [(field.name, field.type | None, None) for field in msgspec.structs.fields(DeliveryPolicy)],
        bases=(DestinationKeys,),
        frozen=True,
        kw_only=True,
        forbid_unknown_fields=True,
    ),
)
"""What a destination's table decodes as: its own keys, and every policy setting as
an optional override (None: inherited from ``[delivery]``)."""


class DestinationConfig(_Table, frozen=True):
    """A destination with its [delivery] defaults already applied."""

    name: str
    url: str
    sources: list[str]
    events: list[str] | None
    forward_headers: list[str]
    headers: dict[str, str]
    sign: SignMode
    secret: str | None
    ordered: bool
    batch_max: int
    batch_wait: Duration
    policy: DeliveryPolicy
    filter: dict[str, Any] | None = None  # parsed; compiled by the ingress
    transform: str | None = None
    transform_timeout: Duration = Duration(1)
    transform_max_size: Size = Size(1024**2)

    def matches(self, source: str, event_type: str | None) -> bool:
        """Does a message of ``source`` with ``event_type`` go to this destination?"""
        if source not in self.sources:
            return False
        if self.events is None:
            return True
        return event_type is not None and any(
            fnmatch.fnmatchcase(event_type, pattern) for pattern in self.events
        )


class Config(_Table, frozen=True):
    path: Path
    server: ServerConfig
    admin: AdminConfig
    storage: StorageConfig
    log: LogConfig
    delivery: DeliveryPolicy
    sources: dict[str, SourceConfig]
    destinations: dict[str, DestinationConfig]
    alerts: AlertsConfig | None = None


SECTIONS: dict[str, type[msgspec.Struct]] = {
    "server": ServerConfig,
    "admin": AdminConfig,
    "storage": StorageConfig,
    "log": LogConfig,
    "delivery": DeliveryPolicy,
}
"""The top-level tables that hold settings only (defaults when absent)."""

FILE_TABLES: dict[str, type[msgspec.Struct]] = {
    **SECTIONS,
    "sources.<name>": SourceConfig,
    "sources.<name>.verify": VerifyConfig,
    "destinations.<name>": DestinationKeys,
    "alerts": AlertsConfig,
}
"""Every table a config file may hold, by path, with the keys it declares itself
(a destination's policy overrides are the ``[delivery]`` settings): the reference
that the docs must cover."""
