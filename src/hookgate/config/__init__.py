"""TOML config → typed, validated, frozen config.

- ``values``: durations, sizes and listen addresses, as written in the file;
- ``schema``: one msgspec Struct per table (the delivery policy declared once);
- ``loader``: the file → ``Config``, ``${ENV}``, secret files, paths, every error
  in one pass; ``checks``: what a type cannot check;
- ``locate``: key paths of msgspec's errors and the line of a key; ``report``:
  the errors found, without echoes;
- ``redact``: the config as data with its secrets masked.

Other modules import from here: ``from hookgate.config import Config``.
"""

from __future__ import annotations

from hookgate.config.loader import DEFAULT_PATH, config_path, load, load_admin
from hookgate.config.redact import SECRET_KEYS, masked_url, redacted
from hookgate.config.schema import (
    ALERT_DESTINATION,
    ALERT_SOURCE,
    DEFAULT_DENY_NETWORKS,
    POLICY_SETTINGS,
    AdminConfig,
    AlertsConfig,
    Config,
    DeliveryPolicy,
    DestinationConfig,
    LogConfig,
    Method,
    Scheme,
    ServerConfig,
    SignMode,
    SourceConfig,
    StorageConfig,
    VerifyConfig,
)
from hookgate.config.values import Duration, Size, parse_duration, parse_listen, parse_size

__all__ = [
    "ALERT_DESTINATION",
    "ALERT_SOURCE",
    "DEFAULT_DENY_NETWORKS",
    "DEFAULT_PATH",
    "POLICY_SETTINGS",
    "SECRET_KEYS",
    "AdminConfig",
    "AlertsConfig",
    "Config",
    "DeliveryPolicy",
    "DestinationConfig",
    "Duration",
    "LogConfig",
    "Method",
    "Scheme",
    "ServerConfig",
    "SignMode",
    "Size",
    "SourceConfig",
    "StorageConfig",
    "VerifyConfig",
    "config_path",
    "load",
    "load_admin",
    "masked_url",
    "parse_duration",
    "parse_listen",
    "parse_size",
    "redacted",
]
