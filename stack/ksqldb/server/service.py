"""What the REST routes call: statements through the engine and the command topic, push queries, inserts.

Statements run one at a time (a lock), so the command topic's order is the engine's order and a
replay after a restart rebuilds the same metastore with the same query ids.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from fraudstream.kafka import client_config, fetch_wait_ms

from .. import ast
from ..commands import Command, CommandLog
from ..engine import Engine, Result
from ..errors import KsqlError, ParseError
from ..formats import HttpSchemaRegistry
from ..formats.coerce import coerce, lookup_field
from ..kafka_runtime import (
    DEFAULT_SERVICE_ID,
    KafkaProcessingLog,
    KafkaRuntime,
    processing_log_topic,
    start_offsets,
    to_record,
)
from ..parser import parse
from ..pull import PullResult
from ..records import Record
from ..stream_time import TimeOrder
from .entities import BAD_STATEMENT, QUERY_ENDPOINT, SERVER_ERROR, command_status, entity, error_body, json_value

logger = logging.getLogger(__name__)

#: Statements that change the server's state: these, and only these, go to the command topic.
PERSISTED = (ast.CreateSource, ast.InsertInto, ast.DropSource, ast.Terminate, ast.AlterSource)


class StatementFailure(Exception):
    """A request failed; `body` is the ksqlDB error object and `status` the HTTP status."""

    def __init__(self, body: dict[str, Any], status: int = 400) -> None:
        super().__init__(body["message"])
        self.body = body
        self.status = status


class ServerEngine(Engine):
    """The engine with ksqlDB's query ids (suffix = the command's sequence number, replayed as recorded)
    and a per-request `auto.offset.reset` for the persistent queries a statement starts."""

    sequence = 0
    forced_query_id: str | None = None

    def _next_query_id(self, prefix: str, name: str) -> str:
        if self.forced_query_id is not None:
            return self.forced_query_id
        return f"{prefix}_{name}_{self.sequence}"

    def execute_statement(self, stmt: ast.Statement, properties: dict[str, Any] | None = None) -> Result:
        reset = (properties or {}).get("auto.offset.reset")
        saved = self.config.get("auto.offset.reset")
        if reset is not None:
            self.config["auto.offset.reset"] = reset
        try:
            return super().execute_statement(stmt, properties)
        finally:
            self.config["auto.offset.reset"] = saved


def _command_id(stmt: ast.Statement) -> str:
    name = getattr(stmt, "name", None) or getattr(stmt, "target", None) or getattr(stmt, "query_id", None) or "ALL"
    kind = getattr(stmt, "kind", "query").lower()
    action = {"DropSource": "drop", "Terminate": "terminate", "AlterSource": "alter"}.get(type(stmt).__name__, "create")
    return f"{kind}/`{name}`/{action}"


@dataclass
class Header:
    query_id: str
    names: list[str]
    types: list[str]

    @property
    def schema(self) -> str:
        return ", ".join(f"`{n}` {t}" for n, t in zip(self.names, self.types))


class PushQuery:
    """A running SELECT ... EMIT CHANGES, as ksqlDB runs one: the engine's transient query (a projection, an
    aggregation or a join, any state it needs in memory for as long as it runs) fed from every partition of
    every topic it reads, from the start or the true end (`auto.offset.reset`), committing nothing.

    `tq` is what the engine hands out for a push query: `id`, `columns`, `source_topics`, `done` (LIMIT
    reached) and `changelog(records) -> [(row, tombstone)]`."""

    def __init__(self, bootstrap: str, tq: Any, earliest: bool) -> None:
        self.tq = tq
        self.header = Header(tq.id, [n for n, _ in tq.columns], [str(t) for _, t in tq.columns])
        self.consumer = Consumer(
            client_config(
                bootstrap,
                **{
                    "group.id": f"_confluent-ksql-transient_{tq.id}",
                    "enable.auto.commit": False,
                    "fetch.wait.max.ms": fetch_wait_ms(50),
                    "enable.partition.eof": True,
                },
            )
        )
        assigned = [tp for topic in tq.source_topics for tp in start_offsets(bootstrap, None, topic, earliest)]
        self.consumer.assign(assigned)
        self.merge = TimeOrder([(tp.topic, tp.partition) for tp in assigned]) if len(tq.source_topics) > 1 else None
        self.closed = False
        self._lock = threading.Lock()

    @property
    def limit_reached(self) -> bool:
        return self.tq.done

    @property
    def done(self) -> bool:
        return self.closed or self.tq.done

    def poll(self, timeout: float = 0.5) -> list[tuple[list[Any], bool]]:
        """The next (row, tombstone) pairs, JSON-ready, at most up to the LIMIT."""
        with self._lock:
            if self.done:
                return []
            messages = self.consumer.consume(num_messages=2_000, timeout=timeout)
            if self.merge is not None:
                messages = self.merge.release(messages)
            changes = self.tq.changelog([to_record(m) for m in messages if m.error() is None])
            return [([json_value(v) for v in row], tombstone) for row, tombstone in changes]

    def close(self) -> None:
        self.closed = True
        with self._lock:
            if self.consumer is not None:
                self.consumer.close()
                self.consumer = None  # type: ignore[assignment]


class KsqlService:
    def __init__(
        self,
        bootstrap: str,
        schema_registry_url: str | None,
        config: dict[str, Any] | None = None,
        service_id: str = DEFAULT_SERVICE_ID,
        state_dir: Path | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.service_id = service_id
        self.runtime = KafkaRuntime(bootstrap, service_id, state_dir=state_dir)
        registry = HttpSchemaRegistry(schema_registry_url) if schema_registry_url else None
        self.engine = ServerEngine(registry, self.runtime, config)  # type: ignore[arg-type]
        self.engine.processing_log = KafkaProcessingLog(self.runtime.plog_producer, processing_log_topic(service_id))
        self.commands: CommandLog | None = None
        self.ready = False
        self.lock = threading.Lock()
        self.push_queries: dict[str, PushQuery] = {}
        self._push_ids = itertools.count()
        self._insert_serdes: dict[str, tuple[Any, Any]] = {}
        #: GET /status/<commandId>: every command this server ran, replayed at start-up or received since.
        self.command_statuses: dict[str, dict[str, Any]] = {}
        self._closing = threading.Event()

    # ---------------------------------------------------------------- start-up
    def start(self) -> None:
        """Create the internal topics and replay the command topic (blocking; retried until the broker answers)."""
        while True:
            try:
                self.runtime.create_topic(processing_log_topic(self.service_id), 1)
                self.commands = CommandLog(self.bootstrap, self.runtime)
                history = self.commands.read_all()
                break
            except Exception as e:  # noqa: BLE001 - the broker may still be starting
                logger.warning("waiting for the broker: %s", e)
                if self._closing.wait(1.0):  # stopped before the broker ever answered: exit, do not wait on
                    return
        self.runtime.deferring = True
        with self.lock:
            for cmd in history:
                self.engine.forced_query_id = cmd.query_id
                try:
                    for stmt in parse(cmd.statement):
                        result = self.engine.execute_statement(stmt, cmd.properties)
                        self.command_statuses[_command_id(stmt)] = command_status(result)
                except KsqlError as e:
                    logger.warning("command %d no longer applies (%s): %s", cmd.offset, e.message, cmd.statement)
                finally:
                    self.engine.forced_query_id = None
            self.runtime.finish_replay()
        logger.info("replayed %d commands; %d persistent queries running", len(history), len(self.engine.queries))
        self.ready = True

    def close(self) -> None:
        self._closing.set()
        for pq in list(self.push_queries.values()):
            pq.close()
        self.runtime.close()

    # ---------------------------------------------------------------- /ksql
    def execute(self, sql: str, properties: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            statements = parse(sql)
        except KsqlError as e:
            raise StatementFailure(error_body("statement_error", BAD_STATEMENT, e.message, sql, [])) from None
        props = dict(properties)
        entities: list[dict[str, Any]] = []
        for stmt in statements:
            text = getattr(stmt, "text", sql)
            if isinstance(stmt, ast.SetProperty):
                props[stmt.name] = stmt.value
                continue
            if isinstance(stmt, ast.UnsetProperty):
                props.pop(stmt.name, None)
                continue
            if isinstance(stmt, ast.PushQuery):
                raise StatementFailure(
                    error_body(
                        "statement_error",
                        QUERY_ENDPOINT,
                        "The following statement types should be issued to the websocket endpoint '/query':\n"
                        "\t* PRINT\n\t* SELECT",
                        text,
                        entities,
                    )
                )
            try:
                entities.append(self._run(stmt, props))
            except KsqlError as e:
                raise StatementFailure(
                    error_body("statement_error", BAD_STATEMENT, e.message, text, entities)
                ) from None
            except StatementFailure:
                raise
            except RecursionError:
                message = "The statement nests too deeply to run"
                raise StatementFailure(error_body("statement_error", BAD_STATEMENT, message, text, entities)) from None
            except Exception as e:  # noqa: BLE001 - a server-side failure, reported as ksqlDB does
                logger.exception("statement failed: %s", text)
                raise StatementFailure(error_body("generic_error", SERVER_ERROR, str(e)), 500) from None
        return entities

    def _run(self, stmt: ast.Statement, props: dict[str, Any]) -> dict[str, Any]:
        assert self.commands is not None
        with self.lock:
            self.engine.sequence = self.commands.next_offset
            result = self.engine.execute_statement(stmt, props)
            sequence = None
            if isinstance(stmt, PERSISTED):
                sequence = self.commands.append(Command(stmt.text, props, result.query_id))  # type: ignore[attr-defined]
                self._insert_serdes.clear()
            self.command_statuses[_command_id(stmt)] = command_status(result)
        return entity(result, sequence, _command_id(stmt))

    def command_status(self, command_id: str) -> dict[str, Any] | None:
        """What GET /status/<commandId> answers: statements run synchronously, so a known command succeeded."""
        return self.command_statuses.get(command_id)

    # ---------------------------------------------------------------- push queries
    def open_push(self, sql: str, properties: dict[str, Any]) -> PushQuery | PullResult:
        """A push query (rows as they come) or, without EMIT, a pull query (its rows, read at once)."""
        try:
            statements = parse(sql)
        except ParseError as e:
            raise StatementFailure(error_body("statement_error", BAD_STATEMENT, e.message, sql, [])) from None
        except KsqlError as e:
            raise StatementFailure(error_body("statement_error", BAD_STATEMENT, e.message, sql, [])) from None
        if len(statements) != 1 or not isinstance(statements[0], ast.PushQuery):
            raise StatementFailure(
                error_body(
                    "statement_error", BAD_STATEMENT, "The /query endpoint takes exactly one SELECT statement.", sql, []
                )
            )
        stmt = statements[0]
        try:
            with self.lock:
                result = self.engine.execute_statement(stmt, properties)
        except KsqlError as e:
            raise StatementFailure(error_body("statement_error", BAD_STATEMENT, e.message, stmt.text, [])) from None
        except RecursionError:
            message = "The statement nests too deeply to run"
            raise StatementFailure(error_body("statement_error", BAD_STATEMENT, message, stmt.text, [])) from None
        if result.kind == "pullQuery":
            return result.data
        tq = result.data
        tq.id = f"transient_{tq.plan.source.name}_{next(self._push_ids)}_{int(time.time() * 1000)}"
        reset = str(properties.get("auto.offset.reset", self.engine.config.get("auto.offset.reset", "latest")))
        try:
            pq = PushQuery(self.bootstrap, tq, reset.lower() == "earliest")
        except Exception as e:  # noqa: BLE001 - e.g. the source's topic is gone: an error body, not a 500 page
            topics = ", ".join(tq.source_topics)
            raise StatementFailure(
                error_body("generic_error", SERVER_ERROR, f"Cannot read {topics}: {e}"), 500
            ) from None
        self.push_queries[tq.id] = pq
        return pq

    def close_push(self, query_id: str) -> bool:
        pq = self.push_queries.pop(query_id, None)
        if pq is None:
            return False
        pq.close()
        return True

    # ---------------------------------------------------------------- /inserts-stream
    def insert_row(self, target: str, row: dict[str, Any]) -> None:
        """Serialise one JSON row into `target`'s topic and wait for the broker's acknowledgement."""
        with self.lock:
            source = self.engine.metastore.get(target.upper()) or self.engine.metastore.get(target)
            if source is None:
                raise KsqlError(f"Cannot insert values into an unknown stream/table: {target}")
            if source.kind != "STREAM":
                raise KsqlError(f"Cannot insert values into {source.kind.lower()} {source.name}")
            serdes = self._insert_serdes.get(source.name)
            if serdes is None:
                serdes = self._insert_serdes[source.name] = self.engine._serdes(source)
        key_serde, value_serde = serdes
        try:
            keys = [coerce(lookup_field(row, c.name), c.type) for c in source.schema.key]
            values = [coerce(lookup_field(row, c.name), c.type) for c in source.schema.value]
        except Exception as e:  # noqa: BLE001 - SerdeError/EvalError/ValueError: the row is rejected
            raise KsqlError(f"Failed to insert values into '{source.name}'. {e}") from None
        ts = lookup_field(row, "ROWTIME")
        self.runtime.produce(
            Record(
                source.topic,
                key_serde.serialize(keys) if source.schema.key else None,
                value_serde.serialize(values),
                int(ts) if ts is not None else int(time.time() * 1000),
            )
        )
