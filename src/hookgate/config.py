"""TOML config → typed, validated, frozen config.

msgspec decodes and type-checks each table; this module adds what msgspec cannot
know: durations and sizes with units, ``${ENV}`` substitution, ``secret_file``,
relative paths, cross-references, and error messages that name the key path.
"""

from __future__ import annotations

import base64
import binascii
import copy
import fnmatch
import ipaddress
import json
import os
import re
import socket
import stat
import tomllib
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import msgspec

from hookgate.errors import ConfigError

DEFAULT_PATH = "/etc/hookgate/hookgate.toml"

Scheme = Literal[
    "none", "hmac", "standard", "github", "stripe", "shopify", "slack", "gitlab", "basic"
]
SignMode = Literal["none", "standard", "hmac-sha256"]
Method = Literal["POST", "PUT", "PATCH"]
_T = TypeVar("_T")


class Duration(float):
    """Seconds, written in the file as "250ms", "10s", "5m", "2h" or "7d"."""


class Size(int):
    """Bytes, written as "512KiB", "1MiB" or a plain integer."""


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "kb": 1000,
    "mb": 1000**2,
}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$")
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def parse_duration(value: object) -> Duration:
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            return Duration(float(match[1]) * _DURATION_UNITS[match[2]])
    raise ValueError(f'expected a duration with a unit such as "250ms", "10s", "5m", got {value!r}')


def parse_size(value: object) -> Size:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return Size(value)
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match and match[2].lower() in _SIZE_UNITS:
            return Size(int(match[1]) * _SIZE_UNITS[match[2].lower()])
    raise ValueError(f'expected a size such as "512KiB", "1MiB" or a byte count, got {value!r}')


def _dec_hook(tp: type, obj: object) -> object:
    if tp is Duration:
        return parse_duration(obj)
    if tp is Size:
        return parse_size(obj)
    raise NotImplementedError


class _Table(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


class ServerConfig(_Table, frozen=True):
    listen: str = "0.0.0.0:8080"  # the ingress is public by design
    max_body: Size = Size(1024**2)
    request_timeout: Duration = Duration(15)
    shutdown_grace: Duration = Duration(10)
    trusted_proxies: list[str] = []
    tls_cert: str | None = None
    tls_key: str | None = None


class AdminConfig(_Table, frozen=True):
    listen: str = "127.0.0.1:9090"
    token: str | None = None
    token_file: str | None = None


class StorageConfig(_Table, frozen=True):
    path: str = "hookgate.db"
    retention: Duration = Duration(7 * 86400)
    sync: Literal["full", "normal"] = "full"


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
    """How one destination's deliveries are attempted and retried."""

    timeout: Duration = Duration(10)
    max_attempts: int = 12
    max_age: Duration = Duration(3 * 86400)
    initial_backoff: Duration = Duration(1)
    max_backoff: Duration = Duration(3600)
    concurrency: int = 16
    rate_limit: float | None = None
    circuit_failures: int = 5
    circuit_cooldown: Duration = Duration(30)
    # CIDRs no delivery may connect to (see hookgate.outbound.egress); [] allows every address.
    deny_networks: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_DENY_NETWORKS))


class AlertsConfig(_Table, frozen=True):
    """Operational webhooks about hookgate itself, sent through its own outbox."""

    url: str
    sign: SignMode = "standard"
    secret: str | None = None
    secret_file: str | None = None
    headers: dict[str, str] = {}
    backlog_age: Duration = Duration(900)
    interval: Duration = Duration(30)


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


class SourceConfig(_Table, frozen=True):
    path: str
    methods: list[Method] = msgspec.field(default_factory=lambda: ["POST"])
    allow_ips: list[str] = []
    event_type: str | None = None
    event_id: str | None = None
    dedup_window: Duration = Duration(86400)
    verify: VerifyConfig = VerifyConfig()


class _DestinationTable(_Table, frozen=True):
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
    timeout: Duration | None = None
    max_attempts: int | None = None
    max_age: Duration | None = None
    initial_backoff: Duration | None = None
    max_backoff: Duration | None = None
    concurrency: int | None = None
    rate_limit: float | None = None
    circuit_failures: int | None = None
    circuit_cooldown: Duration | None = None
    deny_networks: list[str] | None = None


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


