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


def test_every_config_block_in_the_docs_loads(tmp_path: Path) -> None:
    """The snippets operators paste must be valid configs, with their ${ENV} set."""
    blocks = [
        block
        for doc in ("README.md", "docs/providers.md")
        for block in re.findall(r"```toml\n(.*?)```", (ROOT / doc).read_text(), re.S)
    ]
    assert len(blocks) >= 8
    for block in blocks:
        names = set(re.findall(r"\$\{(\w+)\}", block))
        # Standard Webhooks secrets must be whsec_<base64>; any value does elsewhere.
        env = {name: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLc4v" for name in names}
        if "secret_file" in block:
            for name in re.findall(r'secret_file = "([^"]+)"', block):
                (tmp_path / name).write_text("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLc4v\n")
        path = tmp_path / "hookgate.toml"
        path.write_text(block)
        config.load(path, env)
