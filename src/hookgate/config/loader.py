"""TOML file → typed, validated, frozen ``Config``, every error found in one pass.

The loader substitutes ``${ENV}``, decodes each table with msgspec (reporting every
wrong key of a table, not only the first), reads secret files, applies ``[delivery]``
to each destination, runs the checks across keys (``checks``) and resolves relative
paths against the config file's folder.
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from hookgate import filters, providers
from hookgate.config import checks
from hookgate.config.locate import explain, join
from hookgate.config.report import Report
from hookgate.config.schema import (
    ALERT_DESTINATION,
    ALERT_SOURCE,
    FILE_TABLES,
    POLICY_SETTINGS,
    AdminConfig,
    AlertsConfig,
    Config,
    DeliveryPolicy,
    DestinationConfig,
    DestinationTable,
    LogConfig,
    ServerConfig,
    SourceConfig,
    StorageConfig,
    VerifyConfig,
)
from hookgate.config.values import Duration, dec_hook
from hookgate.errors import ConfigError

DEFAULT_PATH = "/etc/hookgate/hookgate.toml"

_T = TypeVar("_T")
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# The keys a file may hold at its top: each table's first part.
_TOP_KEYS = frozenset(table.split(".")[0] for table in FILE_TABLES)
# At most this many errors are collected from one table before giving up on it.
_MAX_TABLE_ERRORS = 50


def config_path(explicit: str | None) -> Path:
    """The config file to read: ``explicit``, else $HOOKGATE_CONFIG, else the default."""
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
    return Loader(path, text, env, check_storage=check_storage).build(raw)


def load_admin(path: Path, environ: Mapping[str, str] | None = None) -> AdminConfig:
    """Only the [admin] table: what the admin commands need to reach the API.

    The CLI runs in operators' shells, which lack the service's other secrets
    (${ENV} values, LoadCredential= files): those tables are not resolved here.
    """
    env = os.environ if environ is None else environ
    text, raw = _read_toml(path)
    loader = Loader(path, text, env)
    admin = loader.admin(raw)
    if loader.report.errors:
        raise ConfigError(loader.report.errors)
    return admin


def _read_toml(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc.strerror}"]) from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from None


class Loader:
    """One pass over one file's tables that collects every error it can find.

    A value that is wrong is reported and left out (``Report``), so that the rest
    of its table can still be decoded and checked.
    """

    def __init__(
        self, path: Path, text: str, env: Mapping[str, str], *, check_storage: bool = False
    ) -> None:
        self.path = path
        self.folder = path.resolve().parent
        self.env = env
        self.check_storage = check_storage
        self.report = Report(text)
        # Per destination: the [delivery] settings it sets itself.
        self.overrides: dict[str, set[str]] = {}

    def build(self, raw: dict[str, Any]) -> Config:
        """The whole file's ``raw`` tables as a ``Config``; ConfigError with every error."""
        raw = self._substitute(raw, "")
        for key in sorted(raw.keys() - _TOP_KEYS):
            self.report.error(key, "unknown key")
        delivery = self._section(raw, DeliveryPolicy, "delivery")
        sources = self._sources(raw.get("sources", {}))
        config = Config(
            path=self.path.resolve(),
            server=self._section(raw, ServerConfig, "server"),
            admin=self._admin_table(raw),
            storage=self._storage_table(raw),
            log=self._section(raw, LogConfig, "log"),
            delivery=delivery,
            sources=sources,
            destinations=self._destinations(raw.get("destinations", {}), delivery),
            alerts=self._alerts(raw["alerts"]) if "alerts" in raw else None,
        )
        # Destinations are checked against every source the file names, decoded or not.
        declared = raw.get("sources")
        checks.check(
            config,
            self.report,
            declared_sources=set(declared) if isinstance(declared, dict) else set(),
            overrides=self.overrides,
            storage_folder=self.folder if self.check_storage else None,
        )
        if self.report.errors:
            raise ConfigError(self.report.in_file_order())
        return _with_alert_destination(_resolve_paths(config, self.folder))

    def admin(self, raw: dict[str, Any]) -> AdminConfig:
        """Only the [admin] table of the file's ``raw`` tables, ${ENV} and token_file
        resolved; the other tables are not read. Errors go to ``report``."""
        return self._admin_table({"admin": self._substitute(raw.get("admin", {}), "admin")})

    # -- decoding ---------------------------------------------------------

    def _section(self, raw: dict[str, Any], tp: type[_T], name: str) -> _T:
        """A top-level table, or its defaults when it cannot be decoded (reported)."""
        return self._convert(raw.get(name, {}), tp, name) or tp()

    def _substitute(self, value: Any, path: str) -> Any:
        if isinstance(value, str):
            return _ENV_RE.sub(lambda m: self._env_value(m[1], path), value)
        if isinstance(value, dict):
            return {k: self._substitute(v, join(path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self._substitute(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return value

    def _env_value(self, name: str, path: str) -> str:
        if name not in self.env:
            self.report.error(path, f"environment variable {name} is not set")
            self.report.drop(path)
            return ""
        return self.env[name]

    def _convert(self, raw: object, tp: type[_T], path: str) -> _T | None:
        """``raw`` decoded as ``tp``; every wrong key reported, not only the first.

        msgspec stops at the first error, so each wrong key is reported and removed
        (the struct's default stands in) and the table decoded again. None when it
        cannot be decoded at all (not a table, a required key missing).
        """
        if not isinstance(raw, dict):
            self.report.error(path, f"expected a table, got {type(raw).__name__}")
            self.report.drop(path)
            return None
        table = copy.deepcopy(raw)
        for _ in range(_MAX_TABLE_ERRORS):
            try:
                return msgspec.convert(table, tp, dec_hook=dec_hook)
            except msgspec.ValidationError as exc:
                problem = explain(exc, tp, path)
            self.report.error(problem.key, problem.message)
            if not problem.wrong or not _remove(table, problem.wrong):
                return None
            self.report.drop(join(path, ".".join(problem.wrong)))
        return None

    def _named_tables(self, raw: object, path: str) -> list[tuple[str, object]]:
        if not isinstance(raw, dict):
            self.report.error(path, f"expected a table of tables, got {type(raw).__name__}")
            return []
        return list(raw.items())

    def _sources(self, raw: object) -> dict[str, SourceConfig]:
        sources: dict[str, SourceConfig] = {}
        for name, table in self._named_tables(raw, "sources"):
            source = self._convert(table, SourceConfig, f"sources.{name}")
            if source is not None and isinstance(table, dict):
                source = self._with_provider(source, table, f"sources.{name}")
                verify = self._with_secret_file(source.verify, f"sources.{name}.verify")
                sources[name] = msgspec.structs.replace(source, verify=verify)
        return sources

    def _with_provider(
        self, source: SourceConfig, table: dict[str, Any], path: str
    ) -> SourceConfig:
        """``provider = NAME``: the provider's scheme, and its recommended ``allow_ips``
        and ``tolerance`` where the source's ``table`` sets none (explicit keys win)."""
        if source.provider is None:
            return source
        provider = providers.get(source.provider)
        verify_table = table.get("verify")
        explicit = set(verify_table) if isinstance(verify_table, dict) else set()
        verify = source.verify
        if "scheme" in explicit and verify.scheme != provider.name:
            self.report.error(
                f"{path}.verify.scheme",
                f'"{verify.scheme}" contradicts provider = "{provider.name}" (drop one of them)',
            )
            return source
        verify = msgspec.structs.replace(verify, scheme=provider.name)
        if "tolerance" not in explicit and provider.tolerance is not None:
            verify = msgspec.structs.replace(verify, tolerance=Duration(provider.tolerance))
        allow_ips = source.allow_ips if "allow_ips" in table else list(provider.ip_ranges)
        return msgspec.structs.replace(source, verify=verify, allow_ips=allow_ips)

    def _destinations(self, raw: object, defaults: DeliveryPolicy) -> dict[str, DestinationConfig]:
        destinations: dict[str, DestinationConfig] = {}
        for name, table in self._named_tables(raw, "destinations"):
            path = f"destinations.{name}"
            dest = self._convert(table, DestinationTable, path)
            if dest is None:
                continue
            # The policy settings this destination sets; the others come from [delivery].
            overrides = {
                key: value for key in POLICY_SETTINGS if (value := getattr(dest, key)) is not None
            }
            self.overrides[name] = set(overrides)
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
                filter=self._filter(dest.filter, f"{path}.filter"),
                transform=dest.transform,
                transform_timeout=dest.transform_timeout,
                transform_max_size=dest.transform_max_size,
            )
        return destinations

    def _filter(self, written: dict[str, Any] | str | None, path: str) -> dict[str, Any] | None:
        """A destination's filter as a table (JSON text parsed); checked in ``checks``."""
        try:
            parsed = filters.parse(written)
        except filters.FilterError as exc:
            self.report.error(path, exc.message)
            self.report.drop(path)
            return None
        if parsed is None or isinstance(parsed, dict):
            return parsed
        self.report.error(path, "expected a table, or a JSON object as text")
        self.report.drop(path)
        return None

    def _alerts(self, raw: object) -> AlertsConfig | None:
        alerts = self._convert(raw, AlertsConfig, "alerts")
        if alerts is None or alerts.secret_file is None:
            return alerts
        secret = self._read_secret_file(
            alerts.secret_file, "alerts.secret_file", feeds="alerts.secret"
        )
        return msgspec.structs.replace(alerts, secret=secret, secret_file=None)

    def _storage_table(self, raw: dict[str, Any]) -> StorageConfig:
        storage = self._section(raw, StorageConfig, "storage")
        if storage.secret_file is None:
            return storage
        password = self._read_secret_file(
            storage.secret_file, "storage.secret_file", feeds="storage.password"
        )
        return msgspec.structs.replace(storage, password=password, secret_file=None)

    def _admin_table(self, raw: dict[str, Any]) -> AdminConfig:
        admin = self._section(raw, AdminConfig, "admin")
        if admin.token_file is None:
            return admin
        token = self._read_secret_file(admin.token_file, "admin.token_file", feeds="admin.token")
        return msgspec.structs.replace(admin, token=token, token_file=None)

    def _with_secret_file(self, verify: VerifyConfig, path: str) -> VerifyConfig:
        if verify.handshake_secret_file is not None:
            verify = self._with_enrolled_secret(verify, path)
        if verify.secret_file is None:
            return verify
        secret = self._read_secret_file(
            verify.secret_file, f"{path}.secret_file", feeds=f"{path}.secrets"
        )
        return msgspec.structs.replace(verify, secrets=[*verify.secrets, secret], secret_file=None)

    def _with_enrolled_secret(self, verify: VerifyConfig, path: str) -> VerifyConfig:
        """handshake_secret_file made absolute (against the config's folder), and the
        secret a handshake recorded there, if any, added to ``secrets``."""
        file = self.folder / (verify.handshake_secret_file or "")
        verify = msgspec.structs.replace(verify, handshake_secret_file=str(file))
        try:
            secret = file.read_text(encoding="utf-8").rstrip("\r\n")
        except FileNotFoundError:
            return verify  # not recorded yet: the first handshake will
        except (OSError, UnicodeDecodeError) as exc:
            self.report.error(f"{path}.handshake_secret_file", f"cannot read {str(file)!r}: {exc}")
            return verify
        return msgspec.structs.replace(verify, secrets=[*verify.secrets, secret])

    def _read_secret_file(self, name: str, path: str, feeds: str) -> str:
        """The secret in file ``name``; "" when unreadable, reported at ``path``.

        ``feeds``: the key the secret stands in for, whose checks (such as "sign
        needs a secret") would only repeat the same error.
        """
        base = self.env.get("CREDENTIALS_DIRECTORY") or str(self.folder)
        file = Path(base) / name
        try:
            return file.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            self.report.error(path, f"cannot read secret file {str(file)!r}: {exc}")
            self.report.drop(feeds)
            return ""


def _remove(table: dict[str, Any], keys: list[str]) -> bool:
    """Delete ``table[keys[0]][keys[1]]...``; False when there is no such entry."""
    node: Any = table
    for key in keys[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    if not keys or not isinstance(node, dict) or keys[-1] not in node:
        return False
    del node[keys[-1]]
    return True


def _resolve_paths(config: Config, folder: Path) -> Config:
    """Relative storage and TLS paths made absolute against the config's ``folder``."""

    def resolve(value: str | None) -> str | None:
        return None if value is None else str(folder / value)

    server = msgspec.structs.replace(
        config.server,
        tls_cert=resolve(config.server.tls_cert),
        tls_key=resolve(config.server.tls_key),
    )
    storage = config.storage
    if storage.url is None:
        storage = msgspec.structs.replace(storage, path=str(folder / storage.path))
    return msgspec.structs.replace(config, server=server, storage=storage)


def _with_alert_destination(config: Config) -> Config:
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
