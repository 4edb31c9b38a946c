"""Avro schema compatibility: can data written with one schema be read with another?

Pure logic over schemas already parsed by `fastavro.schema.parse_schema` (names fully qualified,
named types listed under ``__named_schemas``). The rules are the Avro specification's schema
resolution rules, checked the way Avro's Java `SchemaCompatibility` (and so Confluent Schema
Registry) checks them: every problem found is reported, each with a path into the reader schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: Compatibility levels, as Confluent Schema Registry names them.
LEVELS = (
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
)

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})

#: Reader type -> the writer types it can read besides its own (the spec's promotions).
PROMOTIONS: dict[str, frozenset[str]] = {
    "long": frozenset({"int"}),
    "float": frozenset({"int", "long"}),
    "double": frozenset({"int", "long", "float"}),
    "bytes": frozenset({"string"}),
    "string": frozenset({"bytes"}),
}

Schema = Any  # a fastavro-parsed schema: a type name, a union list or a dict


@dataclass(frozen=True)
class Incompatibility:
    """One reason why a reader cannot read a writer's data (kinds named as Avro's Java does)."""

    kind: str
    path: str
    detail: str

    def __str__(self) -> str:
        return f"{{errorType:'{self.kind}', location:'{self.path}', description:'{self.detail}'}}"


def check_read(reader: Schema, writer: Schema) -> list[Incompatibility]:
    """Everything that stops `reader` from reading data written with `writer` (empty: compatible)."""
    return _Checker(reader, writer).run()


def check_level(level: str, new: Schema, existing: Sequence[Schema]) -> list[Incompatibility]:
    """Check `new` against a subject's `existing` schemas (oldest first) under a compatibility level.

    Non-transitive levels compare with the latest schema only, transitive ones with all of them.
    BACKWARD: the new schema reads old data; FORWARD: old schemas read new data; FULL: both.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown compatibility level {level!r}")
    if level == "NONE" or not existing:
        return []
    against = existing if level.endswith("_TRANSITIVE") else existing[-1:]
    base = level.removesuffix("_TRANSITIVE")
    problems: list[Incompatibility] = []
    for old in reversed(against):
        if base in ("BACKWARD", "FULL"):
            problems += check_read(new, old)
        if base in ("FORWARD", "FULL"):
            problems += check_read(old, new)
    return problems


def _type_of(schema: Schema) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        return schema["type"] if isinstance(schema["type"], str) else _type_of(schema["type"])
    return schema


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


class _Checker:
    """Walks reader and writer together; named types may recurse, so a pair of names in progress counts as fine."""

    def __init__(self, reader: Schema, writer: Schema) -> None:
        self.reader, self.writer = reader, writer
        self.reader_names = self._named(reader)
        self.writer_names = self._named(writer)
        self.in_progress: set[tuple[str, str]] = set()

    @staticmethod
    def _named(schema: Schema) -> dict[str, Any]:
        return schema.get("__named_schemas", {}) if isinstance(schema, dict) else {}

    def run(self) -> list[Incompatibility]:
        return self.check(self.reader, self.writer, "")

    def resolve(self, schema: Schema, names: dict[str, Any]) -> Schema:
        """Follow named-type references and unwrap {"type": <primitive>} (logical types read as their base)."""
        while True:
            if isinstance(schema, str) and schema not in PRIMITIVES:
                schema = names[schema]
            elif isinstance(schema, dict) and not isinstance(schema["type"], str):
                schema = schema["type"]
            elif isinstance(schema, dict) and schema["type"] in PRIMITIVES:
                return schema["type"]
            elif isinstance(schema, dict) and schema["type"] not in _COMPLEX:
                schema = names[schema["type"]]
            else:
                return schema

    def check(self, reader: Schema, writer: Schema, path: str) -> list[Incompatibility]:
        reader = self.resolve(reader, self.reader_names)
        writer = self.resolve(writer, self.writer_names)
        if isinstance(reader, dict) and isinstance(writer, dict) and "name" in reader and "name" in writer:
            pair = (reader["name"], writer["name"])  # names are unique within each schema
            if pair in self.in_progress:
                return []
            self.in_progress.add(pair)
            try:
                return self._check(reader, writer, path)
            finally:
                self.in_progress.discard(pair)
        return self._check(reader, writer, path)

    def _check(self, reader: Schema, writer: Schema, path: str) -> list[Incompatibility]:
        r_type, w_type = _type_of(reader), _type_of(writer)
        if w_type == "union":
            # Every branch the writer may have used must be readable.
            problems: list[Incompatibility] = []
            for branch in writer:
                problems += self.check(reader, branch, path)
            return problems
        if r_type == "union":
            for index, branch in enumerate(reader):
                if not self.check(branch, writer, f"{path}/{index}"):
                    return []
            return [
                Incompatibility(
                    "MISSING_UNION_BRANCH",
                    path or "/",
                    f"reader union lacks a branch for writer type {_describe(writer)}",
                )
            ]
        if r_type != w_type:
            if w_type in PROMOTIONS.get(r_type, ()):
                return []
            return [
                Incompatibility("TYPE_MISMATCH", path or "/", f"reader type {r_type} cannot read writer type {w_type}")
            ]
        if r_type in PRIMITIVES:
            return []
        if r_type == "array":
            return self.check(reader["items"], writer["items"], f"{path}/items")
        if r_type == "map":
            return self.check(reader["values"], writer["values"], f"{path}/values")
        name_problem = self._names_match(reader, writer, path)
        if name_problem:
            return [name_problem]
        if r_type == "fixed":
            if reader["size"] != writer["size"]:
                return [
                    Incompatibility(
                        "FIXED_SIZE_MISMATCH", f"{path}/size", f"expected size {writer['size']}, found {reader['size']}"
                    )
                ]
            return []
        if r_type == "enum":
            missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
            if missing and reader.get("default") is None:
                return [
                    Incompatibility("MISSING_ENUM_SYMBOLS", f"{path}/symbols", f"reader enum lacks symbols {missing}")
                ]
            return []
        return self._check_record(reader, writer, path)

    def _check_record(self, reader: dict, writer: dict, path: str) -> list[Incompatibility]:
        writer_fields = {f["name"]: f for f in writer["fields"]}
        problems: list[Incompatibility] = []
        for index, field in enumerate(reader["fields"]):
            field_path = f"{path}/fields/{index}"
            names = [field["name"], *field.get("aliases", ())]
            match = next((writer_fields[n] for n in names if n in writer_fields), None)
            if match is not None:
                problems += self.check(field["type"], match["type"], f"{field_path}/type")
            elif "default" not in field:
                problems.append(
                    Incompatibility(
                        "READER_FIELD_MISSING_DEFAULT_VALUE",
                        field_path,
                        f"field '{field['name']}' has no default value and is missing from the writer",
                    )
                )
        return problems

    @staticmethod
    def _names_match(reader: dict, writer: dict, path: str) -> Incompatibility | None:
        writer_name = writer["name"]
        aliases = {a for alias in reader.get("aliases", ()) for a in (alias, _short(alias))}
        if _short(reader["name"]) == _short(writer_name) or writer_name in aliases or _short(writer_name) in aliases:
            return None
        return Incompatibility("NAME_MISMATCH", f"{path}/name", f"expected {writer_name}, found {reader['name']}")


_COMPLEX = frozenset({"record", "error", "enum", "array", "map", "fixed"})


def _describe(schema: Schema) -> str:
    if isinstance(schema, dict) and "name" in schema:
        return f"{schema['type']} {schema['name']}"
    return _type_of(schema)
