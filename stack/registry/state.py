"""The registry's state and the `_schemas` records that build it.

Every change is one record keyed so that the newest record per key says everything about that key
(a subject version, or a compatibility setting): compaction may then drop older records, and replaying
what is left in offset order rebuilds the same state. Keys and values are JSON in the spirit of
Confluent's (keytype SCHEMA / CONFIG); a soft delete rewrites the version's SCHEMA record with
``deleted: true`` and a permanent delete writes a tombstone for it, plus a MAX_ID record so that an id
whose every record was compacted away is still never handed out again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import Any

from stack.registry.schemas import Reference, Schema
from stack.topiclog import Record

logger = logging.getLogger(__name__)

DEFAULT_LEVEL = "BACKWARD"


@dataclass(frozen=True)
class Version:
    """One version of a subject: which global schema id it has, and whether it was soft-deleted."""

    subject: str
    version: int
    schema_id: int
    schema: Schema
    deleted: bool = False

    def to_json(self) -> dict[str, Any]:
        """The body of GET /subjects/{s}/versions/{v} and of a lookup."""
        return {"subject": self.subject, "version": self.version, "id": self.schema_id, **self.schema.to_json()}


def encode(payload: dict[str, Any] | None) -> bytes | None:
    """Deterministic JSON, so that equal keys are equal bytes (what compaction compares)."""
    return None if payload is None else json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def schema_record(version: Version) -> Record:
    key = {"keytype": "SCHEMA", "subject": version.subject, "version": version.version, "magic": 1}
    value = {
        "subject": version.subject,
        "version": version.version,
        "id": version.schema_id,
        "schemaType": version.schema.schema_type,
        "schema": version.schema.text,
        "references": [ref.to_json() for ref in version.schema.references],
        "deleted": version.deleted,
    }
    return encode(key), encode(value)  # type: ignore[return-value]


def schema_tombstone(subject: str, version: int) -> Record:
    return encode({"keytype": "SCHEMA", "subject": subject, "version": version, "magic": 1}), None  # type: ignore[return-value]


def max_id_record(max_id: int) -> Record:
    return encode({"keytype": "MAX_ID", "magic": 0}), encode({"id": max_id})  # type: ignore[return-value]


def config_record(subject: str | None, level: str | None) -> Record:
    """A compatibility level for a subject (None: the global one); level None removes the setting."""
    key = encode({"keytype": "CONFIG", "subject": subject, "magic": 0})
    return key, encode(None if level is None else {"compatibilityLevel": level})  # type: ignore[return-value]


class RegistryState:
    """Subjects, versions, global ids and compatibility levels, rebuilt from records in offset order."""

    def __init__(self) -> None:
        self.subjects: dict[str, dict[int, Version]] = {}
        self.global_level = DEFAULT_LEVEL
        self.subject_levels: dict[str, str] = {}
        self.max_id = 0
        self._by_id: dict[int, Schema] = {}
        self._ids: dict[tuple[Any, ...], int] = {}
        self._users: dict[int, set[tuple[str, int]]] = {}

    # -- applying records -------------------------------------------------------------------

    def apply(self, key_bytes: bytes, value_bytes: bytes | None) -> None:
        """Apply one record of the `_schemas` topic; records of other kinds are logged and skipped."""
        key = json.loads(key_bytes)
        value = None if value_bytes is None else json.loads(value_bytes)
        keytype = key.get("keytype")
        if keytype == "SCHEMA":
            if value is None:
                self._remove_version(key["subject"], key["version"])
            else:
                self._put_version(_version_from_json(value))
        elif keytype == "MAX_ID":
            self.max_id = max(self.max_id, value["id"])
        elif keytype == "CONFIG":
            level = None if value is None else value["compatibilityLevel"]
            self._set_level(key.get("subject"), level)
        else:
            logger.warning("skipping a _schemas record of unknown keytype %r", keytype)

    def _put_version(self, version: Version) -> None:
        self._remove_version(version.subject, version.version)
        self.subjects.setdefault(version.subject, {})[version.version] = version
        self._by_id[version.schema_id] = version.schema
        self._ids[version.schema.identity] = version.schema_id
        self._users.setdefault(version.schema_id, set()).add((version.subject, version.version))
        self.max_id = max(self.max_id, version.schema_id)

    def _remove_version(self, subject: str, number: int) -> None:
        old = self.subjects.get(subject, {}).pop(number, None)
        if old is None:
            return
        if not self.subjects[subject]:
            del self.subjects[subject]
        users = self._users[old.schema_id]
        users.discard((subject, number))
        if not users:
            del self._users[old.schema_id], self._by_id[old.schema_id]
            self._ids.pop(old.schema.identity, None)

    def _set_level(self, subject: str | None, level: str | None) -> None:
        if subject is None:
            self.global_level = level or DEFAULT_LEVEL
        elif level is None:
            self.subject_levels.pop(subject, None)
        else:
            self.subject_levels[subject] = level

    # -- queries ------------------------------------------------------------------------------

    def versions(self, subject: str, include_deleted: bool = False) -> list[Version]:
        """A subject's versions, oldest first."""
        found = self.subjects.get(subject, {})
        return [found[n] for n in sorted(found) if include_deleted or not found[n].deleted]

    def subject_names(self, include_deleted: bool = False) -> list[str]:
        return sorted(s for s in self.subjects if self.versions(s, include_deleted))

    def schema_by_id(self, schema_id: int) -> Schema | None:
        return self._by_id.get(schema_id)

    def id_of(self, schema: Schema) -> int | None:
        """The global id this schema already has under any subject, if any."""
        return self._ids.get(schema.identity)

    def users_of(self, schema_id: int, include_deleted: bool = False) -> list[Version]:
        """Every subject version that carries this id."""
        found = (self.subjects[s][v] for s, v in sorted(self._users.get(schema_id, ())))
        return [version for version in found if include_deleted or not version.deleted]

    def level_of(self, subject: str) -> str:
        return self.subject_levels.get(subject, self.global_level)

    def referrers(self, subject: str, number: int) -> list[Version]:
        """Live versions whose schema references this subject version."""
        return [
            version
            for versions in self.subjects.values()
            for version in versions.values()
            if not version.deleted
            and any(ref.subject == subject and ref.version == number for ref in version.schema.references)
        ]

    @property
    def schema_count(self) -> int:
        return len(self._by_id)


def _version_from_json(value: dict[str, Any]) -> Version:
    schema = Schema(
        value.get("schemaType") or "AVRO",
        value["schema"],
        tuple(Reference.from_json(ref) for ref in value.get("references") or ()),
    )
    return Version(value["subject"], value["version"], value["id"], schema, bool(value.get("deleted", False)))


def soft_deleted(version: Version) -> Version:
    return replace(version, deleted=True)
