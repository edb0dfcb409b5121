"""Every config key is documented: in config.example.toml and in the README."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from hookgate import config

ROOT = Path(__file__).resolve().parents[2]
TABLES: dict[str, type[msgspec.Struct]] = {
    "server": config.ServerConfig,
    "admin": config.AdminConfig,
    "storage": config.StorageConfig,
    "log": config.LogConfig,
    "delivery": config.DeliveryPolicy,
    "sources.<name>": config.SourceConfig,
    "sources.<name>.verify": config.VerifyConfig,
    "destinations.<name>": config._DestinationTable,
    "alerts": config.AlertsConfig,
}
KEYS = [(table, key) for table, struct in TABLES.items() for key in struct.__struct_fields__]


@pytest.mark.parametrize(("table", "key"), KEYS)
def test_key_is_in_the_example_config(table: str, key: str) -> None:
    example = (ROOT / "config.example.toml").read_text()
    if key == "verify":  # a table of its own: [sources.<name>.verify]
        assert re.search(r"^\[sources\.\w+\.verify\]", example, re.M)
        return
    assert re.search(rf"^\s*#?\s*{re.escape(key)}\s*=", example, re.M), (
        f"{table}.{key} is not in config.example.toml"
    )


@pytest.mark.parametrize(("table", "key"), KEYS)
def test_key_is_in_the_readme(table: str, key: str) -> None:
    readme = (ROOT / "README.md").read_text()
    assert re.search(rf"[`.\s]{re.escape(key)}[`\s,/]", readme), (
        f"{table}.{key} is not in README.md"
    )


def test_example_config_is_valid() -> None:
    loaded = config.load(ROOT / "config.example.toml", environ={})
    assert loaded.sources and loaded.destinations
