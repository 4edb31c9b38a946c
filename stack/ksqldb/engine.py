"""The engine: executes statements against the metastore and a runtime (in-memory or Kafka-backed).

`Engine.execute(sql)` parses and runs each statement in order and returns one `Result` per statement.
Errors are KsqlError subclasses carrying ksqlDB's messages; constructs the engine does not implement
raise UnsupportedError rather than doing something different from ksqlDB.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass
from typing import Any

from . import ast
from . import values as V
from .aggregation import AggregateTransientQuery
from .errors import EvalError, KsqlError, KsqlStatementError, UnsupportedError
from .executor import PersistentQuery, TransientQuery
from .expressions import Compiler, Scope
from .formats import FormatInfo, SchemaRegistry, check_format_name, make_serde, validate
from .formats.avro import sql_type_of
from .formats.delimited import parse_delimiter
from .functions import REGISTRY
from .joins import JoinPlan
from .metastore import RESERVED, Column, DataSource, LogicalSchema, MetaStore
from .parser import parse
from .pipeline import ProjectionPlan
from .planner import plan_query, with_window_bounds
from .processing_log import ProcessingLog
from .pull import plan_pull, run_pull
from .records import Record
from .runtime import InMemoryRuntime, Query, Runtime
from .stream_time import max_task_idle_ms, record_cache
from .tables import TableQuery
from .types import BYTES, STRING, ArrayType, DecimalType, MapType, StructType, can_implicitly_cast
from .windows import WindowedKeySerde, parse_window_source

HEADERS_TYPE = ArrayType(StructType((("KEY", STRING), ("VALUE", BYTES))))

DEFAULT_CONFIG: dict[str, Any] = {
    "ksql.persistence.default.format.key": "KAFKA",
    "ksql.persistence.default.format.value": None,
    "ksql.output.topic.name.prefix": "",
    "auto.offset.reset": "latest",
    "ksql.new.query.planner.enabled": False,
}

KNOWN_PROPERTIES = {
    "KAFKA_TOPIC",
    "VALUE_FORMAT",
    "KEY_FORMAT",
    "FORMAT",
    "PARTITIONS",
    "REPLICAS",
    "TIMESTAMP",
    "TIMESTAMP_FORMAT",
    "VALUE_DELIMITER",
    "KEY_DELIMITER",
    "WRAP_SINGLE_VALUE",
    "VALUE_AVRO_SCHEMA_FULL_NAME",
    "KEY_AVRO_SCHEMA_FULL_NAME",
    "VALUE_SCHEMA_ID",
    "RETENTION_MS",
    "CLEANUP_POLICY",
    "WINDOW_TYPE",
    "WINDOW_SIZE",
}


#: Valid ksqlDB WITH properties this engine does not implement (refused loudly, never ignored).
UNSUPPORTED_PROPERTIES = {
    "KEY_SCHEMA_FULL_NAME": "schema full names for keys",
    "VALUE_SCHEMA_FULL_NAME": "schema full names",
    "KEY_SCHEMA_ID": "key schema ids",
    "KEY_PROTOBUF_NULLABLE_REPRESENTATION": "PROTOBUF",
    "VALUE_PROTOBUF_NULLABLE_REPRESENTATION": "PROTOBUF",
    "SOURCED_BY_CONNECTOR": "connector-sourced sources",
}


@dataclass
class Result:
    """Outcome of one statement: `kind` names the ksqlDB response type; `data` carries its payload."""

    kind: str
    statement: str
    message: str = ""
    data: Any = None
    query_id: str | None = None


def _bool_prop(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    return str(v).strip().lower() == "true"


class Engine:
    def __init__(
        self, registry: SchemaRegistry, runtime: Runtime | None = None, config: dict[str, Any] | None = None
    ) -> None:
        self.registry = registry
        self.runtime = runtime if runtime is not None else InMemoryRuntime()
        self.config = dict(DEFAULT_CONFIG)
        self.config.update(config or {})
        self.metastore = MetaStore()
        self.queries: dict[str, Query] = {}
        self.processing_log = ProcessingLog()
        self._query_counter = itertools.count()

    # ------------------------------------------------------------------ entry points
    def execute(self, sql: str, properties: dict[str, Any] | None = None) -> list[Result]:
        results = []
        for stmt in parse(sql):
            results.append(self.execute_statement(stmt, properties or {}))
        return results

    def execute_statement(self, stmt: ast.Statement, properties: dict[str, Any] | None = None) -> Result:
        props = dict(self.config)
        props.update(properties or {})
        handler = getattr(self, "_" + type(stmt).__name__, None)
        if handler is None:
            raise UnsupportedError(f"statement {type(stmt).__name__}")
        return handler(stmt, props)

    # ------------------------------------------------------------------ helpers
    def _formats(
        self,
        stmt_props: dict[str, Any],
        props: dict[str, Any],
        inherit_key: FormatInfo | None,
        inherit_value: FormatInfo | None,
    ) -> tuple[FormatInfo, FormatInfo]:
        fmt = stmt_props.get("FORMAT")
        key_fmt = stmt_props.get("KEY_FORMAT")
        value_fmt = stmt_props.get("VALUE_FORMAT")
        if fmt is not None and key_fmt is not None:
            raise KsqlStatementError(
                "Cannot supply both 'KEY_FORMAT' and 'FORMAT' properties, as 'FORMAT' sets both key and value "
                "formats. Either use just 'FORMAT', or use 'KEY_FORMAT' and 'VALUE_FORMAT'."
            )
        if fmt is not None and value_fmt is not None:
            raise KsqlStatementError(
                "Cannot supply both 'VALUE_FORMAT' and 'FORMAT' properties, as 'FORMAT' sets both key and value "
                "formats. Either use just 'FORMAT', or use 'KEY_FORMAT' and 'VALUE_FORMAT'."
            )
        if fmt is not None:
            key_fmt = value_fmt = fmt
        if value_fmt is None:
            if inherit_value is not None:
                value_name = inherit_value.name
            elif props.get("ksql.persistence.default.format.value"):
                value_name = str(props["ksql.persistence.default.format.value"])
            else:
                raise KsqlStatementError(
                    "Statement is missing the 'VALUE_FORMAT' property from the WITH clause. Either provide one or "
                    "set a default via the 'ksql.persistence.default.format.value' config."
                )
        else:
            value_name = str(value_fmt)
        if key_fmt is None:
            key_name = (
                inherit_key.name
                if inherit_key is not None
                else str(props.get("ksql.persistence.default.format.key") or "KAFKA")
            )
        else:
            key_name = str(key_fmt)
        key_name = check_format_name(key_name)
        value_name = check_format_name(value_name)
        delimiter = stmt_props.get("VALUE_DELIMITER")
        if delimiter is not None and value_name != "DELIMITED":
            raise KsqlStatementError(f"{value_name} does not support the following configs: [delimiter]")
        wrap = stmt_props.get("WRAP_SINGLE_VALUE")
        full_name = stmt_props.get("VALUE_AVRO_SCHEMA_FULL_NAME")
        if full_name is not None and not str(full_name).strip():
            raise KsqlStatementError("fullSchemaName cannot be empty. Format configuration: {fullSchemaName=}")
        schema_id = stmt_props.get("VALUE_SCHEMA_ID")
        if schema_id is not None:
            if value_name != "AVRO":
                raise UnsupportedError(f"VALUE_SCHEMA_ID with {value_name}")
            try:
                self.registry.schema_by_id(int(schema_id))
            except KeyError:
                raise KsqlStatementError(f"Schema with id {schema_id} does not exist in the Schema Registry") from None
        value = FormatInfo(
            value_name,
            delimiter=parse_delimiter(str(delimiter)) if delimiter is not None else None,
            wrap_single=_bool_prop(wrap) if wrap is not None else None,
            full_schema_name=str(full_name).strip() if full_name is not None else None,
            schema_id=int(schema_id) if schema_id is not None else None,
        )
        key_delim = stmt_props.get("KEY_DELIMITER")
        key_full_name = stmt_props.get("KEY_AVRO_SCHEMA_FULL_NAME")
        key = FormatInfo(
            key_name,
            delimiter=parse_delimiter(str(key_delim)) if key_delim is not None else None,
            full_schema_name=str(key_full_name).strip() if key_full_name is not None else None,
        )
        return key, value

    def _check_props(self, stmt_props: dict[str, Any]) -> None:
        for k in stmt_props:
            if k in UNSUPPORTED_PROPERTIES:
                raise UnsupportedError(f"WITH property {k} ({UNSUPPORTED_PROPERTIES[k]})")
            if k not in KNOWN_PROPERTIES:
                raise KsqlStatementError(f"Invalid config variable(s) in the WITH clause: {k}")

    def _next_query_id(self, prefix: str, name: str) -> str:
        return f"{prefix}_{name}_{next(self._query_counter)}"

    def _serdes(self, source: DataSource) -> tuple[Any, Any]:
        key_cols = [(c.name, c.type) for c in source.schema.key]
        value_cols = [(c.name, c.type) for c in source.schema.value]
        key = make_serde(source.key_format, key_cols, is_key=True, topic=source.topic, registry=self.registry)
        value = make_serde(source.value_format, value_cols, is_key=False, topic=source.topic, registry=self.registry)
        if source.window is not None:  # the key values are followed by the window's start and end
            key = WindowedKeySerde(key, source.window)
        return key, value

    def _infer_columns(
        self,
        topic: str,
        key_fmt: FormatInfo,
        value_fmt: FormatInfo,
        elements: tuple[ast.TableElement, ...],
        kind: str = "STREAM",
    ) -> tuple[ast.TableElement, ...]:
        """Schema inference from the registry for AVRO sources created without (some) columns."""
        out = list(elements)
        have_key = any(e.constraint in ("KEY", "PRIMARY KEY") for e in elements)
        have_value = any(e.constraint is None for e in elements)
        if key_fmt.name == "AVRO" and not have_key:
            latest = self.registry.latest(f"{topic}-key")
            if latest is not None:
                key_constraint = "PRIMARY KEY" if kind == "TABLE" else "KEY"
                out = [ast.TableElement("ROWKEY", sql_type_of(latest[1]), key_constraint)] + out
        if value_fmt.name == "AVRO" and not have_value:
            latest = self.registry.latest(f"{topic}-value")
            if value_fmt.schema_id is not None:
                latest = (value_fmt.schema_id, self.registry.schema_by_id(value_fmt.schema_id))
            if latest is None:
                raise KsqlStatementError(
                    f"Schema for message values on topic '{topic}' does not exist in the Schema Registry.\n"
                    f"Subject: {topic}-value\n"
                    "Possible causes include:\n"
                    "- The topic itself does not exist\n"
                    "\t-> Use SHOW TOPICS; to check\n"
                    "- Messages on the topic are not serialized using a format Schema Registry supports\n"
                    f"\t-> Use PRINT '{topic}' FROM BEGINNING; to verify"
                )
            raw = latest[1]
            if isinstance(raw, dict) and raw.get("type") == "record" and value_fmt.wrap_single is not False:
                t = sql_type_of(raw)
                out += [ast.TableElement(n, ft) for n, ft in t.fields]  # names upper-cased by sql_type_of
            else:
                out.append(ast.TableElement("ROWVAL", sql_type_of(raw)))
        return tuple(out)

    # ------------------------------------------------------------------ DDL
    def _CreateSource(self, stmt: ast.CreateSource, props: dict[str, Any]) -> Result:
        if stmt.query is not None:
            return self._create_as_select(stmt, props)
        stmt_props = dict(stmt.properties)
        self._check_props(stmt_props)
        existing = self.metastore.get(stmt.name)
        if stmt.or_replace and (stmt.is_source or (existing is not None and existing.is_source)):
            raise KsqlError(
                f"Cannot add {stmt.kind.lower()} '{stmt.name}': CREATE OR REPLACE is not supported on source "
                f"{stmt.kind.lower()}s."
            )
        if existing is not None and stmt.if_not_exists:
            return Result("currentStatus", stmt.text, f"{stmt.kind.title()} {stmt.name} already exists")
        topic = stmt_props.get("KAFKA_TOPIC")
        if topic is None:
            raise KsqlStatementError('Missing required property "KAFKA_TOPIC" for the stream or table.')
        topic = str(topic)
        key_fmt, value_fmt = self._formats(stmt_props, props, None, None)
        elements = stmt.elements or ()
        elements = self._infer_columns(topic, key_fmt, value_fmt, elements, stmt.kind)
        if not elements:
            raise KsqlStatementError("The statement does not define any columns.")
        key_cols, value_cols, header_cols = [], [], []
        seen: set[str] = set()
        for el in elements:
            if el.name in RESERVED:
                raise KsqlStatementError(f"'{el.name}' is a reserved column name.")
            if el.name in seen:
                raise KsqlStatementError(f"Duplicate column names: {el.name}")
            seen.add(el.name)
            if el.constraint == "KEY" and stmt.kind == "TABLE":
                raise KsqlStatementError(
                    f"{ast.at(el)}Column `{el.name}` is a 'KEY' column: please use 'PRIMARY KEY' for tables.\n"
                    "Tables have PRIMARY KEYs, which are unique and NON NULL.\n"
                    "Streams have KEYs, which have no uniqueness or NON NULL constraints."
                )
            if el.constraint == "PRIMARY KEY" and stmt.kind == "STREAM":
                raise KsqlStatementError(
                    f"{ast.at(el)}Column `{el.name}` is a 'PRIMARY KEY' column: please use 'KEY' for streams.\n"
                    "Tables have PRIMARY KEYs, which are unique and NON NULL.\n"
                    "Streams have KEYs, which have no uniqueness or NON NULL constraints."
                )
            if el.constraint == "HEADERS":
                if el.type != HEADERS_TYPE:
                    raise KsqlStatementError(f"Invalid type for HEADERS column: expected {HEADERS_TYPE}, got {el.type}")
                header_cols.append(Column(el.name, el.type, header="*"))
                continue
            if el.constraint == "HEADER":
                if el.type != BYTES:
                    raise KsqlStatementError(
                        f"Invalid type for HEADER('{el.header_key}') column: expected BYTES, got {el.type}"
                    )
                header_cols.append(Column(el.name, el.type, header=el.header_key))
                continue
            is_key = el.constraint in ("KEY", "PRIMARY KEY")
            (key_cols if is_key else value_cols).append(Column(el.name, el.type, is_key))
        if stmt.kind == "TABLE" and not key_cols:
            raise KsqlStatementError("Tables require a PRIMARY KEY. Please define the PRIMARY KEY.")
        if not key_cols:
            key_fmt = (
                FormatInfo("NONE")
                if stmt_props.get("KEY_FORMAT") is None and stmt_props.get("FORMAT") is None
                else key_fmt
            )
        validate(key_fmt, [(c.name, c.type) for c in key_cols], is_key=True)
        validate(value_fmt, [(c.name, c.type) for c in value_cols], is_key=False)
        window = None
        if stmt_props.get("WINDOW_TYPE") is not None or stmt_props.get("WINDOW_SIZE") is not None:
            if stmt_props.get("WINDOW_TYPE") is None:
                raise KsqlStatementError("'WINDOW_SIZE' requires 'WINDOW_TYPE' to be set.")
            window = parse_window_source(stmt_props["WINDOW_TYPE"], stmt_props.get("WINDOW_SIZE"))
        schema = LogicalSchema(tuple(key_cols), tuple(value_cols), tuple(header_cols), windowed=window is not None)
        ts_col = stmt_props.get("TIMESTAMP")
        if ts_col is not None:
            ts_col = str(ts_col).upper()
            ts_column = schema.find(ts_col)
            if ts_column is None:
                raise KsqlStatementError(
                    f"The TIMESTAMP column set in the WITH clause does not exist in the schema: '{ts_col}'"
                )
            if ts_column.type.name not in ("BIGINT", "TIMESTAMP", "STRING"):
                raise KsqlStatementError(
                    f"Timestamp column, `{ts_col}`, should be LONG(INT64), TIMESTAMP, or a String with a "
                    "timestamp.format specified."
                )
        source = DataSource(
            name=stmt.name,
            kind=stmt.kind,
            schema=schema,
            topic=topic,
            key_format=key_fmt,
            value_format=value_fmt,
            sql=stmt.text,
            is_source=stmt.is_source,
            timestamp_column=ts_col,
            timestamp_format=stmt_props.get("TIMESTAMP_FORMAT"),
            partitions=int(stmt_props.get("PARTITIONS", 1) or 1),
            window=window,
        )
        self.metastore.add(source, replace=stmt.or_replace)
        self.runtime.create_topic(topic, source.partitions)
        return Result("currentStatus", stmt.text, f"{stmt.kind.title()} created")

    def _create_as_select(self, stmt: ast.CreateSource, props: dict[str, Any]) -> Result:
        assert stmt.query is not None
        stmt_props = dict(stmt.properties)
        self._check_props(stmt_props)
        for prop in ("WINDOW_TYPE", "WINDOW_SIZE"):
            if prop in stmt_props:
                raise KsqlStatementError(f"Invalid config variable(s) in the WITH clause: {prop}")
        existing = self.metastore.get(stmt.name)
        if existing is not None and not stmt.or_replace:
            if stmt.if_not_exists:
                return Result("currentStatus", stmt.text, f"{stmt.kind.title()} {stmt.name} already exists")
            raise KsqlStatementError(
                f"Cannot add {stmt.kind.lower()} '{stmt.name}': A {existing.kind.lower()} with the same name already exists"
            )
        if existing is not None and existing.is_source:
            raise KsqlError(
                f"Cannot add {stmt.kind.lower()} '{stmt.name}': CREATE OR REPLACE is not supported on source {stmt.kind.lower()}s."
            )
        if stmt.or_replace and existing is not None:
            raise UnsupportedError("CREATE OR REPLACE ... AS SELECT on an existing source")
        new_planner = _bool_prop(props.get("ksql.new.query.planner.enabled", False))
        plan = plan_query(stmt.query, self.metastore, stmt.name, new_planner, props)
        if stmt.kind != plan.result_kind:
            raise KsqlStatementError(
                f"Invalid result type. Your SELECT query produces a {plan.result_kind}. "
                f"Please use CREATE {plan.result_kind} AS SELECT statement instead."
            )
        source = plan.source
        window = plan.window.info() if getattr(plan, "window", None) is not None else source.window
        if isinstance(plan, ProjectionPlan) and source.window is not None:
            if plan.partitioned:
                raise KsqlStatementError(
                    "Implicit repartitioning of windowed sources is not supported. "
                    "See https://github.com/confluentinc/ksql/issues/4385."
                )
            plan = with_window_bounds(plan)  # the sink's keys keep their source windows
        key_fmt, value_fmt = self._formats(stmt_props, props, source.key_format, source.value_format)
        if not plan.schema.key:
            if stmt_props.get("KEY_FORMAT") is not None and getattr(plan, "partitioned", False):
                raise KsqlStatementError("Key format specified for stream without key columns.")
            key_fmt = FormatInfo("NONE")
        elif key_fmt.name == "NONE":
            key_fmt = FormatInfo(str(props.get("ksql.persistence.default.format.key") or "KAFKA"))
        if (
            value_fmt.delimiter is None
            and value_fmt.name == "DELIMITED"
            and source.value_format.name == "DELIMITED"
            and stmt_props.get("VALUE_FORMAT") is None
            and stmt_props.get("FORMAT") is None
        ):
            value_fmt = FormatInfo(
                "DELIMITED", delimiter=source.value_format.delimiter, wrap_single=value_fmt.wrap_single
            )
        try:
            validate(key_fmt, [(c.name, c.type) for c in plan.schema.key], is_key=True)
        except KsqlStatementError as e:
            if not hasattr(plan, "statement_sql"):
                raise
            raise KsqlStatementError(
                f"{e.message}\nStatement: {plan.statement_sql(stmt.name, stmt.properties)}"
            ) from None
        validate(value_fmt, [(c.name, c.type) for c in plan.schema.value], is_key=False)
        topic = stmt_props.get("KAFKA_TOPIC")
        topic = str(topic) if topic is not None else f"{props.get('ksql.output.topic.name.prefix') or ''}{stmt.name}"
        ts_col = stmt_props.get("TIMESTAMP")
        if ts_col is not None:
            ts_col = str(ts_col).upper()
            if plan.schema.find(ts_col) is None:
                raise KsqlStatementError(
                    f"The TIMESTAMP column set in the WITH clause does not exist in the schema: '{ts_col}'"
                )
        if any(topic == s.topic for s in _sources(plan)):
            raise KsqlStatementError(
                f"Cannot create {stmt.name}: the query would write to the topic it reads from ({topic})."
            )
        partitions = int(stmt_props.get("PARTITIONS", source.partitions) or 1)
        sink = DataSource(
            name=stmt.name,
            kind=stmt.kind,
            schema=dataclasses.replace(plan.schema, windowed=True) if window is not None else plan.schema,
            topic=topic,
            key_format=key_fmt,
            value_format=value_fmt,
            sql=stmt.text,
            timestamp_column=ts_col,
            timestamp_format=stmt_props.get("TIMESTAMP_FORMAT"),
            partitions=partitions,
            window=window,
        )
        query_id = self._next_query_id("CTAS" if stmt.kind == "TABLE" else "CSAS", stmt.name)
        query = self._build_query(query_id, plan, sink, stmt.text)
        self.metastore.add(sink)
        self.runtime.create_topic(topic, partitions)
        sink.writers.append(query_id)
        sink.created_by = query_id
        for read in _sources(plan):
            read.readers.append(query_id)
        self._start(query, props)
        return Result("currentStatus", stmt.text, f"Created query with ID {query_id}", query_id=query_id)

    def _build_query(self, query_id: str, plan: Any, sink: DataSource, sql: str) -> Query:
        key_in, value_in = self._serdes(plan.source)
        key_out, value_out = self._serdes(sink)
        state_stores = getattr(self.runtime, "state_stores", None)
        stores = state_stores(query_id) if state_stores is not None else None
        if isinstance(plan, JoinPlan):
            plan.check_copartitioning(self.runtime.partitions.get)
            if not getattr(self.runtime, "runs_joins", False):
                raise UnsupportedError("join queries on this runtime (it reads one topic per query)")
            return plan.build(query_id, sink, self._serdes, key_out, value_out, self.processing_log, sql, stores)
        return build_query(query_id, plan, sink, key_in, value_in, key_out, value_out, self.processing_log, sql, stores)

    def _start(self, query: Query, props: dict[str, Any]) -> None:
        """Register and run a query; `auto.offset.reset` (session or request property) picks where it starts."""
        self.queries[query.id] = query
        replay = str(props.get("auto.offset.reset", "latest")).lower() == "earliest"
        query.max_task_idle_ms = max_task_idle_ms(props)  # type: ignore[attr-defined]
        query.record_cache = record_cache(props)  # type: ignore[attr-defined]
        self.runtime.add_query(query, replay=replay)

    def _InsertInto(self, stmt: ast.InsertInto, props: dict[str, Any]) -> Result:
        target = self.metastore.get(stmt.target)
        if target is None:
            raise KsqlStatementError(f"{ast.at(stmt.loc)}Source {stmt.target} does not exist.")
        if target.is_source:
            raise KsqlError(f"Cannot insert into read-only {target.kind.lower()}: {target.name}")
        plan = plan_query(stmt.query, self.metastore, target.name, config=props)
        if plan.result_kind != target.kind:
            raise KsqlStatementError(
                f"Incompatible data sink and query result. Data sink ({target.name}) type is K{target.kind} "
                f"but select query result is K{plan.result_kind}."
            )
        if target.kind != "STREAM":
            raise UnsupportedError("INSERT INTO tables")
        if [(c.name, c.type) for c in plan.schema.key] != [(c.name, c.type) for c in target.schema.key] or [
            (c.name, c.type) for c in plan.schema.value
        ] != [(c.name, c.type) for c in target.schema.value]:
            raise KsqlStatementError(
                "Incompatible schema between results and sink.\n"
                f"Result schema is {plan.schema}\nSink schema is {target.schema}"
            )
        if any(s.topic == target.topic for s in _sources(plan)):
            raise KsqlStatementError(
                f"Cannot insert into {target.name}: the query reads from the same topic ({target.topic}) it writes to."
            )
        query_id = self._next_query_id("INSERTQUERY", "").replace("__", "_")
        query = self._build_query(query_id, plan, target, stmt.text)
        target.writers.append(query_id)
        for read in _sources(plan):
            read.readers.append(query_id)
        self._start(query, props)
        return Result("currentStatus", stmt.text, f"Created query with ID {query_id}", query_id=query_id)

    def _InsertValues(self, stmt: ast.InsertValues, props: dict[str, Any]) -> Result:
        target = self.metastore.get(stmt.target)
        if target is None:
            raise KsqlStatementError(
                f"Cannot insert values into an unknown stream/table: {stmt.target}"
                f"{self.metastore.alternatives(stmt.target)}"
            )
        if target.is_source:
            raise KsqlError(f"Cannot insert values into read-only {target.kind.lower()}: {target.name}")
        schema = target.schema
        all_cols = [c.name for c in schema.key + schema.value]  # header columns are read-only
        columns = list(stmt.columns) if stmt.columns else all_cols
        if len(columns) != len(stmt.values):
            raise KsqlStatementError(
                f"Expected a value for each column. Expected Columns: {columns}. Got {list(stmt.values)}"
            )
        compiler = Compiler(Scope([]), "INSERT VALUES")
        provided: dict[str, Any] = {}
        rowtime = None
        for name, expr in zip(columns, stmt.values):
            c = compiler.compile(expr)
            if name == "ROWTIME":
                rowtime = c.fn(())
                continue
            col = schema.find(name)
            if col is None:
                raise KsqlStatementError(f"Column name {name} does not exist.")
            if col.header is not None:
                raise KsqlStatementError(f"Cannot insert into HEADER columns: {name}")
            try:
                value = c.fn(())
            except Exception as e:  # noqa: BLE001 - report any evaluation failure to the user
                raise KsqlStatementError(f"Failed to insert values into '{target.name}'. {e}") from None
            if value is not None and c.type != col.type:
                # values widen as ksqlDB's coercer allows (INT -> BIGINT/DECIMAL/DOUBLE, decimal scale), no more
                if not can_implicitly_cast(c.type, col.type) and not (
                    isinstance(c.type, DecimalType) and isinstance(col.type, DecimalType)
                ):
                    raise KsqlStatementError(
                        f"Failed to insert values into '{target.name}'. Expected type {col.type} for field "
                        f"`{name}` but got {value!r}({c.type})"
                    )
                try:
                    value = V.cast(value, c.type, col.type)
                except EvalError as e:
                    raise KsqlStatementError(f"Failed to insert values into '{target.name}'. {e}") from None
            provided[name] = value
        key_serde, value_serde = self._serdes(target)
        keys = [provided.get(c.name) for c in schema.key]
        values = [provided.get(c.name) for c in schema.value]
        rec = Record(
            target.topic,
            key_serde.serialize(keys) if schema.key else None,
            value_serde.serialize(values),
            int(rowtime) if rowtime is not None else int(time.time() * 1000),
        )
        self.runtime.produce(rec)
        return Result("currentStatus", stmt.text, "")

    def _DropSource(self, stmt: ast.DropSource, props: dict[str, Any]) -> Result:
        source = self.metastore.get(stmt.name)
        if source is None:
            if stmt.if_exists:
                return Result("currentStatus", stmt.text, f"Source `{stmt.name}` does not exist.")
            hint = self.metastore.alternatives(stmt.name, stmt.kind)
            raise KsqlStatementError(f"{stmt.kind.capitalize()} {stmt.name} does not exist.{hint}")
        if source.kind != stmt.kind:
            raise KsqlStatementError(
                f"Incompatible data source type is {source.kind.lower()}, but statement was DROP {stmt.kind.lower()}"
            )
        if stmt.delete_topic and source.is_source:
            raise KsqlError(f"Cannot delete topic for read-only source: {source.name}")
        readers = [q for q in source.readers if q in self.queries]
        writers = [q for q in source.writers if q in self.queries and q != source.created_by]
        if readers or writers:
            raise KsqlStatementError(
                f"Cannot drop {source.name}.\nThe following queries read from this source: [{', '.join(readers)}].\n"
                f"The following queries write into this source: [{', '.join(writers)}].\n"
                "You need to terminate them before dropping {source.name}.".replace("{source.name}", source.name)
            )
        if source.created_by in self.queries:  # as ksqlDB does: dropping a CSAS sink ends its query
            self._Terminate(ast.Terminate(source.created_by), props)
        self.metastore.remove(source.name)
        if stmt.delete_topic:
            self.runtime.delete_topic(source.topic)
        return Result("currentStatus", stmt.text, f"Source `{source.name}` (topic: {source.topic}) was dropped.")

    def _AlterSource(self, stmt: ast.AlterSource, props: dict[str, Any]) -> Result:
        source = self.metastore.require(stmt.name)
        if source.is_source:
            raise KsqlError(
                f"Cannot alter {source.kind.lower()} '{source.name}': ALTER operations are not supported on "
                f"source {source.kind.lower()}s."
            )
        if source.writers:
            raise KsqlStatementError("ALTER command is not supported for CREATE ... AS statements.")
        new_cols = list(source.schema.value)
        for el in stmt.columns:
            if source.schema.find(el.name) is not None:
                raise KsqlStatementError(
                    f"Cannot add column `{el.name}` to schema. A column with the same name already exists."
                )
            new_cols.append(Column(el.name, el.type))
        source.schema = LogicalSchema(source.schema.key, tuple(new_cols), source.schema.headers)
        return Result("currentStatus", stmt.text, f"{source.kind.title()} {source.name} altered")

    # ------------------------------------------------------------------ queries and admin
    def _PushQuery(self, stmt: ast.PushQuery, props: dict[str, Any]) -> Result:
        if stmt.query.emit is None:
            return self._pull(stmt, props)
        if stmt.query.emit != "CHANGES":
            raise UnsupportedError(f"transient queries with EMIT {stmt.query.emit}")
        plan = plan_query(stmt.query, self.metastore, None, config=props)
        key_in, value_in = self._serdes(plan.source)
        qid = f"transient_{plan.source.name}_{next(self._query_counter)}"
        if isinstance(plan, ProjectionPlan):
            tq = TransientQuery(qid, plan, key_in, value_in, self.processing_log)
        elif isinstance(plan, JoinPlan):
            tq = plan.transient(qid, self._serdes, self.processing_log)
        else:
            tq = AggregateTransientQuery(qid, plan, key_in, value_in, self.processing_log)
        return Result("streamedQuery", stmt.text, "", data=tq, query_id=qid)

    def _pull(self, stmt: ast.PushQuery, props: dict[str, Any]) -> Result:
        """A pull query, answered from the materialised state the runtime keeps for a table's query."""
        materialized = getattr(self.runtime, "materialized", None)
        plan = plan_pull(stmt.query, self.metastore, lambda qid: qid in self.queries, props)
        if materialized is None:
            raise UnsupportedError("pull queries on this runtime (it keeps no materialised state)")
        key_serde, value_serde = self._serdes(plan.source)
        result = run_pull(plan, materialized(plan.query_id), key_serde, value_serde)
        return Result("pullQuery", stmt.text, "", data=result, query_id=result.query_id)

    def _Terminate(self, stmt: ast.Terminate, props: dict[str, Any]) -> Result:
        ids = list(self.queries) if stmt.query_id is None else [stmt.query_id]
        for qid in ids:
            if qid not in self.queries:
                raise KsqlStatementError(f"Unknown queryId: {qid}")
            q = self.queries.pop(qid)
            q.state = "TERMINATED"
            self.runtime.remove_query(qid)
        return Result("currentStatus", stmt.text, "Query terminated.")

    def _SetProperty(self, stmt: ast.SetProperty, props: dict[str, Any]) -> Result:
        self.config[stmt.name] = stmt.value
        return Result("currentStatus", stmt.text, f"Successfully set property '{stmt.name}' to '{stmt.value}'.")

    def _UnsetProperty(self, stmt: ast.UnsetProperty, props: dict[str, Any]) -> Result:
        self.config[stmt.name] = DEFAULT_CONFIG.get(stmt.name)
        return Result("currentStatus", stmt.text, f"Successfully unset property '{stmt.name}'.")

    def _ShowList(self, stmt: ast.ShowList, props: dict[str, Any]) -> Result:
        what = stmt.what
        if what == "STREAMS":
            data = [
                {
                    "type": "STREAM",
                    "name": s.name,
                    "topic": s.topic,
                    "keyFormat": s.key_format.name,
                    "valueFormat": s.value_format.name,
                    "isWindowed": s.window is not None,
                }
                for s in self.metastore.sources.values()
                if s.kind == "STREAM"
            ]
            return Result("streams", stmt.text, data=data)
        if what == "TABLES":
            data = [
                {
                    "type": "TABLE",
                    "name": s.name,
                    "topic": s.topic,
                    "keyFormat": s.key_format.name,
                    "valueFormat": s.value_format.name,
                    "isWindowed": s.window is not None,
                }
                for s in self.metastore.sources.values()
                if s.kind == "TABLE"
            ]
            return Result("tables", stmt.text, data=data)
        if what == "TOPICS":
            data = [
                {"name": t, "replicaInfo": [1] * self.runtime.partitions.get(t, 1)}
                for t in sorted(self.runtime.topics)
                if not t.startswith("_")
            ]
            return Result("kafka_topics", stmt.text, data=data)
        if what == "QUERIES":
            data = [
                {
                    "queryString": q.sql,
                    "sinks": [q.sink.name],
                    "sinkKafkaTopics": [q.sink.topic],
                    "id": q.id,
                    "queryType": "PERSISTENT",
                    "state": q.state,
                }
                for q in self.queries.values()
            ]
            return Result("queries", stmt.text, data=data)
        if what == "PROPERTIES":
            data = {k: v for k, v in self.config.items()}
            return Result("properties", stmt.text, data=data)
        if what == "FUNCTIONS":
            return Result("function_names", stmt.text, data=sorted(REGISTRY))
        raise UnsupportedError(f"SHOW {what}")

    def _Describe(self, stmt: ast.Describe, props: dict[str, Any]) -> Result:
        if stmt.name in ("STREAMS", "TABLES"):
            return self._ShowList(ast.ShowList(stmt.name, True, stmt.text), props)
        source = self.metastore.get(stmt.name)
        if source is None:
            raise KsqlStatementError(f"Could not find STREAM/TABLE '{stmt.name}' in the Metastore")
        return Result("sourceDescription", stmt.text, data=describe(source, self, stmt.extended))


