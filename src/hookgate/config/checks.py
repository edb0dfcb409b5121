"""The checks a type cannot make: values, and keys against each other.

Run on the decoded config before paths are resolved; every problem goes to the
``Report``, which leaves out those that only repeat an error already shown.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import stat
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yarl

from hookgate import addresses, filters, providers, transform
from hookgate.config.redact import masked_url
from hookgate.config.report import Report
from hookgate.config.schema import (
    ALERT_DESTINATION,
    ALERT_SOURCE,
    CIDR,
    AlertsConfig,
    Config,
    DeliveryPolicy,
    DestinationConfig,
    Rule,
    ServerConfig,
    SourceConfig,
    StorageConfig,
    VerifyConfig,
    policy_rules,
    table_rules,
)
from hookgate.config.values import parse_listen

# RFC 9110 5.1: a field name is a token of tchar.
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# RFC 9110 5.5: no CR, LF, NUL or other control character in a value; tab is allowed.
_HEADER_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CONTROL_NAMES = {"\r": "a carriage return", "\n": "a line feed", "\x00": "a NUL"}
_EVENT_EXPRESSION = re.compile(r"^(json|header|const):.+$")


def check(
    config: Config,
    report: Report,
    *,
    declared_sources: set[str],
    overrides: Mapping[str, set[str]],
    storage_folder: Path | None = None,
) -> None:
    """Report what is wrong with ``config``.

    ``declared_sources``: every source the file names, decoded or not;
    ``overrides``: per destination, the policy settings it sets itself (the others
    were checked under [delivery]); ``storage_folder``: check that storage.path can
    be used there (``check-config``).
    """
    _check_server(config, report)
    _check_policy(report, config.delivery, "delivery")
    paths: dict[str, str] = {}
    for name, source in config.sources.items():
        _check_source(report, name, source, paths)
    for name, dest in config.destinations.items():
        _check_destination(report, name, dest, declared_sources, overrides.get(name, set()))
    if ALERT_DESTINATION in config.destinations:
        report.error(f"destinations.{ALERT_DESTINATION}", "this name is reserved for alerts")
    if ALERT_SOURCE in declared_sources:
        report.error(f"sources.{ALERT_SOURCE}", "this name is reserved for alerts")
    if config.alerts is not None:
        _check_alerts(report, config.alerts, config.delivery)
    _check_storage_table(report, config.storage)
    if storage_folder is not None and config.storage.url is None:
        if not report.dropped("storage.path"):
            _check_storage(report, storage_folder / config.storage.path)


def _check_server(config: Config, report: Report) -> None:
    """The listeners, trusted proxies and TLS files; the admin token where it is needed."""
    _check_listen(report, config.server.listen, "server.listen")
    _check_listen(report, config.admin.listen, "admin.listen")
    if config.admin.token is None and config.admin.token_file is None:
        _check_loopback(report, config.admin.listen)
    _check_items(report, CIDR, config.server.trusted_proxies, "server.trusted_proxies")
    if (config.server.tls_cert is None) != (config.server.tls_key is None):
        report.error("server.tls_cert", "tls_cert and tls_key must be set together")
    for name, rule in table_rules(ServerConfig):
        value = getattr(config.server, name)
        if not rule.holds(value, config.server):
            report.error(f"server.{name}", f"expected {rule.expected}, got {value}")


def _check_items(report: Report, rule: Rule, values: Iterable[object], where: str) -> None:
    for i, value in enumerate(values):
        if not rule.holds(value, None):
            report.error(f"{where}[{i}]", f"expected {rule.expected}, got {value!r}")


def _check_policy(
    report: Report, policy: DeliveryPolicy, where: str, keys: set[str] | None = None
) -> None:
    """Each setting of ``policy`` against its rule; only ``keys`` and the settings
    that depend on them when given (the others are inherited, checked already)."""
    for name, rule in policy_rules():
        if keys is not None and name not in keys and keys.isdisjoint(rule.also_after):
            continue
        value = getattr(policy, name)
        if rule.each:
            _check_items(report, rule, value, f"{where}.{name}")
        elif not rule.holds(value, policy):
            report.error(f"{where}.{name}", f"expected {rule.expected}, got {value}")


def _check_source(report: Report, name: str, source: SourceConfig, paths: dict[str, str]) -> None:
    where = f"sources.{name}"
    if not source.path.startswith("/"):
        report.error(f"{where}.path", f'expected a path starting with "/", got {source.path!r}')
    if source.path in paths:
        report.error(
            f"{where}.path", f"{source.path!r} is already used by sources.{paths[source.path]}"
        )
    paths[source.path] = name
    _check_items(report, CIDR, source.allow_ips, f"{where}.allow_ips")
    for key in ("event_type", "event_id"):
        expr = getattr(source, key)
        if expr is not None and not _EVENT_EXPRESSION.match(expr):
            forms = '"json:<dotted.path>", "header:<Name>" or "const:<value>"'
            report.error(f"{where}.{key}", f"expected {forms}, got {expr!r}")
    if not source.methods:
        report.error(f"{where}.methods", "expected at least one method")
    if source.expect_every is not None and source.expect_every <= 0:
        report.error(f"{where}.expect_every", f"expected a duration > 0, got {source.expect_every}")
    if source.public_url is not None:
        _check_public_url(report, source.public_url, f"{where}.public_url")
    _check_verify(report, source.verify, f"{where}.verify")


def _check_public_url(report: Report, url: str, where: str) -> None:
    """The URL a provider posts to, as it sees it: absolute, without query or fragment
    (the request's own query string is appended)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        report.error(where, f"expected an absolute http(s) URL, got {url!r}")
    elif parts.query or parts.fragment or "?" in url or "#" in url:
        report.error(where, f"expected a URL without query or fragment, got {url!r}")


def _check_verify(report: Report, verify: VerifyConfig, where: str) -> None:
    if providers.get(verify.scheme).needs_secret and not verify.secrets:
        report.error(f"{where}.secrets", f'scheme "{verify.scheme}" needs at least one secret')
    if any(not s for s in verify.secrets):
        report.error(f"{where}.secrets", "a secret is empty")
    for i, key in enumerate(verify.public_keys):
        if "PRIVATE KEY" in key:
            # Only `hookgate send` signs with one; the daemon never needs it, and a
            # config is shown (check-config, the API) with only its secrets masked.
            report.error(f"{where}.public_keys[{i}]", "expected a public key, got a private key")
    if verify.scheme == "hmac" and not verify.header:
        report.error(f"{where}.header", 'scheme "hmac" needs the header that carries the signature')
    if verify.scheme == "standard":
        for i, secret in enumerate(verify.secrets):
            if not _is_standard_secret(secret):
                report.error(f"{where}.secrets[{i}]", 'expected "whsec_<base64>"')
    if not report.troubled(where):
        # The provider's own checks (templates, credential forms), on a table with
        # no error of its own.
        try:
            providers.get(verify.scheme).verifier(verify)
        except ValueError as exc:
            report.error(where, str(exc))


def _check_destination(
    report: Report, name: str, dest: DestinationConfig, declared: set[str], overrides: set[str]
) -> None:
    where = f"destinations.{name}"
    _check_url(report, dest.url, f"{where}.url", dest.policy.deny_networks)
    for i, source in enumerate(dest.sources):
        if source not in declared:
            report.error(f"{where}.sources[{i}]", f"no source named {source!r}")
    _check_signing(report, dest.sign, dest.secret, where)
    if dest.batch_max < 1:
        report.error(f"{where}.batch_max", f"expected an integer >= 1, got {dest.batch_max}")
    _check_headers(report, dest.headers, where)
    for i, header in enumerate(dest.forward_headers):
        if not _HEADER_NAME.match(header):
            report.error(f"{where}.forward_headers[{i}]", _bad_header_name(header))
    _check_filter(report, dest.filter, f"{where}.filter")
    _check_transform(report, dest, where)
    # Inherited values were checked (and any mistake reported) under [delivery].
    _check_policy(report, dest.policy, where, overrides)


def _check_filter(report: Report, spec: dict[str, Any] | None, where: str) -> None:
    """A filter compiles; an error names the key inside it (the line: the filter's own)."""
    if spec is None:
        return
    try:
        filters.compile_filter(spec)
    except filters.FilterError as exc:
        report.error(_join_filter_path(where, exc.path), exc.message, line_key=where)


def _join_filter_path(where: str, inner: str) -> str:
    if not inner:
        return where
    return f"{where}{inner}" if inner.startswith("[") else f"{where}.{inner}"


def _check_transform(report: Report, dest: DestinationConfig, where: str) -> None:
    if dest.transform is not None:
        problem = transform.compile_error(dest.transform)
        if problem is not None:
            report.error(f"{where}.transform", problem)
        if dest.batch_max > 1:
            report.error(
                f"{where}.transform", "a transform cannot be combined with batch_max > 1 (yet)"
            )
    if dest.transform_timeout <= 0:
        report.error(
            f"{where}.transform_timeout", f"expected a duration > 0, got {dest.transform_timeout}"
        )
    if dest.transform_max_size < 1:
        report.error(
            f"{where}.transform_max_size", f"expected a size >= 1, got {dest.transform_max_size}"
        )


def _check_alerts(report: Report, alerts: AlertsConfig, delivery: DeliveryPolicy) -> None:
    _check_url(report, alerts.url, "alerts.url", delivery.deny_networks)
    _check_signing(report, alerts.sign, alerts.secret, "alerts")
    _check_headers(report, alerts.headers, "alerts")
    for name, rule in table_rules(AlertsConfig):
        value = getattr(alerts, name)
        if not rule.holds(value, alerts):
            report.error(f"alerts.{name}", f"expected {rule.expected}, got {value}")


def _check_signing(report: Report, sign: str, secret: str | None, where: str) -> None:
    """The outbound signing secret of a destination (or of the alerts) at ``where``."""
    if sign != "none" and not secret:
        report.error(f"{where}.secret", f'sign = "{sign}" needs a secret')
    if sign == "standard" and secret and not _is_standard_secret(secret):
        report.error(f"{where}.secret", 'expected "whsec_<base64>" for sign = "standard"')


def _is_standard_secret(secret: str) -> bool:
    try:
        providers.standard_secret_key(secret)
    except ValueError:
        return False
    return True


def _check_url(report: Report, url: str, where: str, deny_networks: list[str]) -> None:
    """An http(s) URL whose host, when an IP address, is not in ``deny_networks``.

    A host name is checked when it resolves, at each connection (hookgate.outbound.egress).
    """
    if not re.match(r"^https?://[^/\s]+", url):
        report.error(where, f"expected an http:// or https:// URL, got {masked_url(url)!r}")
        return
    # The client's parser drops tabs and line breaks, and what follows a space in the
    # host part: it would send somewhere else than written. A space in the path or
    # the query is sent encoded, as it always was.
    authority = url.split("//", 1)[1].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if re.search(r"[^\S ]", url) or " " in authority:
        report.error(where, "expected a URL without tabs or line breaks, nor spaces in the host")
        return
    try:
        # The delivery client's parser (outbound/http1.py: Endpoint.of), so that what
        # passes here is what it can send to.
        parsed = yarl.URL(url)
        host, port = parsed.raw_host or "", parsed.explicit_port
    except ValueError as exc:
        report.error(where, f"expected an http:// or https:// URL: {exc}")
        return
    if port == 0:
        report.error(where, "expected a port from 1 to 65535, got 0")
        return
    address = addresses.parse_address(host)
    if address is None:
        if _is_legacy_ipv4(host):
            report.error(where, f"expected a dotted IPv4 address such as 10.0.0.1, got {host}")
        return
    network = addresses.network_holding(address, _networks(deny_networks))
    if network is not None:
        report.error(
            where,
            f"address {host} is in deny_networks ({network}); to send there, "
            "leave that network out of deny_networks (in [delivery] or this destination)",
        )


def _check_headers(report: Report, headers: dict[str, str], where: str) -> None:
    """Names must be HTTP tokens; values must hold no control character but tab.

    A value is never echoed: fixed headers often carry credentials.
    """
    for name, value in headers.items():
        key = f"{where}.headers.{_quoted(name)}"
        if not _HEADER_NAME.match(name):
            report.error(key, _bad_header_name(name), line_key=f"{where}.headers")
        bad = _HEADER_VALUE_BAD.search(value)
        if bad:
            report.error(
                key,
                f"the value holds {_describe_control(bad[0])} at offset {bad.start()}; a "
                "header value may contain no control character but tab",
                line_key=f"{where}.headers",
            )


def _check_listen(report: Report, listen: str, where: str) -> None:
    try:
        parse_listen(listen)
    except ValueError as exc:
        report.error(where, str(exc))


def _check_loopback(report: Report, listen: str) -> None:
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
        report.error("admin.token", "required when admin.listen is not a loopback address")


def _check_storage_table(report: Report, storage: StorageConfig) -> None:
    """The PostgreSQL keys: a postgresql:// URL, one place for the password, a lease."""
    if storage.url is not None:
        scheme = storage.url.partition("://")[0]
        if scheme not in ("postgresql", "postgres"):
            report.error(
                "storage.url",
                f"expected a postgresql://user@host:port/database URL, got {scheme!r}",
            )
        if storage.password is not None and masked_url(storage.url) != storage.url:
            report.error("storage.password", "the URL carries a password already: set it once")
    elif storage.password is not None:
        report.error("storage.password", "only used with storage.url (PostgreSQL)")
    if storage.lease < 1:
        report.error("storage.lease", "must be at least 1s")


def _check_storage(report: Report, file: Path) -> None:
    """Can this user create and write the database, its -wal and -shm files?"""
    problem = _unusable(file.parent, stat.S_ISDIR, os.W_OK | os.X_OK, "directory")
    if problem:
        report.error("storage.path", problem)
        return
    for candidate in (file, Path(f"{file}-wal"), Path(f"{file}-shm")):
        problem = _unusable(candidate, stat.S_ISREG, os.R_OK | os.W_OK, "file", missing_ok=True)
        if problem:
            report.error("storage.path", problem)


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


def _networks(cidrs: list[str]) -> list[addresses.IPNetwork]:
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
