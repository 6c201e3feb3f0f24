"""The ``dagster:<property>:<value>`` tag convention (dg_sqlmesh.translation.tags.parse_tags).

Unit tests of the parser, then the precedence model tag > factory argument > default,
end to end on a small real SQLMesh project.
"""

from __future__ import annotations

import dagster as dg
import pytest

from dg_sqlmesh import SQLMeshDefinitionError, sqlmesh_definitions_factory
from dg_sqlmesh.translation.tags import parse_tags


def parse(*tags: str):
    return parse_tags(tags, model="marts.orders", path="models/marts/orders.sql")


# --- reserved properties ------------------------------------------------------------------


def test_group_name():
    assert parse("dagster:group_name:marts").group_name == "marts"
    assert parse("dagster:group_name:finance/daily").group_name == "finance/daily"


def test_row_count_opt_out():
    from dg_sqlmesh.translation.tags import row_count_enabled

    assert parse("dagster:row_count:false").tags == {}  # a switch, not a Dagster tag
    assert row_count_enabled(["dagster:row_count:false"]) is False
    assert row_count_enabled(["dagster:row_count:TRUE", "pii"]) is True
    assert row_count_enabled([]) is True
    with pytest.raises(SQLMeshDefinitionError, match="'maybe' is not true or false"):
        parse("dagster:row_count:maybe")


def test_description_keeps_colons_and_spaces():
    props = parse("dagster:description:Revenue: net of returns, in EUR.")
    assert props.description == "Revenue: net of returns, in EUR."
    assert props.tags == {}


def test_kinds_repeatable_and_deduplicated():
    props = parse("dagster:kind:finance", "dagster:kind:pii_data", "dagster:kind:finance")
    assert props.kinds == ("finance", "pii_data")
    assert props.tags == {}


def test_owners_repeatable_teams_and_emails_in_order():
    props = parse(
        "dagster:owner:team:analytics",
        "dagster:owner:data@shop.example",
        "dagster:owner:team:finance",
        "dagster:owner:team:analytics",
    )
    assert props.owners == ("team:analytics", "data@shop.example", "team:finance")
    # Dagster accepts them as owners.
    dg.AssetSpec(key="x", owners=list(props.owners))


def test_prefix_is_case_insensitive_and_whitespace_trimmed():
    props = parse("DAGSTER:group_name: marts ", "Dagster:tier:gold")
    assert props.group_name == "marts"
    assert props.tags == {"tier": "gold"}


def test_no_tags_gives_empty_properties():
    props = parse()
    assert (props.group_name, props.owners, props.description, props.kinds, props.tags) == (
        None,
        (),
        None,
        (),
        {},
    )


# --- generic keys and plain tags ----------------------------------------------------------


def test_generic_key_becomes_dagster_tag():
    props = parse("dagster:tier:gold", "dagster:sla:4h")
    assert props.tags == {"tier": "gold", "sla": "4h"}
    assert props.group_name is None and props.owners == ()


def test_generic_key_and_value_sanitized():
    props = parse("dagster:data domain:sales & marketing!")
    assert props.tags == {"data_domain": "sales___marketing_"}


def test_plain_tags_become_tags_with_empty_value():
    assert parse("pii", "finance").tags == {"pii": "", "finance": ""}


ODD_PLAIN_TAGS = [
    "data quality/critical",
    "tier=1",
    "ünïcode",
    "a:b",  # a colon, but not the dagster prefix
    "x" * 100,  # too long for a Dagster tag key
    "dagster/kind/evil",  # looks like a Dagster system tag
    "with space",
    "-dash.dot_",
]


@pytest.mark.parametrize("tag", ODD_PLAIN_TAGS)
def test_plain_tags_sanitized_to_valid_dagster_tag_keys(tag):
    props = parse(tag)
    assert len(props.tags) == 1
    (key,) = props.tags
    assert len(key) <= 63
    # Dagster's own validation: an AssetSpec (and a whole Definitions) accepts them.
    spec = dg.AssetSpec(key="x", tags=props.tags)
    dg.Definitions.validate_loadable(dg.Definitions(assets=[spec]))
    assert set(spec.tags) == set(props.tags)


