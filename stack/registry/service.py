"""The registry's operations with Confluent's semantics, independent of HTTP.

Reads come from memory. Writes are serialised by one lock: decide from memory, append the records to
the `_schemas` topic, and apply them to memory only after the broker acknowledged them. If a write
fails, what reached the log is unknown, so the state is rebuilt from the log before anything else runs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from stack.registry import compatibility, errors
from stack.registry.schemas import Reference, Schema, parse_avro
from stack.registry.state import (
    Record,
    RegistryState,
    Version,
    config_record,
    max_id_record,
    schema_record,
    schema_tombstone,
    soft_deleted,
)
from stack.topiclog import TopicLog

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_VERSION = 2**31 - 1
RETRY_SECONDS = 2.0

#: Where the registry keeps its schemas, as Confluent's does.
DEFAULT_TOPIC = "_schemas"
PARSED_CACHE_SIZE = 4096


class Registry:
    """Schema Registry operations over a `TopicLog`; until `begin_loading()` has finished, calls answer 503."""

    def __init__(self, log: TopicLog) -> None:
        self.log = log
        self.state = RegistryState()
        self.ready = False
        self._lock = asyncio.Lock()
        self._parsed: dict[Schema, Any] = {}
        self._loading: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def begin_loading(self) -> None:
        """Rebuild state from the topic in the background; requests get 503 until it is done."""
        self.ready = False
        self._loading = asyncio.get_running_loop().create_task(self._load_until_ready())

    async def close(self) -> None:
        if self._loading is not None:
            self._loading.cancel()
        await asyncio.to_thread(self.log.close)

    async def _load_until_ready(self) -> None:
        """Create the topic if needed and read it to its end, retrying until the broker answers."""
        while True:
            try:
                self.state = await _in_daemon_thread(self._load)
                break
            except Exception as exc:  # the broker may not be up yet; keep trying, and say why
                logger.warning("cannot load schemas from %s yet (%s); retrying", self.log.topic, exc)
                await asyncio.sleep(RETRY_SECONDS)
        self.ready = True
        logger.info(
            "schema store ready: %d subjects, %d schemas, next id %d",
            len(self.state.subjects),
            self.state.schema_count,
            self.state.max_id + 1,
        )

    def _load(self) -> RegistryState:
        self.log.ensure_topic()
        state = RegistryState()
        count = 0
        for key, value in self.log.replay():
            count += 1
            try:
                state.apply(key, value)
            except (ValueError, KeyError, TypeError, errors.RegistryError) as exc:
                logger.error("skipping an unreadable %s record (%r): %s", self.log.topic, key, exc)
        logger.info("read %d records from %s", count, self.log.topic)
        return state

    def _require_ready(self) -> None:
        if not self.ready:
            raise errors.store_loading(self.log.topic)

    async def _write(self, records: Sequence[Record]) -> None:
        try:
            await asyncio.to_thread(self.log.append, records)
        except Exception as exc:
            logger.error("write to %s failed (%s); reloading state from the topic", self.log.topic, exc)
            self.begin_loading()
            raise errors.store_error(str(exc)) from exc
        for key, value in records:
            self.state.apply(key, value)

    # -- parsing and compatibility ----------------------------------------------------------

    def _resolve(self, ref: Reference) -> Schema:
        found = {v.version: v for v in self.state.versions(ref.subject)}
        if ref.version not in found:
            raise errors.invalid_schema(f"reference {ref.name!r}: subject {ref.subject!r} has no version {ref.version}")
        return found[ref.version].schema

    def parse(self, schema: Schema) -> Any:
        """The fastavro-parsed form of an Avro schema (raising 42201 if invalid); other types: None."""
        if schema.schema_type != "AVRO":
            return None
        if schema not in self._parsed:
            if len(self._parsed) >= PARSED_CACHE_SIZE:
                self._parsed.clear()  # lookups of arbitrary schemas must not grow memory without bound
            self._parsed[schema] = parse_avro(schema, self._resolve)
        return self._parsed[schema]

    def incompatibilities(self, level: str, new: Schema, existing: Sequence[Schema]) -> list[str]:
        """Why `new` breaks `level` against `existing` (oldest first); JSON and PROTOBUF pass only at NONE."""
        if level == "NONE" or not existing:
            return []
        if new.schema_type != "AVRO" or any(old.schema_type != "AVRO" for old in existing):
            if any(old.schema_type != new.schema_type for old in existing):
                return [f"schema type changed to {new.schema_type}"]
            return [
                f"compatibility checks for {new.schema_type} schemas are not implemented by the embedded "
                f"registry; set this subject's compatibility to NONE to register new versions"
            ]
        problems = compatibility.check_level(level, self.parse(new), [self.parse(old) for old in existing])
        return [str(problem) for problem in problems]

    # -- subjects and versions --------------------------------------------------------------

    def subjects(self, prefix: str = "", deleted: bool = False, deleted_only: bool = False) -> list[str]:
        self._require_ready()
        names = self.state.subject_names(include_deleted=deleted or deleted_only)
        if deleted_only:
            live = set(self.state.subject_names())
            names = [name for name in names if name not in live]
        return [name for name in names if name.startswith(prefix)]

    def versions(self, subject: str, deleted: bool = False) -> list[Version]:
        self._require_ready()
        found = self.state.versions(subject, include_deleted=deleted)
        if not found:
            raise errors.subject_not_found(subject)
        return found

    def version(self, subject: str, version: str, deleted: bool = False) -> Version:
        number = parse_version(version)
        found = self.versions(subject, deleted)
        if number is None:
            return found[-1]
        match = next((v for v in found if v.version == number), None)
        if match is None:
            raise errors.version_not_found(subject, number)
        return match

    def schema(self, schema_id: int) -> Schema:
        self._require_ready()
        found = self.state.schema_by_id(schema_id)
        if found is None:
            raise errors.schema_not_found(f"Schema {schema_id} not found")
        return found

    def schema_users(self, schema_id: int, deleted: bool = False) -> list[Version]:
        self.schema(schema_id)
        return self.state.users_of(schema_id, include_deleted=deleted)

    def lookup(self, subject: str, schema: Schema, deleted: bool = False) -> Version:
        self._require_ready()
        found = self.state.versions(subject, include_deleted=deleted)
        if not found:
            raise errors.subject_not_found(subject)
        self.parse(schema)
        match = next((v for v in reversed(found) if v.schema.identity == schema.identity), None)
        if match is None:
            raise errors.schema_not_found()
        return match

    async def register(self, subject: str, schema: Schema) -> Version:
        """Confluent's register: an existing live version is returned as is; otherwise a new version,
        reusing the global id of an identical schema under any subject, if the level allows it."""
        self._require_ready()
        async with self._lock:
            self._require_ready()
            self.parse(schema)
            every = self.state.versions(subject, include_deleted=True)
            live = [v for v in every if not v.deleted]
            existing = next((v for v in live if v.schema.identity == schema.identity), None)
            if existing is not None:
                return existing
            problems = self.incompatibilities(self.state.level_of(subject), schema, [v.schema for v in live])
            if problems:
                raise errors.incompatible(subject, problems)
            schema_id = self.state.id_of(schema) or self.state.max_id + 1
            number = every[-1].version + 1 if every else 1
            new = Version(subject, number, schema_id, schema)
            await self._write([schema_record(new)])
            logger.info("registered %s version %d as id %d", subject, number, schema_id)
            return new

    def test_compatibility(self, subject: str, schema: Schema, version: str | None) -> list[str]:
        """Problems `schema` would have against one version (or, with None, all that the level covers)."""
        self._require_ready()
        self.parse(schema)
        level = self.state.level_of(subject)
        if version is None:
            existing = self.state.versions(subject)
        else:
            number = parse_version(version)
            live = self.state.versions(subject)
            if number is None and not live:
                return []  # nothing registered yet: any schema may become the first version
            existing = [self.version(subject, version)]
        return self.incompatibilities(level, schema, [v.schema for v in existing])

    async def delete_subject(self, subject: str, permanent: bool) -> list[int]:
        self._require_ready()
        async with self._lock:
            self._require_ready()  # a failed write may have started a reload meanwhile
            every = self.state.versions(subject, include_deleted=True)
            if not every:
                raise errors.subject_not_found(subject)
            live = [v for v in every if not v.deleted]
            if permanent:
                if live:
                    raise errors.subject_not_soft_deleted(subject)
                await self._write(
                    [*(schema_tombstone(subject, v.version) for v in every), max_id_record(self.state.max_id)]
                )
                return [v.version for v in every]
            if not live:
                raise errors.subject_soft_deleted(subject)
            for v in live:
                self._refuse_if_referenced(v)
            await self._write([schema_record(soft_deleted(v)) for v in live])
            return [v.version for v in live]

    async def delete_version(self, subject: str, version: str, permanent: bool) -> int:
        self._require_ready()
        number = parse_version(version)
        async with self._lock:
            self._require_ready()  # a failed write may have started a reload meanwhile
            every = self.state.versions(subject, include_deleted=True)
            if not every:
                raise errors.subject_not_found(subject)
            if number is None:
                candidates = every if permanent else [v for v in every if not v.deleted]
                if not candidates:
                    raise errors.subject_not_found(subject)
                number = candidates[-1].version
            target = next((v for v in every if v.version == number), None)
            if target is None:
                raise errors.version_not_found(subject, number)
            if permanent:
                if not target.deleted:
                    raise errors.version_not_soft_deleted(subject, number)
                await self._write([schema_tombstone(subject, number), max_id_record(self.state.max_id)])
            else:
                if target.deleted:
                    raise errors.version_soft_deleted(subject, number)
                self._refuse_if_referenced(target)
                await self._write([schema_record(soft_deleted(target))])
            return number

    def _refuse_if_referenced(self, version: Version) -> None:
        if self.state.referrers(version.subject, version.version):
            raise errors.referenced_schema(version.subject, version.version)

    def referenced_by(self, subject: str, version: str) -> list[int]:
        found = self.version(subject, version)
        return sorted({v.schema_id for v in self.state.referrers(subject, found.version)})

    # -- compatibility levels ---------------------------------------------------------------

    def level(self, subject: str | None, default_to_global: bool = False) -> str:
        self._require_ready()
        if subject is None:
            return self.state.global_level
        if subject in self.state.subject_levels:
            return self.state.subject_levels[subject]
        if default_to_global:
            return self.state.global_level
        raise errors.subject_config_not_found(subject)

    async def set_level(self, subject: str | None, level: object) -> str:
        self._require_ready()
        if not isinstance(level, str) or level.upper() not in compatibility.LEVELS:
            raise errors.invalid_compatibility_level(level)
        async with self._lock:
            self._require_ready()  # a failed write may have started a reload meanwhile
            await self._write([config_record(subject, level.upper())])
        return level.upper()

    async def delete_level(self, subject: str | None) -> str:
        """Forget a subject's level (it follows the global one again), or reset the global level."""
        previous = self.level(subject)
        async with self._lock:
            self._require_ready()  # a failed write may have started a reload meanwhile
            await self._write([config_record(subject, None)])
        return previous


async def _in_daemon_thread(function: Callable[[], T]) -> T:
    """Run a blocking call in a daemon thread: unlike `asyncio.to_thread`, shutdown (SIGTERM) does not
    wait for it, so a registry still waiting for an absent broker stops at once."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result, error = function(), None
        except Exception as exc:
            result, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop closed meanwhile: nobody is waiting any more
            pass

    threading.Thread(target=run, name="schemas-loader", daemon=True).start()
    return await future


def parse_version(text: str) -> int | None:
    """A version number, or None for "latest" (also spelled -1); anything else is error 42202."""
    if text == "latest":
        return None
    try:
        number = int(text)
    except ValueError:
        raise errors.invalid_version(text) from None
    if number == -1:
        return None
    if not 1 <= number <= MAX_VERSION:
        raise errors.invalid_version(text)
    return number