# The internal source and destination that carry alerts (see AlertsConfig).
ALERT_SOURCE = "hookgate"
ALERT_DESTINATION = "_alerts"

_SECTIONS: dict[str, type[_Table]] = {
    "server": ServerConfig,
    "admin": AdminConfig,
    "storage": StorageConfig,
    "log": LogConfig,
    "delivery": DeliveryPolicy,
}
_OVERRIDABLE = tuple(DeliveryPolicy.__struct_fields__)


def config_path(explicit: str | None) -> Path:
    return Path(explicit or os.environ.get("HOOKGATE_CONFIG") or DEFAULT_PATH)


def load(
    path: Path, environ: Mapping[str, str] | None = None, *, check_storage: bool = False
) -> Config:
    """Read, substitute, decode and validate the config file at ``path``.

    Every error found is reported at once, in one ``ConfigError``. With
    ``check_storage`` (``check-config``), storage.path's directory must also exist
    and be writable by the current user; ``serve`` leaves that to opening the store.
    """
    env = os.environ if environ is None else environ
    text, raw = _read_toml(path)
    return _Loader(path, text, env, check_storage=check_storage).build(raw)


def _read_toml(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc.strerror}"]) from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from None


def load_admin(path: Path, environ: Mapping[str, str] | None = None) -> AdminConfig:
    """Only the [admin] table: what the admin commands need to reach the API.

    The CLI runs in operators' shells, which lack the service's other secrets
    (${ENV} values, LoadCredential= files): those tables are not resolved here.
    """
    env = os.environ if environ is None else environ
    text, raw = _read_toml(path)
    loader = _Loader(path, text, env)
    admin = loader._convert(loader._substitute(raw.get("admin", {}), "admin"), AdminConfig, "admin")
    if admin is not None and admin.token_file is not None:
        token = loader._read_secret_file(admin.token_file, "admin.token_file")
        admin = msgspec.structs.replace(admin, token=token, token_file=None)
    if loader.errors or admin is None:
        raise ConfigError(loader.errors)
    return admin


# At most this many errors are collected from one table before giving up on it.
_MAX_TABLE_ERRORS = 50