def _sources(plan: Any) -> list[DataSource]:
    """The sources a plan reads: one, or several for a join."""
    return plan.sources if isinstance(plan, JoinPlan) else [plan.source]


def build_query(
    query_id: str,
    plan: Any,
    sink: DataSource,
    key_in: Any,
    value_in: Any,
    key_out: Any,
    value_out: Any,
    plog: ProcessingLog,
    sql: str = "",
    stores: Any = None,
) -> Query:
    """The persistent query for a plan: a projection of a stream or of a table, or an aggregation (with its
    state in `stores`, in memory when None). Runtimes run them all the same way (`process(records) -> records`)."""
    if not isinstance(plan, ProjectionPlan):
        return plan.build(query_id, sink, key_in, value_in, key_out, value_out, plog, sql, stores)
    if plan.result_kind == "TABLE":
        return TableQuery(query_id, plan, sink, key_in, value_in, key_out, value_out, plog, sql)
    return PersistentQuery(query_id, plan, sink, key_in, value_in, key_out, value_out, plog, sql)


def describe(source: DataSource, engine: Engine, extended: bool) -> dict[str, Any]:
    fields: list[dict[str, Any]] = []
    for c in source.schema.key:
        fields.append({"name": c.name, "schema": _schema_json(c.type), "type": "KEY"})
    for c in source.schema.value:
        fields.append({"name": c.name, "schema": _schema_json(c.type)})
    return {
        "name": source.name,
        "type": source.kind,
        "topic": source.topic,
        "keyFormat": source.key_format.name,
        "valueFormat": source.value_format.name,
        "fields": fields,
        "statement": source.sql,
        "extended": extended,
        "readQueries": [{"id": q} for q in source.readers if q in engine.queries],
        "writeQueries": [{"id": q} for q in source.writers if q in engine.queries],
        "timestamp": source.timestamp_column or "",
        "partitions": source.partitions,
        "replication": 1,
        "windowType": source.window.type if source.window is not None else None,
        "sourceConstraints": [],
        "statistics": _statistics(source, engine) if extended else "",
        "errorStats": _error_stats(source, engine) if extended else "",
    }


def _statistics(source: DataSource, engine: Engine) -> str:
    processed = sum(engine.queries[q].processed for q in source.readers if q in engine.queries)
    return f"messages-processed: {processed}"


def _error_stats(source: DataSource, engine: Engine) -> str:
    errors = sum(1 for e in engine.processing_log.entries if e.get("topic") == source.topic)
    return f"processing-errors: {errors}"


def _schema_json(t: Any) -> dict[str, Any]:
    if isinstance(t, ArrayType):
        return {"type": "ARRAY", "fields": None, "memberSchema": _schema_json(t.item)}
    if isinstance(t, MapType):
        return {"type": "MAP", "fields": None, "memberSchema": _schema_json(t.value)}
    if isinstance(t, StructType):
        return {
            "type": "STRUCT",
            "fields": [{"name": n, "schema": _schema_json(ft)} for n, ft in t.fields],
            "memberSchema": None,
        }
    if t.name == "DECIMAL":
        return {
            "type": "DECIMAL",
            "fields": None,
            "memberSchema": None,
            "parameters": {"precision": t.precision, "scale": t.scale},
        }
    return {"type": t.name, "fields": None, "memberSchema": None}
