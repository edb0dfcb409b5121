"""Every config key is documented: in config.example.toml and in the README.

The keys come from the schema (``hookgate.config.schema.FILE_TABLES``: every field of
every table, the delivery policy's settings once, under ``[delivery]``), so a new key
fails here until both describe it:

- config.example.toml: a line ``key = ...`` (or ``# key = ...``) inside the key's own
  table (``[delivery]``, ``[sources.demo.verify]``, or a commented ``# [alerts]``);
- README.md, in its Configuration section: a row ``| `key` | default | meaning |`` in
  the table under the heading of the key's table (``#### `[delivery]```), whose
  default, when written as a TOML value in a code span, is the schema's default.
"""

from __future__ import annotations

import re
import runpy
import tomllib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hookgate import config, providers
from hookgate.config import schema
from hookgate.config.values import dec_hook

from .providers import samples

ROOT = Path(__file__).resolve().parents[2]
# The key-pair providers' ${..._PUBLIC_KEY} placeholders, given keys of their kind.
PUBLIC_KEYS = {
    "DISCORD_PUBLIC_KEY": samples.public_pem(samples.ED25519_KEY),
    "ED25519_PUBLIC_KEY": samples.public_pem(samples.ED25519_KEY),
    "SENDGRID_PUBLIC_KEY": samples.public_pem(samples.P256_KEY),
    "PAYPAL_PUBLIC_KEY": samples.certificate_pem(samples.RSA_KEY),
}

# A table that holds another (sources.<name>.verify) is a table, not a key.
KEYS = [
    (table, key)
    for table, struct in schema.FILE_TABLES.items()
    for key in struct.__struct_fields__
    if f"{table}.{key}" not in schema.FILE_TABLES
]
# What each table may hold besides its own keys: a destination overrides the policy.
ALSO_ALLOWED = {"destinations.<name>": set(schema.POLICY_SETTINGS)}

_HEADER = re.compile(r"^\s*#?\s*\[([^\]]+)\]\s*(?:#.*)?$")
_ASSIGNMENT = re.compile(r"^\s*#?\s*(\w+)\s*=")
_README_TABLE = re.compile(r"^#{3,6} `\[([^\]]+)\]`")
_README_ROW = re.compile(r"^\| `(\w+)` \| ([^|]*) \| ([^|]*) \|$")


def table_of(header: str) -> str:
    """``sources.demo.verify`` → ``sources.<name>.verify``: the schema's table path."""
    for table in schema.FILE_TABLES:
        if re.fullmatch(re.escape(table).replace("<name>", r"[\w-]+"), header):
            return table
    return header


def example_keys() -> dict[str, set[str]]:
    """config.example.toml's keys by table, commented-out ones included."""
    found: dict[str, set[str]] = {}
    table = ""  # the comment at the top, before any table
    for line in (ROOT / "config.example.toml").read_text().splitlines():
        header = _HEADER.match(line)
        if header:
            table = table_of(header[1].strip())
        elif key := _ASSIGNMENT.match(line):
            found.setdefault(table, set()).add(key[1])
    return found


def readme_rows() -> dict[str, dict[str, tuple[str, str]]]:
    """The README's configuration reference: per table, key → (default, meaning)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, dict[str, tuple[str, str]]] = {}
    table = None
    for line in section.splitlines():
        if line.startswith("#"):
            heading = _README_TABLE.match(line)
            table = heading[1] if heading else None
        elif table is not None and (row := _README_ROW.match(line)):
            entries = rows.setdefault(table, {})
            assert row[1] not in entries, f"{table}.{row[1]} has two rows in README.md"
            entries[row[1]] = (row[2].strip(), row[3].strip())
    return rows


def field_of(table: str, key: str) -> tuple[Any, Any]:
    """The type and the default (NODEFAULT: required) of ``key`` in ``table``."""
    struct = schema.FILE_TABLES[table]
    field = next(f for f in msgspec.structs.fields(struct) if f.name == key)
    if field.default_factory is not msgspec.NODEFAULT:
        return field.type, field.default_factory()
    return field.type, field.default


@pytest.mark.parametrize(("table", "key"), KEYS)
def test_key_is_in_its_table_in_the_example_config(table: str, key: str) -> None:
    assert key in example_keys().get(table, set()), (
        f"{table}.{key} is not in its table of config.example.toml"
    )


@pytest.mark.parametrize(("table", "key"), KEYS)
def test_key_has_a_row_in_the_readme_reference(table: str, key: str) -> None:
    rows = readme_rows().get(table, {})
    assert key in rows, f"{table}.{key} has no row under `[{table}]` in README.md"
    default, meaning = rows[key]
    assert meaning, f"{table}.{key}: its README row says nothing"
    field_type, expected = field_of(table, key)
    if default == "required":
        assert expected is msgspec.NODEFAULT, f"{table}.{key} is not required"
    elif default == "unset":
        assert expected is None, f"{table}.{key} is not unset by default"
    elif written := re.fullmatch(r"`([^`]+)`", default):
        value = tomllib.loads(f"value = {written[1]}")["value"]
        decoded = msgspec.convert(value, field_type, dec_hook=dec_hook)
        assert decoded == expected, f"{table}.{key}: README says {default}, not {expected!r}"


def test_the_docs_name_no_key_that_does_not_exist() -> None:
    """A renamed or removed key must leave the docs too."""
    known: dict[str, set[str]] = {}
    for table, key in KEYS:
        known.setdefault(table, set(ALSO_ALLOWED.get(table, set()))).add(key)
    example = {t: keys for t, keys in example_keys().items() if t}  # the top: prose
    readme = {t: set(rows) for t, rows in readme_rows().items()}
    for where, documented in (("config.example.toml", example), ("README.md", readme)):
        for table, keys in documented.items():
            assert table in known, f"{where} documents a table [{table}] that does not exist"
            assert keys <= known[table], f"{where}: [{table}] has no {keys - known[table]}"


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
        env = {
            name: PUBLIC_KEYS.get(name, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLc4v") for name in names
        }
        if "secret_file" in block:
            for name in re.findall(r'(?<!\w)secret_file = "([^"]+)"', block):
                (tmp_path / name).write_text("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLc4v\n")
        path = tmp_path / "hookgate.toml"
        path.write_text(block)
        config.load(path, env)


def test_the_provider_reference_is_generated_from_the_registry() -> None:
    """docs/providers.md's reference equals what scripts/providers_doc.py writes."""
    script = runpy.run_path(str(ROOT / "scripts" / "providers_doc.py"))
    text = (ROOT / "docs" / "providers.md").read_text(encoding="utf-8")
    assert script["updated"](text) == text, "run: python scripts/providers_doc.py"
    for name in providers.SCHEMES:
        assert f"### `{name}`" in text
