"""Schemas as the registry stores them: type, canonical text, references; and Avro parsing.

Two registrations of "the same schema" must get the same id even when their whitespace or key order
differ, while schemas that differ in anything readers see (defaults, docs, order of fields) must not:
so identity is the JSON value itself (keys sorted), not Avro's Parsing Canonical Form, which drops
defaults and would merge schemas that resolve differently.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastavro.schema import parse_schema

from stack.registry import errors

#: The types Confluent lists at GET /schemas/types, in its order. Only AVRO is checked for compatibility.
SCHEMA_TYPES = ("JSON", "PROTOBUF", "AVRO")


@dataclass(frozen=True)
class Reference:
    """A named type this schema imports from another subject's version (Confluent schema references)."""

    name: str
    subject: str
    version: int

    @classmethod
    def from_json(cls, value: object) -> Reference:
        if not isinstance(value, dict):
            raise errors.invalid_schema(f"a reference must be an object, got {value!r}")
        name, subject, version = value.get("name"), value.get("subject"), value.get("version")
        if not (isinstance(name, str) and isinstance(subject, str) and isinstance(version, int)):
            raise errors.invalid_schema(f"a reference needs a name, a subject and an integer version: {value!r}")
        return cls(name, subject, version)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "subject": self.subject, "version": self.version}


@dataclass(frozen=True)
class Schema:
    """A schema in the form it is stored and served: canonical text, never re-indented again."""

    schema_type: str
    text: str
    references: tuple[Reference, ...] = ()

    @classmethod
    def from_request(cls, body: object) -> Schema:
        """Validate the syntax of a register/lookup/compatibility request body (semantics come later)."""
        if not isinstance(body, dict):
            raise errors.invalid_schema("the request body must be a JSON object with a 'schema' field")
        text = body.get("schema")
        if not isinstance(text, str) or not text.strip():
            raise errors.invalid_schema("Empty schema")
        schema_type = body.get("schemaType") or "AVRO"
        if schema_type not in SCHEMA_TYPES:
            raise errors.invalid_schema(f"unknown schema type {schema_type!r}; supported: {', '.join(SCHEMA_TYPES)}")
        refs = body.get("references") or []
        if not isinstance(refs, list):
            raise errors.invalid_schema("'references' must be a list")
        references = tuple(Reference.from_json(ref) for ref in refs)
        return cls(schema_type, canonical_text(schema_type, text), references)

    @property
    def identity(self) -> tuple[Any, ...]:
        """Equal for schemas that are the same to every reader: they share one global id."""
        if self.schema_type == "PROTOBUF":
            body = self.text
        else:
            body = json.dumps(json.loads(self.text), sort_keys=True, separators=(",", ":"))
        return (self.schema_type, body, self.references)

    def to_json(self) -> dict[str, Any]:
        """The fields Confluent returns for a schema: type and references only when not the defaults."""
        result: dict[str, Any] = {"schema": self.text}
        if self.schema_type != "AVRO":
            result["schemaType"] = self.schema_type
        if self.references:
            result["references"] = [ref.to_json() for ref in self.references]
        return result


def canonical_text(schema_type: str, text: str) -> str:
    """Compact JSON for Avro and JSON Schema (as Confluent serves them); Protobuf text as given."""
    if schema_type == "PROTOBUF":
        return text.strip()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise errors.invalid_schema(f"not valid JSON: {exc}") from None
    return json.dumps(value, separators=(",", ":"))


#: Looks up the schema a reference points to; raises a RegistryError when it does not exist.
ReferenceResolver = Callable[[Reference], Schema]


def parse_avro(schema: Schema, resolve: ReferenceResolver) -> Any:
    """Parse and validate an Avro schema with fastavro, importing its referenced named types first."""
    named: dict[str, Any] = {}
    _import_references(schema, resolve, named, seen=set())
    try:
        return parse_schema(json.loads(schema.text), named_schemas=named)
    except Exception as exc:  # fastavro raises several unrelated types for bad schemas
        raise errors.invalid_schema(f"{type(exc).__name__}: {exc}") from None


def _import_references(schema: Schema, resolve: ReferenceResolver, named: dict[str, Any], seen: set[Reference]) -> None:
    for ref in schema.references:
        if ref in seen:
            continue
        seen.add(ref)
        target = resolve(ref)
        if target.schema_type != "AVRO":
            raise errors.invalid_schema(f"reference {ref.name!r} points to a {target.schema_type} schema")
        _import_references(target, resolve, named, seen)
        try:
            parse_schema(json.loads(target.text), named_schemas=named)
        except Exception as exc:
            raise errors.invalid_schema(f"referenced schema {ref.name!r}: {type(exc).__name__}: {exc}") from None