class _Loader:
    """One pass over the file that collects every error it can find.

    A value that is wrong (or missing, for ``${ENV}`` and secret files) is
    reported, then left out so that the rest of its table can still be decoded;
    checks that would only repeat the same mistake (a key that was left out, a
    source that did not decode) are not reported again.
    """

    def __init__(
        self, path: Path, text: str, env: Mapping[str, str], *, check_storage: bool = False
    ) -> None:
        self.path = path
        self.folder = path.resolve().parent
        self.lines = text.splitlines()
        self.env = env
        self.check_storage = check_storage
        self.errors: list[str] = []
        self._error_lines: list[int | None] = []  # the line of each error, where known
        # Key paths already reported, and key paths whose value was left out.
        self._reported: list[str] = []
        self._dropped: set[str] = set()
        # Per destination: the [delivery] keys it sets itself.
        self._overrides: dict[str, set[str]] = {}

    def build(self, raw: dict[str, Any]) -> Config:
        raw = self._substitute(raw, "")
        for key in sorted(raw.keys() - {*_SECTIONS, "sources", "destinations", "alerts"}):
            self._error(key, "unknown key")
        delivery = self._section(raw, DeliveryPolicy, "delivery")
        sources = self._sources(raw.get("sources", {}))
        config = Config(
            path=self.path.resolve(),
            server=self._section(raw, ServerConfig, "server"),
            admin=self._with_admin_token(self._section(raw, AdminConfig, "admin")),
            storage=self._section(raw, StorageConfig, "storage"),
            log=self._section(raw, LogConfig, "log"),
            delivery=delivery,
            sources=sources,
            destinations=self._destinations(raw.get("destinations", {}), delivery),
            alerts=self._alerts(raw["alerts"]) if "alerts" in raw else None,
        )
        # Destinations are checked against every source the file names, decoded or not.
        declared = raw.get("sources")
        self._validate(config, set(declared) if isinstance(declared, dict) else set())
        if self.errors:
            raise ConfigError(self._in_file_order())
        return self._with_alert_destination(self._resolve_paths(config))

    def _in_file_order(self) -> list[str]:
        """The errors by line, those without a known line last (each group as found)."""
        order = sorted(
            range(len(self.errors)),
            key=lambda i: (self._error_lines[i] is None, self._error_lines[i] or 0, i),
        )
        return [self.errors[i] for i in order]

    def _section(self, raw: dict[str, Any], tp: type[_T], name: str) -> _T:
        """A top-level table, or its defaults when it cannot be decoded (reported)."""
        return self._convert(raw.get(name, {}), tp, name) or tp()

    # -- decoding ---------------------------------------------------------

    def _substitute(self, value: Any, path: str) -> Any:
        if isinstance(value, str):
            return _ENV_RE.sub(lambda m: self._env_value(m[1], path), value)
        if isinstance(value, dict):
            return {k: self._substitute(v, _join(path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self._substitute(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return value

    def _env_value(self, name: str, path: str) -> str:
        if name not in self.env:
            self._error(path, f"environment variable {name} is not set")
            self._dropped.add(path)
            return ""
        return self.env[name]

    def _convert(self, raw: object, tp: type[_T], path: str) -> _T | None:
        """``raw`` decoded as ``tp``; every wrong key reported, not only the first.

        msgspec stops at the first error, so each wrong key is reported and removed
        (the struct's default stands in) and the table decoded again. None when it
        cannot be decoded at all (not a table, a required key missing).
        """
        if not isinstance(raw, dict):
            self._error(path, f"expected a table, got {type(raw).__name__}")
            self._dropped.add(path)
            return None
        table = copy.deepcopy(raw)
        for _ in range(_MAX_TABLE_ERRORS):
            try:
                return msgspec.convert(table, tp, dec_hook=_dec_hook)
            except msgspec.ValidationError as exc:
                wrong = self._error_from_msgspec(exc, tp, path)
            if not wrong or not _remove(table, wrong):
                return None
            self._dropped.add(_join(path, ".".join(wrong)))
        return None

    def _error_from_msgspec(
        self, exc: msgspec.ValidationError, tp: type, path: str
    ) -> list[str] | None:
        """Report ``exc``; return the keys (from the table's root) of the wrong value.

        None when no value can be removed to go on (a required key is missing).
        """
        message, _, where = str(exc).partition(" - at `$")
        where = where.rstrip("`")
        inner = where.lstrip(".")
        # The struct fields down to the value; a list item or map entry stands for
        # its whole list or map.
        keys = re.findall(r"\.(\w+)", re.split(r"\[", where, maxsplit=1)[0])
        unknown = re.match(r"Object contains unknown field `(.+)`", message)
        if unknown:
            self._error(_join(_join(path, inner), unknown[1]), "unknown key")
            return [*keys, unknown[1]]
        if message.startswith("Object missing required field"):
            field = message.split("`")[1]
            self._error(_join(_join(path, inner), field), "required key is missing")
            return None
        full = _join(path, inner)
        choices = _literal_choices(tp, where.lstrip("."))
        if choices and message.startswith("Invalid enum value"):
            value = message.removeprefix("Invalid enum value ").strip()
            expected = ", ".join(choices)
            self._error(full, f"unknown value {value} (expected one of: {expected})")
        else:
            self._error(full, message[0].lower() + message[1:])
        return keys

    def _sources(self, raw: object) -> dict[str, SourceConfig]:
        sources: dict[str, SourceConfig] = {}
        for name, table in self._named_tables(raw, "sources"):
            source = self._convert(table, SourceConfig, f"sources.{name}")
            if source is not None:
                verify = self._with_secret_file(source.verify, f"sources.{name}.verify")
                sources[name] = msgspec.structs.replace(source, verify=verify)
        return sources

    def _destinations(self, raw: object, defaults: DeliveryPolicy) -> dict[str, DestinationConfig]:
        destinations: dict[str, DestinationConfig] = {}
        for name, table in self._named_tables(raw, "destinations"):
            path = f"destinations.{name}"
            dest = self._convert(table, _DestinationTable, path)
            if dest is None:
                continue
            overrides = {k: getattr(dest, k) for k in _OVERRIDABLE if getattr(dest, k) is not None}
            self._overrides[name] = set(overrides)
            secret = dest.secret
            if dest.secret_file is not None:
                secret = self._read_secret_file(
                    dest.secret_file, f"{path}.secret_file", feeds=f"{path}.secret"
                )
            destinations[name] = DestinationConfig(
                name=name,
                url=dest.url,
                sources=dest.sources,
                events=dest.events,
                forward_headers=dest.forward_headers,
                headers=dest.headers,
                sign=dest.sign,
                secret=secret,
                ordered=dest.ordered,
                batch_max=dest.batch_max,
                batch_wait=dest.batch_wait,
                policy=msgspec.structs.replace(defaults, **overrides),
            )
        return destinations

    def _alerts(self, raw: object) -> AlertsConfig | None:
        alerts = self._convert(raw, AlertsConfig, "alerts")
        if alerts is None or alerts.secret_file is None:
            return alerts
        secret = self._read_secret_file(
            alerts.secret_file, "alerts.secret_file", feeds="alerts.secret"
        )
        return msgspec.structs.replace(alerts, secret=secret, secret_file=None)

    def _with_admin_token(self, admin: AdminConfig) -> AdminConfig:
        if admin.token_file is None:
            return admin
        token = self._read_secret_file(admin.token_file, "admin.token_file", feeds="admin.token")
        return msgspec.structs.replace(admin, token=token, token_file=None)

    def _with_alert_destination(self, config: Config) -> Config:
        """Alerts travel as messages of an internal source to an internal destination."""
        alerts = config.alerts
        if alerts is None:
            return config
        destination = DestinationConfig(
            name=ALERT_DESTINATION,
            url=alerts.url,
            sources=[ALERT_SOURCE],
            events=None,
            forward_headers=[],
            headers=alerts.headers,
            sign=alerts.sign,
            secret=alerts.secret,
            ordered=False,
            batch_max=1,
            batch_wait=Duration(0.05),
            policy=config.delivery,
        )
        destinations = {**config.destinations, ALERT_DESTINATION: destination}
        return msgspec.structs.replace(config, destinations=destinations)

    def _named_tables(self, raw: object, path: str) -> list[tuple[str, object]]:
        if not isinstance(raw, dict):
            self._error(path, f"expected a table of tables, got {type(raw).__name__}")
            return []
        return list(raw.items())

    def _with_secret_file(self, verify: VerifyConfig, path: str) -> VerifyConfig:
        if verify.secret_file is None:
            return verify
        secret = self._read_secret_file(
            verify.secret_file, f"{path}.secret_file", feeds=f"{path}.secrets"
        )
        return msgspec.structs.replace(verify, secrets=[*verify.secrets, secret], secret_file=None)

    def _read_secret_file(self, name: str, path: str, feeds: str | None = None) -> str:
        """The secret in file ``name``; "" when unreadable, reported at ``path``.

        ``feeds``: the key the secret stands in for, whose checks (such as "sign
        needs a secret") would only repeat the same error.
        """
        base = self.env.get("CREDENTIALS_DIRECTORY") or str(self.folder)
        file = Path(base) / name
        try:
            return file.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            self._error(path, f"cannot read secret file {str(file)!r}: {exc}")
            if feeds is not None:
                self._dropped.add(feeds)
            return ""

    # -- validation -------------------------------------------------------

    def _validate(self, config: Config, declared_sources: set[str]) -> None:
        self._validate_listen(config.server.listen, "server.listen")
        self._validate_listen(config.admin.listen, "admin.listen")
        if config.admin.token is None and config.admin.token_file is None:
            self._validate_loopback(config.admin.listen)
        for i, cidr in enumerate(config.server.trusted_proxies):
            self._validate_cidr(cidr, f"server.trusted_proxies[{i}]")
        if (config.server.tls_cert is None) != (config.server.tls_key is None):
            self._error("server.tls_cert", "tls_cert and tls_key must be set together")
        self._validate_policy(config.delivery, "delivery")
        paths: dict[str, str] = {}
        for name, source in config.sources.items():
            self._validate_source(name, source, paths)
        for name, dest in config.destinations.items():
            self._validate_destination(name, dest, declared_sources)
        if ALERT_DESTINATION in config.destinations:
            self._error(f"destinations.{ALERT_DESTINATION}", "this name is reserved for alerts")
        if ALERT_SOURCE in declared_sources:
            self._error(f"sources.{ALERT_SOURCE}", "this name is reserved for alerts")
        if config.alerts is not None:
            self._validate_alerts(config.alerts, config.delivery)
        if self.check_storage and "storage.path" not in self._dropped:
            self._check_storage(config.storage.path)

    def _validate_source(self, name: str, source: SourceConfig, paths: dict[str, str]) -> None:
        where = f"sources.{name}"
        if not source.path.startswith("/"):
            self._error(f"{where}.path", f'expected a path starting with "/", got {source.path!r}')
        if source.path in paths:
            self._error(
                f"{where}.path", f"{source.path!r} is already used by sources.{paths[source.path]}"
            )
        paths[source.path] = name
        for i, cidr in enumerate(source.allow_ips):
            self._validate_cidr(cidr, f"{where}.allow_ips[{i}]")
        for key in ("event_type", "event_id"):
            expr = getattr(source, key)
            if expr is not None and not re.match(r"^(json|header|const):.+$", expr):
                forms = '"json:<dotted.path>", "header:<Name>" or "const:<value>"'
                self._error(f"{where}.{key}", f"expected {forms}, got {expr!r}")
        if not source.methods:
            self._error(f"{where}.methods", "expected at least one method")
        self._validate_verify(source.verify, f"{where}.verify")

    def _validate_verify(self, verify: VerifyConfig, where: str) -> None:
        if verify.scheme != "none" and not verify.secrets:
            self._error(f"{where}.secrets", f'scheme "{verify.scheme}" needs at least one secret')
        if any(not s for s in verify.secrets):
            self._error(f"{where}.secrets", "a secret is empty")
        if verify.scheme == "hmac" and not verify.header:
            self._error(
                f"{where}.header", 'scheme "hmac" needs the header that carries the signature'
            )
        if verify.scheme == "standard":
            for i, secret in enumerate(verify.secrets):
                if not _is_standard_secret(secret):
                    self._error(f"{where}.secrets[{i}]", 'expected "whsec_<base64>"')
        if not self._troubled(where):
            # The scheme's own checks (templates, credential forms), on a table with
            # no error of its own; imported here because verify builds on config,
            # not the other way round.
            from hookgate import verify as verify_module

            try:
                verify_module.build_verifier(verify)
            except ValueError as exc:
                self._error(where, str(exc))

    def _validate_destination(
        self, name: str, dest: DestinationConfig, declared_sources: set[str]
    ) -> None:
        where = f"destinations.{name}"
        self._validate_url(dest.url, f"{where}.url", dest.policy.deny_networks)
        for i, source in enumerate(dest.sources):
            if source not in declared_sources:
                self._error(f"{where}.sources[{i}]", f"no source named {source!r}")
        if dest.sign != "none" and not dest.secret:
            self._error(f"{where}.secret", f'sign = "{dest.sign}" needs a secret')
        if dest.sign == "standard" and dest.secret and not _is_standard_secret(dest.secret):
            self._error(f"{where}.secret", 'expected "whsec_<base64>" for sign = "standard"')
        if dest.batch_max < 1:
            self._error(f"{where}.batch_max", f"expected an integer >= 1, got {dest.batch_max}")
        self._validate_headers(dest.headers, where)
        for i, header in enumerate(dest.forward_headers):
            if not _HEADER_NAME.match(header):
                self._error(f"{where}.forward_headers[{i}]", _bad_header_name(header))
        # Inherited values were checked (and any mistake reported) under [delivery].
        overrides = self._overrides.get(name, set())
        if "initial_backoff" in overrides:
            overrides = {*overrides, "max_backoff"}  # checked against initial_backoff
        self._validate_policy(dest.policy, where, overrides)

    def _validate_alerts(self, alerts: AlertsConfig, delivery: DeliveryPolicy) -> None:
        self._validate_url(alerts.url, "alerts.url", delivery.deny_networks)
        if alerts.sign != "none" and not alerts.secret:
            self._error("alerts.secret", f'sign = "{alerts.sign}" needs a secret')
        if alerts.sign == "standard" and alerts.secret and not _is_standard_secret(alerts.secret):
            self._error("alerts.secret", 'expected "whsec_<base64>" for sign = "standard"')
        self._validate_headers(alerts.headers, "alerts")

    def _validate_url(self, url: str, where: str, deny_networks: list[str]) -> None:
        """An http(s) URL whose host, when an IP address, is not in ``deny_networks``.

        A host name is checked when it resolves, at each connection (hookgate.outbound.egress).
        """
        if not re.match(r"^https?://[^/\s]+", url):
            self._error(where, f"expected an http:// or https:// URL, got {masked_url(url)!r}")
            return
        try:
            host = urlsplit(url).hostname or ""
        except ValueError as exc:
            self._error(where, f"expected an http:// or https:// URL: {exc}")
            return
        from hookgate.outbound import egress  # the resolver side of the same policy

        address = egress.parse_address(host)
        if address is None:
            if _is_legacy_ipv4(host):
                self._error(where, f"expected a dotted IPv4 address such as 10.0.0.1, got {host}")
            return
        network = egress.denied_by(address, _networks(deny_networks))
        if network is not None:
            self._error(
                where,
                f"address {host} is in deny_networks ({network}); to send there, "
                "leave that network out of deny_networks (in [delivery] or this destination)",
            )

    def _validate_headers(self, headers: dict[str, str], where: str) -> None:
        """Names must be HTTP tokens; values must hold no control character but tab.

        A value is never echoed: fixed headers often carry credentials.
        """
        for name, value in headers.items():
            key = f"{where}.headers.{_quoted(name)}"
            if not _HEADER_NAME.match(name):
                self._error(key, _bad_header_name(name), line_key=f"{where}.headers")
            bad = _HEADER_VALUE_BAD.search(value)
            if bad:
                self._error(
                    key,
                    f"the value holds {_describe_control(bad[0])} at offset {bad.start()}; a "
                    "header value may contain no control character but tab",
                    line_key=f"{where}.headers",
                )

    def _validate_policy(
        self, policy: DeliveryPolicy, where: str, keys: set[str] | None = None
    ) -> None:
        """Check ``policy``; only its ``keys`` when given (the others are inherited)."""
        checks: list[tuple[str, bool, str]] = [
            ("timeout", policy.timeout > 0, "a duration > 0"),
            ("max_attempts", policy.max_attempts >= 1, "an integer >= 1"),
            ("max_age", policy.max_age > 0, "a duration > 0"),
            ("initial_backoff", policy.initial_backoff > 0, "a duration > 0"),
            ("max_backoff", policy.max_backoff >= policy.initial_backoff, ">= initial_backoff"),
            ("concurrency", policy.concurrency >= 1, "an integer >= 1"),
            ("rate_limit", policy.rate_limit is None or policy.rate_limit > 0, "a number > 0"),
            ("circuit_failures", policy.circuit_failures >= 1, "an integer >= 1"),
            ("circuit_cooldown", policy.circuit_cooldown > 0, "a duration > 0"),
        ]
        for key, ok, expected in checks:
            if not ok and (keys is None or key in keys):
                self._error(f"{where}.{key}", f"expected {expected}, got {getattr(policy, key)}")
        if keys is None or "deny_networks" in keys:
            for i, cidr in enumerate(policy.deny_networks):
                self._validate_cidr(cidr, f"{where}.deny_networks[{i}]")

    def _validate_listen(self, listen: str, where: str) -> None:
        try:
            parse_listen(listen)
        except ValueError as exc:
            self._error(where, str(exc))

    def _validate_loopback(self, listen: str) -> None:
        """The admin API may run without a token only where nobody else can reach it."""
        try:
            host = parse_listen(listen)[0]
        except ValueError:
            return  # already reported as a bad admin.listen
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            self._error("admin.token", "required when admin.listen is not a loopback address")

    def _validate_cidr(self, cidr: str, where: str) -> None:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            self._error(where, f"expected an IP address or CIDR such as 10.0.0.0/8, got {cidr!r}")

    def _check_storage(self, path: str) -> None:
        """Can this user create and write the database, its -wal and -shm files?"""
        file = self.folder / path
        directory = file.parent
        problem = _unusable(directory, stat.S_ISDIR, os.W_OK | os.X_OK, "directory")
        if problem:
            self._error("storage.path", problem)
            return
        for candidate in (file, Path(f"{file}-wal"), Path(f"{file}-shm")):
            problem = _unusable(candidate, stat.S_ISREG, os.R_OK | os.W_OK, "file", missing_ok=True)
            if problem:
                self._error("storage.path", problem)

    def _resolve_paths(self, config: Config) -> Config:
        def resolve(value: str | None) -> str | None:
            return None if value is None else str(self.folder / value)

        server = msgspec.structs.replace(
            config.server,
            tls_cert=resolve(config.server.tls_cert),
            tls_key=resolve(config.server.tls_key),
        )
        storage = msgspec.structs.replace(
            config.storage, path=str(self.folder / config.storage.path)
        )
        return msgspec.structs.replace(config, server=server, storage=storage)

    def _troubled(self, prefix: str) -> bool:
        """Was an error reported, or a value left out, at ``prefix`` or under it?"""
        return any(_under(key, prefix) for key in (*self._reported, *self._dropped))

    def _error(self, key: str, message: str, line_key: str | None = None) -> None:
        """Report ``message`` at ``key``, unless it follows from a value left out there.

        ``line_key``: where to look for the line, when ``key`` is not a plain
        dotted path (a quoted header name).
        """
        if any(_under(key, dropped) or dropped.startswith(f"{key}[") for dropped in self._dropped):
            return
        line = self._line_of(line_key or key)
        at = f" (line {line})" if line else ""
        self.errors.append(f"{key}: {message}{at}")
        self._error_lines.append(line)
        self._reported.append(key)

    def _line_of(self, key: str) -> int | None:
        """Best effort: the line where the last part of ``key`` is set under its table."""
        parts = re.sub(r"\[\d+\]", "", key).split(".")
        table, leaf = parts[:-1], parts[-1]
        start = 0
        if table:
            header = re.compile(r"^\s*\[\s*" + r"\s*\.\s*".join(map(re.escape, table)) + r"\s*\]")
            start = next((i for i, ln in enumerate(self.lines) if header.match(ln)), -1)
            if start < 0:
                return None
        assign = re.compile(r"^\s*" + re.escape(leaf) + r"\s*=")
        for i in range(start, len(self.lines)):
            if i > start and self.lines[i].lstrip().startswith("["):
                break
            if assign.match(self.lines[i]):
                return i + 1
        # Not a key = value line: maybe the key is a table of its own, [a.b] or [a.b.c].
        own = re.compile(r"^\s*\[\s*" + r"\s*\.\s*".join(map(re.escape, parts)) + r"\s*[\].]")
        found = next((i + 1 for i, ln in enumerate(self.lines) if own.match(ln)), None)
        # Else a key that is not in the file (required, or inherited): its table's header.
        for depth in range(len(parts) - 1, 0, -1):
            if found is not None:
                break
            table_header = re.compile(
                r"^\s*\[\s*" + r"\s*\.\s*".join(map(re.escape, parts[:depth])) + r"\s*\]"
            )
            found = next((i + 1 for i, ln in enumerate(self.lines) if table_header.match(ln)), None)
        return found


def parse_listen(listen: str) -> tuple[str, int]:
    """Split "host:port" or "[v6]:port" into its parts."""
    match = re.match(r"^(?:\[([0-9a-fA-F:.]+)\]|([^:\[\]]*)):(\d{1,5})$", listen)
    if not match or int(match[3]) > 65535:
        raise ValueError(f'expected "host:port" or "[::]:port", got {listen!r}')
    return (match[1] or match[2] or "0.0.0.0"), int(match[3])  # noqa: S104


def _is_standard_secret(secret: str) -> bool:
    if not secret.startswith("whsec_"):
        return False
    try:
        return bool(base64.b64decode(secret.removeprefix("whsec_"), validate=True))
    except (binascii.Error, ValueError):
        return False


def _literal_choices(tp: type, dotted: str) -> tuple[str, ...]:
    """The allowed values of the Literal field at ``dotted`` under struct ``tp``."""
    current: Any = tp
    for part in filter(None, re.sub(r"\[[^\]]*\]", "", dotted).split(".")):
        hints = typing.get_type_hints(current) if isinstance(current, type) else {}
        current = _unwrap(hints.get(part))
    if typing.get_origin(current) is Literal:
        return tuple(str(c) for c in typing.get_args(current))
    return ()


def _unwrap(tp: Any) -> Any:
    """list[X] → X, X | None → X, so a path can walk through containers."""
    for _ in range(3):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if typing.get_origin(tp) is Literal or not args:
            return tp
        tp = args[-1]
    return tp


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix and key else prefix or key


def _under(key: str, prefix: str) -> bool:
    """Is ``key`` the key path ``prefix`` or one under it (a subkey, a list item)?"""
    return key == prefix or key.startswith((f"{prefix}.", f"{prefix}["))


def _remove(table: dict[str, Any], keys: list[str]) -> bool:
    """Delete ``table[keys[0]][keys[1]]...``; False when there is no such entry."""
    node: Any = table
    for key in keys[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    if not keys or not isinstance(node, dict) or keys[-1] not in node:
        return False
    del node[keys[-1]]
    return True


# RFC 9110 5.1: a field name is a token of tchar.
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# RFC 9110 5.5: no CR, LF, NUL or other control character in a value; tab is allowed.
_HEADER_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CONTROL_NAMES = {"\r": "a carriage return", "\n": "a line feed", "\x00": "a NUL"}


def _bad_header_name(name: str) -> str:
    return (
        f"{_quoted(name)} is not a valid header name "
        "(letters, digits and !#$%&'*+-.^_`|~ only, no spaces or colons)"
    )


def _describe_control(char: str) -> str:
    name = _CONTROL_NAMES.get(char, "a control character")
    return f"{name} (U+{ord(char):04X})"


def _quoted(name: str) -> str:
    """``name`` as a quoted TOML key, control characters escaped."""
    return json.dumps(name)


def _networks(cidrs: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The valid networks of ``cidrs`` (the others are reported on their own)."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            continue
    return networks


def _is_legacy_ipv4(host: str) -> bool:
    """A host such as "2852039166" or "0xa9.254.169.254", which inet_aton reads as IPv4.

    aiohttp refuses to connect to those forms, so they are an error at load time.
    """
    if not re.fullmatch(r"[0-9a-fA-FxX.]+", host) or not re.match(r"^[0-9]", host):
        return False
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return True


def _unusable(
    path: Path,
    is_kind: Callable[[int], bool],
    mode: int,
    kind: str,
    *,
    missing_ok: bool = False,
) -> str | None:
    """What keeps this user from using ``path`` as a ``kind`` with access ``mode``, if anything."""
    label = f"directory {path}" if kind == "directory" else str(path)
    try:
        status = path.stat()
    except FileNotFoundError:
        return None if missing_ok else f"{label} does not exist"
    except OSError as exc:
        return f"{label} cannot be reached: {exc.strerror}"
    if not is_kind(status.st_mode):
        return f"{path} is not a {'directory' if kind == 'directory' else 'regular file'}"
    if not os.access(path, mode):
        what = "writable" if kind == "directory" else "readable and writable"
        return f"{label} is not {what} by uid {os.getuid()}"
    return None


SECRET_KEYS = frozenset({"secrets", "secret", "token"})


def redacted(config: Config) -> dict[str, Any]:
    """The resolved config as plain data, with every secret replaced by "***"."""
    data: dict[str, Any] = msgspec.to_builtins(config, enc_hook=_plain)

    def scrub(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: _scrub_value(k, v, scrub) for k, v in node.items()}
        if isinstance(node, list):
            return [scrub(v) for v in node]
        return node

    return typing.cast(dict[str, Any], scrub(data))


def _scrub_value(key: str, value: Any, scrub: Callable[[Any], Any]) -> Any:
    if key in SECRET_KEYS:
        return _mask(value)
    if key == "headers" and isinstance(value, dict):
        # Fixed headers often carry credentials (Authorization, API keys).
        return {name: "***" for name in value}
    if key == "url" and isinstance(value, str):
        return masked_url(value)
    return scrub(value)


def masked_url(url: str) -> str:
    """``url`` with the password of any ``user:password@`` replaced by ``***``."""
    return _URL_PASSWORD.sub(r"\1***@", url)


# The password of user:password@ in a URL.
_URL_PASSWORD = re.compile(r"^(\w+://[^/:@]*:)[^/@]*@")


def _plain(value: Any) -> Any:
    if isinstance(value, Duration):
        return float(value)
    if isinstance(value, Size):
        return int(value)
    return str(value)


def _mask(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, list):
        return ["***" for _ in value]
    return "***"