def test_all_odd_tags_at_once_are_valid_for_dagster():
    props = parse(*ODD_PLAIN_TAGS, "dagster:weird key!:odd value?", "dagster:" + "k" * 80 + ":v")
    assert len(props.tags) == len(ODD_PLAIN_TAGS) + 2
    dg.AssetSpec(key="x", tags=props.tags)


def test_blank_plain_tag_is_ignored():
    assert parse("   ").tags == {}


# --- malformed tags -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("dagster:group_name:", "has no value"),
        ("dagster:group_name", "has no value"),
        ("dagster::x", "the property is empty"),
        ("dagster:groupname:x", "Did you mean 'dagster:group_name:x'?"),
        ("dagster:owners:team:x", "Did you mean 'dagster:owner:team:x'?"),
        ("dagster:group:x", "Did you mean 'dagster:group_name:x'?"),
        ("dagster:owner:analytics", "'analytics' is not a valid Dagster owner"),
        ("dagster:owner:team:", "is not a valid Dagster owner"),
        ("dagster:group_name:bad-name!", "'bad-name!' is not a valid Dagster group name"),
        ("dagster:tier:", "has no value"),
    ],
)
def test_malformed_tag_raises_naming_model_and_tag(tag, expected):
    with pytest.raises(SQLMeshDefinitionError) as info:
        parse("pii", tag)
    message = str(info.value)
    assert "marts.orders" in message
    assert "models/marts/orders.sql" in message
    assert f"'{tag}'" in message
    assert expected in message


# --- precedence, end to end ---------------------------------------------------------------

CONFIG = """\
gateways:
  local:
    connection:
      type: duckdb
      database: tags.duckdb
default_gateway: local
model_defaults:
  dialect: duckdb
  start: '2024-01-01'
"""

MODELS = {
    # Convention tags win over everything.
    "tagged": """MODEL (
  name sales.tagged, kind FULL, owner 'sqlmesh_owner',
  tags ('dagster:group_name:from_tag', 'dagster:owner:team:tagged')
);
SELECT 1 AS id""",
    # Only SQLMesh's owner: used when the factory gives no owners.
    "owned": """MODEL (name sales.owned, kind FULL, owner 'jane');
SELECT 1 AS id""",
    "mailed": """MODEL (name sales.mailed, kind FULL, owner 'jane@shop.example');
SELECT 1 AS id""",
    # Nothing at all.
    "plain": """MODEL (name ops.plain, kind FULL);
SELECT 1 AS id""",
}


@pytest.fixture
def tag_project(tmp_path):
    root = tmp_path / "tags"
    (root / "models").mkdir(parents=True)
    (root / "config.yaml").write_text(CONFIG)
    for name, sql in MODELS.items():
        (root / "models" / f"{name}.sql").write_text(sql)
    return root


def _by_table(defs: dg.Definitions) -> dict[str, dg.AssetSpec]:
    return {spec.key.path[-1]: spec for a in defs.assets for spec in a.specs}


def test_precedence_defaults(tag_project):
    specs = _by_table(sqlmesh_definitions_factory(project_dir=str(tag_project)))
    assert specs["tagged"].group_name == "from_tag"
    assert specs["tagged"].owners == ["team:tagged"]
    # Defaults: schema as the group, SQLMesh's owner as the owner.
    assert specs["owned"].group_name == "sales"
    assert specs["owned"].owners == ["team:jane"]
    assert specs["mailed"].owners == ["jane@shop.example"]
    assert specs["plain"].group_name == "ops"
    assert specs["plain"].owners == []


def test_precedence_factory_arguments(tag_project):
    defs = sqlmesh_definitions_factory(
        project_dir=str(tag_project), group_name="factory_group", owners=["team:factory"]
    )
    specs = _by_table(defs)
    # The model's own tags still win ...
    assert specs["tagged"].group_name == "from_tag"
    assert specs["tagged"].owners == ["team:tagged"]
    # ... over the factory arguments, which win over the defaults.
    for table in ("owned", "mailed", "plain"):
        assert specs[table].group_name == "factory_group", table
        assert specs[table].owners == ["team:factory"], table
    dg.Definitions.validate_loadable(defs)
