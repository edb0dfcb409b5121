"""TOML config → typed, validated, frozen config.

msgspec decodes and type-checks each table; this module adds what msgspec cannot
know: durations and sizes with units, ``${ENV}`` substitution, ``secret_file``,
relative paths, cross-references, and error messages that name the key path.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import ipaddress
import os
import re
import tomllib
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

DEFAULT_PATH = "/etc/hookgate/hookgate.toml"

Scheme = Literal[
    "none", "hmac", "standard", "github", "stripe", "shopify", "slack", "gitlab", "basic"
]
SignMode = Literal["none", "standard", "hmac-sha256"]
Method = Literal["POST", "PUT", "PATCH"]
_T = TypeVar("_T")


class ConfigError(Exception):
    """The configuration is invalid."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


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


def load(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read, substitute, decode and validate the config file at ``path``."""
    env = os.environ if environ is None else environ
    text, raw = _read_toml(path)
    return _Loader(path, text, env).build(raw)


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


class _Loader:
    def __init__(self, path: Path, text: str, env: Mapping[str, str]) -> None:
        self.path = path
        self.folder = path.resolve().parent
        self.lines = text.splitlines()
        self.env = env
        self.errors: list[str] = []

    def build(self, raw: dict[str, Any]) -> Config:
        raw = self._substitute(raw, "")
        for key in raw.keys() - {*_SECTIONS, "sources", "destinations", "alerts"}:
            self._error(key, "unknown key")
        tables = {
            name: self._convert(raw.get(name, {}), tp, name) for name, tp in _SECTIONS.items()
        }
        sources = self._sources(raw.get("sources", {}))
        defaults = typing.cast(DeliveryPolicy | None, tables["delivery"])
        destinations = self._destinations(raw.get("destinations", {}), defaults)
        alerts = self._alerts(raw["alerts"]) if "alerts" in raw else None
        if self.errors:
            raise ConfigError(self.errors)
        config = Config(
            path=self.path.resolve(),
            server=typing.cast(ServerConfig, tables["server"]),
            admin=typing.cast(AdminConfig, tables["admin"]),
            storage=typing.cast(StorageConfig, tables["storage"]),
            log=typing.cast(LogConfig, tables["log"]),
            delivery=typing.cast(DeliveryPolicy, tables["delivery"]),
            sources=sources,
            destinations=destinations,
            alerts=alerts,
        )
        self._validate(config)
        if self.errors:
            raise ConfigError(self.errors)
        return self._with_alert_destination(self._resolve_paths(config))

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
            return ""
        return self.env[name]

    def _convert(self, raw: object, tp: type[_T], path: str) -> _T | None:
        if not isinstance(raw, dict):
            self._error(path, f"expected a table, got {type(raw).__name__}")
            return None
        try:
            return msgspec.convert(raw, tp, dec_hook=_dec_hook)
        except msgspec.ValidationError as exc:
            self._error_from_msgspec(exc, tp, path)
            return None

    def _error_from_msgspec(self, exc: msgspec.ValidationError, tp: type, path: str) -> None:
        message, _, where = str(exc).partition(" - at `$")
        where = where.rstrip("`")
        inner = where.lstrip(".")
        unknown = re.match(r"Object contains unknown field `(.+)`", message)
        if unknown:
            self._error(_join(_join(path, inner), unknown[1]), "unknown key")
            return
        if message.startswith("Object missing required field"):
            field = message.split("`")[1]
            self._error(_join(_join(path, inner), field), "required key is missing")
            return
        full = _join(path, inner)
        choices = _literal_choices(tp, where.lstrip("."))
        if choices and message.startswith("Invalid enum value"):
            value = message.removeprefix("Invalid enum value ").strip()
            expected = ", ".join(choices)
            self._error(full, f"unknown value {value} (expected one of: {expected})")
            return
        self._error(full, message[0].lower() + message[1:])

    def _sources(self, raw: object) -> dict[str, SourceConfig]:
        sources: dict[str, SourceConfig] = {}
        for name, table in self._named_tables(raw, "sources"):
            source = self._convert(table, SourceConfig, f"sources.{name}")
            if source is not None:
                verify = self._with_secret_file(source.verify, f"sources.{name}.verify")
                sources[name] = msgspec.structs.replace(source, verify=verify)
        return sources

    def _destinations(
        self, raw: object, defaults: DeliveryPolicy | None
    ) -> dict[str, DestinationConfig]:
        destinations: dict[str, DestinationConfig] = {}
        for name, table in self._named_tables(raw, "destinations"):
            path = f"destinations.{name}"
            dest = self._convert(table, _DestinationTable, path)
            if dest is None or defaults is None:
                continue
            overrides = {k: getattr(dest, k) for k in _OVERRIDABLE if getattr(dest, k) is not None}
            secret = dest.secret
            if dest.secret_file is not None:
                secret = self._read_secret_file(dest.secret_file, f"{path}.secret_file")
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
        secret = self._read_secret_file(alerts.secret_file, "alerts.secret_file")
        return msgspec.structs.replace(alerts, secret=secret, secret_file=None)

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
        secret = self._read_secret_file(verify.secret_file, f"{path}.secret_file")
        return msgspec.structs.replace(verify, secrets=[*verify.secrets, secret], secret_file=None)

    def _read_secret_file(self, name: str, path: str) -> str:
        base = self.env.get("CREDENTIALS_DIRECTORY") or str(self.folder)
        file = Path(base) / name
        try:
            return file.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            self._error(path, f"cannot read secret file {str(file)!r}: {exc}")
            return ""

    # -- validation -------------------------------------------------------

    def _validate(self, config: Config) -> None:
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
            self._validate_destination(name, dest, config.sources)
        if ALERT_DESTINATION in config.destinations:
            self._error(f"destinations.{ALERT_DESTINATION}", "this name is reserved for alerts")
        if ALERT_SOURCE in config.sources:
            self._error(f"sources.{ALERT_SOURCE}", "this name is reserved for alerts")
        if config.alerts is not None:
            self._validate_alerts(config.alerts)

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
        if not self.errors:
            # The scheme's own checks (templates, credential forms); imported here
            # because verify builds on config, not the other way round.
            from hookgate import verify as verify_module

            try:
                verify_module.build_verifier(verify)
            except ValueError as exc:
                self._error(where, str(exc))

    def _validate_destination(
        self, name: str, dest: DestinationConfig, sources: dict[str, SourceConfig]
    ) -> None:
        where = f"destinations.{name}"
        if not re.match(r"^https?://[^/\s]+", dest.url):
            self._error(f"{where}.url", f"expected an http:// or https:// URL, got {dest.url!r}")
        for i, source in enumerate(dest.sources):
            if source not in sources:
                self._error(f"{where}.sources[{i}]", f"no source named {source!r}")
        if dest.sign != "none" and not dest.secret:
            self._error(f"{where}.secret", f'sign = "{dest.sign}" needs a secret')
        if dest.sign == "standard" and dest.secret and not _is_standard_secret(dest.secret):
            self._error(f"{where}.secret", 'expected "whsec_<base64>" for sign = "standard"')
        if dest.batch_max < 1:
            self._error(f"{where}.batch_max", f"expected an integer >= 1, got {dest.batch_max}")
        self._validate_policy(dest.policy, where)

    def _validate_alerts(self, alerts: AlertsConfig) -> None:
        if not re.match(r"^https?://[^/\s]+", alerts.url):
            self._error("alerts.url", f"expected an http:// or https:// URL, got {alerts.url!r}")
        if alerts.sign != "none" and not alerts.secret:
            self._error("alerts.secret", f'sign = "{alerts.sign}" needs a secret')
        if alerts.sign == "standard" and alerts.secret and not _is_standard_secret(alerts.secret):
            self._error("alerts.secret", 'expected "whsec_<base64>" for sign = "standard"')

    def _validate_policy(self, policy: DeliveryPolicy, where: str) -> None:
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
            if not ok:
                self._error(f"{where}.{key}", f"expected {expected}, got {getattr(policy, key)}")

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
        admin = config.admin
        if admin.token_file is not None:
            token = self._read_secret_file(admin.token_file, "admin.token_file")
            admin = msgspec.structs.replace(admin, token=token, token_file=None)
        if self.errors:
            raise ConfigError(self.errors)
        return msgspec.structs.replace(config, server=server, storage=storage, admin=admin)

    def _error(self, key: str, message: str) -> None:
        line = self._line_of(key)
        at = f" (line {line})" if line else ""
        self.errors.append(f"{key}: {message}{at}")

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
        return next((i + 1 for i, ln in enumerate(self.lines) if own.match(ln)), None)


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
