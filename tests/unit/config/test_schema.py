"""The schema: each delivery-policy setting declared once, the tables a file may hold."""

from __future__ import annotations

import typing

import msgspec

from hookgate import providers
from hookgate.config import schema


def test_a_destination_table_is_its_own_keys_and_every_policy_setting() -> None:
    own = schema.DestinationKeys.__struct_fields__
    assert schema.DestinationTable.__struct_fields__ == (*own, *schema.POLICY_SETTINGS)


def test_each_override_is_the_policy_setting_made_optional() -> None:
    policy = {f.name: f for f in msgspec.structs.fields(schema.DeliveryPolicy)}
    for field in msgspec.structs.fields(schema.DestinationTable):
        if field.name in policy:
            assert field.default is None  # unset: inherited from [delivery]
            assert field.type == policy[field.name].type | None


def test_every_policy_setting_has_a_default_and_help_text() -> None:
    defaults = schema.DeliveryPolicy()
    for name in schema.POLICY_SETTINGS:
        assert hasattr(defaults, name)
        assert schema.help_text(schema.DeliveryPolicy, name), f"{name} has no help text"


def test_policy_rules_follow_the_declaration_order() -> None:
    names = [name for name, _ in schema.policy_rules()]
    assert names == [n for n in schema.POLICY_SETTINGS if n in names]
    assert "deny_networks" in names and "max_backoff" in names


def test_the_defaults_meet_their_rules() -> None:
    defaults = schema.DeliveryPolicy()
    for name, rule in schema.policy_rules():
        value = getattr(defaults, name)
        items = value if rule.each else [value]
        assert all(rule.holds(item, defaults) for item in items), name


def test_scheme_names_are_the_providers() -> None:
    """The Literal msgspec checks against is the registry's list, in its order."""
    assert typing.get_args(schema.Scheme) == providers.SCHEMES


def test_file_tables_cover_every_table_of_config() -> None:
    roots = {table.split(".")[0] for table in schema.FILE_TABLES}
    assert roots == set(schema.Config.__struct_fields__) - {"path"}
    # A table inside a table is listed under its own path.
    for table, struct in schema.FILE_TABLES.items():
        for field in msgspec.structs.fields(struct):
            if isinstance(field.type, type) and issubclass(field.type, msgspec.Struct):
                assert schema.FILE_TABLES[f"{table}.{field.name}"] is field.type
    assert "sources.<name>.verify" in schema.FILE_TABLES
