"""Avro compatibility rules, schema identity and state replay of the embedded Schema Registry (no server)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastavro.schema import parse_schema

from stack.registry import errors
from stack.registry.compatibility import check_level, check_read
from stack.registry.schemas import Reference, Schema, parse_avro
from stack.registry.state import RegistryState, Version, config_record, max_id_record, schema_record, schema_tombstone


def record(name: str, *fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": list(fields), **extra}


def field(name: str, type_: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


def kinds(reader: Any, writer: Any) -> list[str]:
    return [problem.kind for problem in check_read(parse_schema(reader), parse_schema(writer))]


# -- primitives and promotions ----------------------------------------------------------------

PROMOTABLE = [
    ("int", "long"),
    ("int", "float"),
    ("int", "double"),
    ("long", "float"),
    ("long", "double"),
    ("float", "double"),
    ("string", "bytes"),
    ("bytes", "string"),
]


@pytest.mark.parametrize(("writer", "reader"), PROMOTABLE)
def test_promotions_are_readable(writer: str, reader: str) -> None:
    assert kinds(reader, writer) == []


@pytest.mark.parametrize(("writer", "reader"), [(r, w) for w, r in PROMOTABLE if (r, w) not in PROMOTABLE])
def test_demotions_are_type_mismatches(writer: str, reader: str) -> None:
    assert kinds(reader, writer) == ["TYPE_MISMATCH"]


@pytest.mark.parametrize("type_", ["null", "boolean", "int", "long", "float", "double", "bytes", "string"])
def test_every_primitive_reads_itself(type_: str) -> None:
    assert kinds(type_, type_) == []
    assert kinds({"type": type_}, type_) == []


def test_unrelated_primitives_mismatch() -> None:
    assert kinds("boolean", "int") == ["TYPE_MISMATCH"]
    assert kinds("int", "string") == ["TYPE_MISMATCH"]
    assert kinds("null", "int") == ["TYPE_MISMATCH"]


def test_logical_types_resolve_as_their_base_type() -> None:
    assert kinds({"type": "long", "logicalType": "timestamp-millis"}, {"type": "int", "logicalType": "date"}) == []


# -- records ----------------------------------------------------------------------------------

V1 = record("Payment", field("id", "string"), field("amount", "double"))


def test_added_field_with_default_is_backward_compatible() -> None:
    v2 = record("Payment", field("id", "string"), field("amount", "double"), field("currency", "string", default="EUR"))
    assert kinds(v2, V1) == []  # new reader, old data: the default fills the gap
    assert kinds(V1, v2) == []  # old reader, new data: the extra field is skipped


def test_added_field_without_default_breaks_old_data() -> None:
    v2 = record("Payment", field("id", "string"), field("amount", "double"), field("currency", "string"))
    assert kinds(v2, V1) == ["READER_FIELD_MISSING_DEFAULT_VALUE"]
    assert kinds(V1, v2) == []


def test_removed_field_is_backward_compatible_only_if_it_had_a_default_forward() -> None:
    v2 = record("Payment", field("id", "string"))
    assert kinds(v2, V1) == []
    assert kinds(V1, v2) == ["READER_FIELD_MISSING_DEFAULT_VALUE"]
    with_default = record("Payment", field("id", "string"), field("amount", "double", default=0.0))
    assert kinds(with_default, v2) == []


def test_field_found_through_reader_alias() -> None:
    renamed = record("Payment", field("id", "string"), field("value", "double", aliases=["amount"]))
    assert kinds(renamed, V1) == []


def test_field_type_promotion_inside_record() -> None:
    old = record("R", field("n", "int"))
    new = record("R", field("n", "long"))
    assert kinds(new, old) == []
    problems = check_read(parse_schema(old), parse_schema(new))
    assert [(p.kind, p.path) for p in problems] == [("TYPE_MISMATCH", "/fields/0/type")]


def test_record_names_must_match_unless_aliased() -> None:
    assert kinds(record("Other", field("id", "string")), V1) == ["NAME_MISMATCH"]
    assert kinds(record("Other", field("id", "string"), aliases=["Payment"]), V1) == []
    # Like Avro's Java checker, only the unqualified name is compared.
    assert kinds(record("Payment", field("id", "string"), namespace="x.y"), V1) == []


def test_every_problem_is_reported() -> None:
    old = record("R", field("a", "int"))
    new = record("R", field("a", "string"), field("b", "int"), field("c", "int"))
    assert kinds(new, old) == [
        "TYPE_MISMATCH",
        "READER_FIELD_MISSING_DEFAULT_VALUE",
        "READER_FIELD_MISSING_DEFAULT_VALUE",
    ]


# -- enums, fixed ------------------------------------------------------------------------------


def enum(symbols: list[str], **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "Channel", "symbols": symbols, **extra}


def test_enum_reader_must_know_every_writer_symbol() -> None:
    assert kinds(enum(["WEB", "POS", "ATM"]), enum(["WEB", "POS"])) == []
    assert kinds(enum(["WEB"]), enum(["WEB", "POS"])) == ["MISSING_ENUM_SYMBOLS"]


def test_enum_default_covers_unknown_symbols() -> None:
    assert kinds(enum(["WEB", "OTHER"], default="OTHER"), enum(["WEB", "POS"])) == []


def test_enum_names_must_match() -> None:
    assert kinds({"type": "enum", "name": "Kind", "symbols": ["WEB"]}, enum(["WEB"])) == ["NAME_MISMATCH"]


def test_fixed_size_and_name() -> None:
    fixed = {"type": "fixed", "name": "Hash", "size": 16}
    assert kinds(fixed, fixed) == []
    assert kinds({**fixed, "size": 32}, fixed) == ["FIXED_SIZE_MISMATCH"]
    assert kinds({**fixed, "name": "Other"}, fixed) == ["NAME_MISMATCH"]


# -- unions ------------------------------------------------------------------------------------


def test_union_reader_needs_a_branch_for_the_writer_type() -> None:
    assert kinds(["null", "string"], "string") == []
    assert kinds(["null", "long"], "int") == []  # a branch may promote
    assert kinds(["null", "string"], "int") == ["MISSING_UNION_BRANCH"]


def test_union_writer_needs_every_branch_readable() -> None:
    assert kinds(["null", "string", "int"], ["null", "string"]) == []
    assert kinds(["null", "string"], ["null", "string", "int"]) == ["MISSING_UNION_BRANCH"]
    assert kinds("string", ["null", "string"]) == ["TYPE_MISMATCH"]


def test_making_a_field_optional_with_default_is_fully_compatible() -> None:
    old = record("R", field("note", "string"))
    new = record("R", field("note", ["null", "string"], default=None))
    assert kinds(new, old) == []
    assert kinds(old, new) == ["TYPE_MISMATCH"]  # old readers cannot read a null note


# -- nested types, arrays, maps, named references, recursion ----------------------------------


def test_arrays_and_maps_check_their_elements() -> None:
    assert kinds({"type": "array", "items": "long"}, {"type": "array", "items": "int"}) == []
    assert kinds({"type": "array", "items": "int"}, {"type": "array", "items": "long"}) == ["TYPE_MISMATCH"]
    assert kinds({"type": "map", "values": "double"}, {"type": "map", "values": "float"}) == []
    assert kinds({"type": "map", "values": "int"}, {"type": "array", "items": "int"}) == ["TYPE_MISMATCH"]


def test_nested_record_change_is_found_with_its_path() -> None:
    card = record("Card", field("pan", "string"))
    old = record("Payment", field("card", card), field("cards", {"type": "array", "items": "Card"}))
    new_card = record("Card", field("pan", "string"), field("bin", "int"))
    new = record("Payment", field("card", new_card), field("cards", {"type": "array", "items": "Card"}))
    problems = check_read(parse_schema(new), parse_schema(old))
    assert [(p.kind, p.path) for p in problems] == [
        ("READER_FIELD_MISSING_DEFAULT_VALUE", "/fields/0/type/fields/1"),
        ("READER_FIELD_MISSING_DEFAULT_VALUE", "/fields/1/type/items/fields/1"),
    ]


def test_recursive_types_terminate() -> None:
    node = record("Node", field("value", "int"), field("next", ["null", "Node"], default=None))
    wider = record("Node", field("value", "long"), field("next", ["null", "Node"], default=None))
    assert kinds(wider, node) == []
    assert kinds(node, wider) == ["TYPE_MISMATCH"]


# -- levels ------------------------------------------------------------------------------------

F_INT = record("R", field("f", "int"))
EMPTY = record("R")
F_STRING_DEFAULT = record("R", field("f", "string", default="z"))


def level_kinds(level: str, new: Any, *existing: Any) -> list[str]:
    return [p.kind for p in check_level(level, parse_schema(new), [parse_schema(s) for s in existing])]


def test_non_transitive_levels_look_at_the_latest_only() -> None:
    assert level_kinds("BACKWARD", F_STRING_DEFAULT, F_INT, EMPTY) == []
    assert level_kinds("BACKWARD_TRANSITIVE", F_STRING_DEFAULT, F_INT, EMPTY) == ["TYPE_MISMATCH"]


def test_forward_and_full() -> None:
    with_g = record("R", field("f", "int"), field("g", "int"))
    assert level_kinds("FORWARD", with_g, F_INT) == []  # old readers skip g
    assert level_kinds("BACKWARD", with_g, F_INT) == ["READER_FIELD_MISSING_DEFAULT_VALUE"]
    assert level_kinds("FULL", with_g, F_INT) == ["READER_FIELD_MISSING_DEFAULT_VALUE"]
    assert level_kinds("FORWARD", EMPTY, F_INT) == ["READER_FIELD_MISSING_DEFAULT_VALUE"]
    assert level_kinds("FORWARD", EMPTY, F_INT, EMPTY) == []
    assert level_kinds("FORWARD_TRANSITIVE", EMPTY, F_INT, EMPTY) == ["READER_FIELD_MISSING_DEFAULT_VALUE"]
    assert level_kinds("FULL_TRANSITIVE", F_INT, F_INT, F_INT) == []


def test_none_and_first_version_are_always_compatible() -> None:
    assert level_kinds("NONE", "string", F_INT) == []
    assert level_kinds("FULL_TRANSITIVE", "string") == []


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError):
        check_level("SIDEWAYS", "int", ["int"])


# -- schema identity and parsing ---------------------------------------------------------------


def request(schema: Any, **extra: Any) -> dict[str, Any]:
    return {"schema": schema if isinstance(schema, str) else json.dumps(schema), **extra}


def test_identity_ignores_whitespace_and_key_order_but_not_defaults() -> None:
    a = Schema.from_request(request('{"type": "record", "name": "R", "fields": []}'))
    b = Schema.from_request(request('{"fields":[],"name":"R","type":"record"}'))
    c = Schema.from_request(request(record("R", field("x", "int", default=1))))
    d = Schema.from_request(request(record("R", field("x", "int", default=2))))
    assert a.identity == b.identity
    assert c.identity != d.identity
    assert a.text == '{"type":"record","name":"R","fields":[]}'


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "Empty schema"),
        ({"schema": "{not json"}, "not valid JSON"),
        ({"schema": '"int"', "schemaType": "XML"}, "unknown schema type"),
        ({"schema": '"int"', "references": [{"name": "x"}]}, "reference"),
    ],
)
def test_malformed_requests_are_invalid_schemas(body: dict[str, Any], fragment: str) -> None:
    with pytest.raises(errors.RegistryError) as caught:
        Schema.from_request(body)
    assert caught.value.error_code == 42201
    assert fragment in caught.value.message


def test_bad_avro_is_an_invalid_schema() -> None:
    schema = Schema.from_request(request(record("R", field("x", "int", default="one"))))
    with pytest.raises(errors.RegistryError) as caught:
        parse_avro(schema, lambda ref: pytest.fail("no references here"))
    assert caught.value.error_code == 42201


def test_references_bring_their_named_types() -> None:
    card = Schema.from_request(request(record("Card", field("pan", "string"), namespace="bank")))
    payment = Schema.from_request(
        request(
            record("Payment", field("card", "bank.Card")),
            references=[{"name": "bank.Card", "subject": "card", "version": 1}],
        )
    )
    assert payment.references == (Reference("bank.Card", "card", 1),)
    parsed = parse_avro(payment, lambda ref: card)
    assert "bank.Card" in parsed["__named_schemas"]
    with pytest.raises(errors.RegistryError):
        parse_avro(Schema("AVRO", json.dumps(record("Payment", field("card", "bank.Card")))), lambda ref: card)


# -- state replay --------------------------------------------------------------------------------


def replay(*records: tuple[bytes, bytes | None]) -> RegistryState:
    state = RegistryState()
    for key, value in records:
        state.apply(key, value)
    return state


def test_replay_rebuilds_subjects_ids_and_levels() -> None:
    s1 = Schema("AVRO", '"string"')
    s2 = Schema("AVRO", '"int"')
    v1 = Version("a", 1, 1, s1)
    v2 = Version("a", 2, 2, s2)
    shared = Version("b", 1, 1, s1)
    state = replay(schema_record(v1), schema_record(v2), schema_record(shared), config_record("a", "FULL"))
    assert state.subject_names() == ["a", "b"]
    assert state.id_of(Schema("AVRO", '"string"')) == 1
    assert [v.version for v in state.users_of(1)] == [1, 1]
    assert state.level_of("a") == "FULL" and state.level_of("b") == "BACKWARD"
    assert state.max_id == 2


def test_replay_of_soft_and_permanent_deletes() -> None:
    s1 = Schema("AVRO", '"string"')
    v1 = Version("a", 1, 7, s1)
    deleted = Version("a", 1, 7, s1, deleted=True)
    state = replay(schema_record(v1), schema_record(deleted))
    assert state.subject_names() == [] and state.subject_names(include_deleted=True) == ["a"]
    assert state.schema_by_id(7) == s1  # soft-deleted schemas stay readable by id
    state.apply(*schema_tombstone("a", 1))
    assert state.subject_names(include_deleted=True) == [] and state.schema_by_id(7) is None
    state.apply(*config_record(None, "NONE"))
    state.apply(*config_record(None, None))
    assert state.global_level == "BACKWARD"


def test_ids_are_not_reused_after_compaction_drops_a_deleted_schema() -> None:
    # What compaction can leave of: id 9 registered, soft-deleted, then permanently deleted.
    state = replay(schema_tombstone("a", 1), max_id_record(9))
    assert state.subject_names(include_deleted=True) == []
    assert state.max_id == 9
