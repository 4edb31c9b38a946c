"""Conformance runner for ksqlDB's query-validation-test (QTT) files.

Each case runs on a fresh engine over in-memory topics (no broker): inputs are serialised the way the
upstream test harness does, statements execute, and the records on the sink topics are compared with
upstream's rules (per-topic order, keys, values, timestamps when given; decimals compare with their
scale, doubles within 1e-6). A case is `passed`, `failed`, or `unsupported` (an UnsupportedError was
raised: the engine refused rather than risk a wrong answer).
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import fnmatch
import json
import re
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import click
import fastavro
from rich.console import Console
from rich.table import Table

from . import values as V
from .ast import CreateSource
from .engine import Engine
from .errors import KsqlError, ParseError, UnsupportedError
from .formats import InMemorySchemaRegistry
from .formats import avro as avro_fmt
from .formats.coerce import coerce
from .formats.json_format import loads as json_loads
from .formats.kafka import decode_scalar, encode_scalar
from .metastore import DataSource
from .parser import parse
from .records import Record
from .runtime import InMemoryRuntime
from .types import SqlType
from .windows import decode_windowed_key, encode_windowed_key

PASSED, FAILED, UNSUPPORTED = "passed", "failed", "unsupported"


# ---------------------------------------------------------------- loading
def strip_comments(text: str) -> str:
    """Remove // and /* */ comments outside JSON strings (upstream allows them)."""
    out, i, n = [], 0, len(text)
    in_str = False
    while i < n:
        c = text[i]
        if in_str:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                in_str = False
            i += 1
            continue
        if c == '"':
            in_str = True
            out.append(c)
            i += 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def load_file(path: Path) -> dict[str, Any]:
    return json.loads(strip_comments(path.read_text()), parse_float=Decimal)


def _replace(obj: Any, token: str, value: str) -> Any:
    if isinstance(obj, str):
        return obj.replace(token, value)
    if isinstance(obj, list):
        return [_replace(x, token, value) for x in obj]
    if isinstance(obj, dict):
        return {k: _replace(v, token, value) for k, v in obj.items()}
    return obj


def expand(case: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """One concrete case per `format` entry and per `config` entry, as upstream does."""
    formats = case.get("format") or [None]
    for fmt in formats:
        c1 = _replace(copy.deepcopy(case), "{FORMAT}", fmt) if fmt is not None else copy.deepcopy(case)
        if fmt is not None:
            c1["name"] = f"{case['name']} - {fmt}"
        configs = case.get("config")
        props = c1.get("properties") or {}
        if configs and any(v == "{CONFIG}" for v in props.values()):
            for cfg in configs:
                c2 = copy.deepcopy(c1)
                c2["properties"] = {k: (cfg if v == "{CONFIG}" else v) for k, v in props.items()}
                c2["name"] = f"{c1['name']} - {cfg}"
                yield c2
        else:
            yield c1


# ---------------------------------------------------------------- test-side serdes
def _spec_json(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(_spec_json(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_spec_json(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"cannot write {value!r} as JSON")


def _spec_to_avro(spec: Any, schema: Any) -> Any:
    """Convert a JSON test value to an Avro datum for `schema` (field names case-insensitive)."""
    if spec is None:
        return None
    if isinstance(schema, list):
        branches = [s for s in schema if s != "null"]
        for b in branches:
            try:
                return _spec_to_avro(spec, b)
            except (ValueError, TypeError, KeyError, ArithmeticError):
                continue
        raise ValueError(f"no union branch for {spec!r}")
    if isinstance(schema, dict):
        kind = schema.get("type")
        logical = schema.get("logicalType")
        if logical == "decimal":
            with localcontext() as ctx:
                ctx.prec = 1000
                return Decimal(str(spec)).quantize(Decimal(1).scaleb(-int(schema.get("scale", 0))))
        if logical == "date":
            return V.days_to_date(int(spec))
        if logical == "time-millis":
            return V.millis_to_time(int(spec))
        if logical == "timestamp-millis":
            return V.millis_to_timestamp(int(spec)).replace(tzinfo=dt.UTC)
        if kind == "record":
            if not isinstance(spec, dict):
                raise TypeError("record expects an object")
            out = {}
            for f in schema["fields"]:
                v = spec.get(f["name"])
                if v is None:
                    v = next((val for k, val in spec.items() if k.upper() == f["name"].upper()), None)
                out[f["name"]] = _spec_to_avro(v, f["type"])
            return out
        if kind == "array":
            if not isinstance(spec, list):
                raise TypeError("array expects a list")
            return [_spec_to_avro(v, schema["items"]) for v in spec]
        if kind == "map":
            if not isinstance(spec, dict):
                raise TypeError("map expects an object")
            return {k: _spec_to_avro(v, schema["values"]) for k, v in spec.items()}
        if kind == "enum":
            return str(spec)
        return _spec_to_avro(spec, kind)
    if schema in ("int", "long"):
        if isinstance(spec, bool) or not isinstance(spec, (int, Decimal)):
            raise TypeError("int expected")
        return int(spec)
    if schema in ("float", "double"):
        if isinstance(spec, bool) or not isinstance(spec, (int, float, Decimal)):
            raise TypeError("number expected")
        return float(spec)
    if schema == "string":
        if isinstance(spec, (dict, list)):
            raise TypeError("string expected")
        return spec if isinstance(spec, str) else _spec_json(spec)
    if schema == "boolean":
        if not isinstance(spec, bool):
            raise TypeError("boolean expected")
        return spec
    if schema == "bytes":
        return base64.b64decode(spec) if isinstance(spec, str) else bytes(spec)
    raise ValueError(f"unsupported avro schema {schema!r}")


def _avro_to_spec(datum: Any) -> Any:
    if isinstance(datum, dict):
        return {k: _avro_to_spec(v) for k, v in datum.items()}
    if isinstance(datum, list):
        return [_avro_to_spec(v) for v in datum]
    if isinstance(datum, dt.datetime):
        return V.timestamp_to_millis(datum.astimezone(dt.UTC).replace(tzinfo=None) if datum.tzinfo else datum)
    if isinstance(datum, dt.date):
        return V.date_to_days(datum)
    if isinstance(datum, dt.time):
        return V.time_to_millis(datum)
    if isinstance(datum, bytes):
        return base64.b64encode(datum).decode()
    return datum


class TestSerde:
    """Serialises test specs to bytes and bytes back to comparable values, per source's formats."""

    def __init__(self, source: DataSource, registry: InMemorySchemaRegistry) -> None:
        self.source = source
        self.registry = registry

    def _columns(self, is_key: bool) -> list[tuple[str, SqlType]]:
        cols = self.source.schema.key if is_key else self.source.schema.value
        return [(c.name, c.type) for c in cols]

    def serialize(self, spec: Any, is_key: bool) -> bytes | None:
        if spec is None:
            return None
        fmt = self.source.key_format if is_key else self.source.value_format
        cols = self._columns(is_key)
        name = fmt.name
        if name == "NONE":
            return None if is_key else b""
        if name == "KAFKA":
            if not cols:
                return None
            return encode_scalar(coerce(spec, cols[0][1]), cols[0][1])
        if name == "DELIMITED":
            return (spec if isinstance(spec, str) else _spec_json(spec)).encode("utf-8")
        if name == "JSON":
            return _spec_json(spec).encode("utf-8")
        if name == "AVRO":
            subject = f"{self.source.topic}-{'key' if is_key else 'value'}"
            latest = self.registry.latest(subject)
            if latest is None:
                unwrapped = is_key or fmt.wrap_single is False
                schema = avro_fmt.schema_for(cols, unwrapped and len(cols) == 1, fmt.full_schema_name)
                schema_id = self.registry.register(subject, schema)
            else:
                schema_id, schema = latest
            datum = _spec_to_avro(spec, schema)
            return avro_fmt.encode(schema_id, fastavro.parse_schema(schema), datum)
        raise UnsupportedError(f"test serde for format {name}")

    def deserialize(self, data: bytes | None, is_key: bool) -> Any:
        if data is None:
            return None
        fmt = self.source.key_format if is_key else self.source.value_format
        cols = self._columns(is_key)
        if fmt.name == "KAFKA":
            return decode_scalar(data, cols[0][1]) if cols else None
        if fmt.name == "DELIMITED":
            return data.decode("utf-8")
        if fmt.name == "JSON":
            return json_loads(data)
        if fmt.name == "AVRO":
            return _avro_to_spec(avro_fmt.decode(data, self.registry, {}))
        if fmt.name == "NONE":
            return None
        raise UnsupportedError(f"test serde for format {fmt.name}")


# ---------------------------------------------------------------- comparison (upstream's rules)
def _scale(d: Decimal) -> int:
    e = d.as_tuple().exponent
    return -e if isinstance(e, int) else 0


def matches(actual: Any, expected: Any, exact: bool = True) -> bool:
    """Upstream's ExpectedRecordComparator; `exact=False` is `use.exact.numeric.comparison=false`."""
    if (
        not exact
        and isinstance(expected, (int, Decimal))
        and not isinstance(expected, bool)
        and isinstance(actual, (int, float, Decimal))
        and not isinstance(actual, bool)
    ):
        return abs(float(actual) - float(expected)) < 0.000_001
    if expected is None:
        return actual is None
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or len(actual) != len(expected):
            return False
        for k, ev in expected.items():
            av = actual.get(k)
            if av is None:
                av = actual.get(k.upper())
            if not matches(av, ev, exact):
                return False
        return True
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(matches(a, e, exact) for a, e in zip(actual, expected))
        )
    if isinstance(expected, bool):
        return isinstance(actual, bool) and actual == expected
    if isinstance(actual, bool):
        return False
    if isinstance(expected, (int, Decimal)):
        if isinstance(actual, int):
            return int(expected) == actual
        if isinstance(actual, float):
            return abs(float(expected) - actual) < 0.000_001
        if isinstance(actual, Decimal):
            if isinstance(expected, int):
                return _scale(actual) <= 0 and int(actual) == expected
            if "E" in str(expected).upper() or "E" in str(actual).upper():
                return float(actual) == float(expected)  # a DOUBLE in scientific notation (Java vs shortest digits)
            return actual == expected and _scale(actual) == _scale(expected)
        return False
    if isinstance(expected, str):
        if isinstance(actual, str):
            return actual == expected
        if isinstance(actual, Decimal):
            try:
                d = Decimal(expected)
            except ArithmeticError:
                return False
            return d == actual and _scale(d) == _scale(actual)
        return False
    return actual == expected


# ---------------------------------------------------------------- running a case
@dataclass
class CaseResult:
    file: str
    name: str
    status: str
    reason: str = ""


def _register_topic_schemas(case: dict[str, Any], registry: InMemorySchemaRegistry, runtime: InMemoryRuntime) -> None:
    for t in case.get("topics", []):
        name = t["name"]
        runtime.create_topic(name, int(t.get("partitions", TOPIC_PARTITIONS)))
        for part in ("key", "value"):
            schema = t.get(f"{part}Schema")
            if schema is None:
                continue
            fmt = t.get(f"{part}Format") or t.get("format") or "AVRO"
            if str(fmt).upper() != "AVRO":
                raise UnsupportedError(f"registered {fmt} schemas")
            sid = t.get(f"{part}SchemaId")
            registry.register(f"{name}-{part}", _plain(schema), int(sid) if sid is not None else None)


def _plain(obj: Any) -> Any:
    """Decimals from the loader back to ints/floats (for Avro schema JSON)."""
    if isinstance(obj, Decimal):
        return int(obj) if obj == obj.to_integral_value() else float(obj)
    if isinstance(obj, list):
        return [_plain(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


def _source_for_topic(engine: Engine, topic: str) -> DataSource | None:
    sources = engine.metastore.by_topic(topic)
    return sources[0] if sources else None


def _check_post(case: dict[str, Any], engine: Engine) -> str | None:
    post = case.get("post") or {}
    for exp in post.get("sources", []):
        src = engine.metastore.get(exp["name"].upper()) or engine.metastore.get(exp["name"])
        if src is None:
            return f"post: source {exp['name']} missing"
        if exp.get("type", "").upper() != src.kind:
            return f"post: {src.name} type {src.kind} != {exp.get('type')}"
        if "schema" in exp:
            stmt = parse(f"CREATE STREAM X ({exp['schema']}) WITH (kafka_topic='x', value_format='JSON');")[0]
            want = [(e.name, e.type, e.constraint in ("KEY", "PRIMARY KEY")) for e in stmt.elements or ()]
            have = [(c.name, c.type, True) for c in src.schema.key] + [
                (c.name, c.type, False) for c in src.schema.value
            ]
            if want != have:
                return f"post: {src.name} schema {src.schema} != {exp['schema']}"
        for part, fmt in (("keyFormat", src.key_format), ("valueFormat", src.value_format)):
            want_fmt = exp.get(part)
            if isinstance(want_fmt, str):
                want_fmt = {"format": want_fmt}
            if want_fmt and "format" in want_fmt and want_fmt["format"].upper() != fmt.name:
                return f"post: {src.name} {part} {fmt.name} != {want_fmt['format']}"
            if part == "keyFormat" and isinstance(exp.get(part), dict):
                problem = _check_window(src, exp[part])
                if problem:
                    return problem
    topics_post = post.get("topics") or {}
    blacklist = topics_post.get("blacklist")
    if blacklist:
        rx = re.compile(blacklist)
        bad = [t for t in engine.runtime.topics if rx.fullmatch(t)]
        if bad:
            return f"post: blacklisted topics exist: {bad}"
    for t in topics_post.get("topics", []):
        if t["name"] not in engine.runtime.topics and not t["name"].startswith(INTERNAL_TOPIC_PREFIX):
            return f"post: topic {t['name']} missing"
    return None


#: Kafka Streams' internal topics of a query (repartition and changelog topics) are named after this.
INTERNAL_TOPIC_PREFIX = "_confluent-ksql-"


def _internal_topics(case: dict[str, Any]) -> list[str]:
    """Internal topics a case expects: the engine has none (it re-keys and keeps state in process), so a
    case whose outputs all match but that also checks them is reported unsupported, not passed."""
    topics = ((case.get("post") or {}).get("topics") or {}).get("topics", [])
    return [t["name"] for t in topics if t["name"].startswith(INTERNAL_TOPIC_PREFIX)]


#: Partitions of the topics a case does not describe (upstream's test harness creates them with 4).
TOPIC_PARTITIONS = 4


def _statement_topics(statements: list[str]) -> list[tuple[str, int]]:
    """Topics the CREATE STREAM/TABLE statements of a case name, which upstream's harness creates first."""
    out = []
    for sql in statements:
        try:
            parsed = parse(sql)
        except KsqlError:
            continue
        for stmt in parsed:
            if isinstance(stmt, CreateSource) and stmt.query is None and stmt.prop("KAFKA_TOPIC") is not None:
                out.append((str(stmt.prop("KAFKA_TOPIC")), int(stmt.prop("PARTITIONS", TOPIC_PARTITIONS))))
    return out


def _check_window(src: DataSource, want: dict[str, Any]) -> str | None:
    """Post-condition on a source's windowed key format (windowType, windowSize)."""
    want_type = want.get("windowType")
    have_type = src.window.type if src.window is not None else None
    if (want_type.upper() if want_type else None) != have_type:
        return f"post: {src.name} window type {have_type} != {want_type}"
    if "windowSize" in want and (src.window is None or src.window.size != int(want["windowSize"])):
        return f"post: {src.name} window size {src.window.size if src.window else None} != {want['windowSize']}"
    return None


def _header_field(h: dict[str, Any], name: str) -> Any:
    return h[name] if name in h else h.get(name.upper())


def _header_bytes(value: Any) -> bytes | None:
    """Header values are base64 text in test files (Jackson's encoding of byte[])."""
    return None if value is None else base64.b64decode(value)


#: Functions that exist only in upstream's test jar: a case calling one cannot run here (reported unsupported).
_TEST_JAR_FUNCTION = re.compile(r"Can't find any functions with the name '(BAD_UDF|TEST_UDF|WHENCONDITION|WHENRESULT)'")


def run_case(case: dict[str, Any]) -> tuple[str, str]:
    registry = InMemorySchemaRegistry()
    runtime = InMemoryRuntime()
    props = {k: v for k, v in (case.get("properties") or {}).items()}
    props["auto.offset.reset"] = "earliest"
    engine = Engine(registry, runtime, props)
    expected_exc = case.get("expectedException")
    _register_topic_schemas(case, registry, runtime)
    for inp in case.get("inputs", []):
        runtime.create_topic(inp["topic"], TOPIC_PARTITIONS)
    for topic, partitions in _statement_topics(case["statements"]):
        runtime.create_topic(topic, partitions)
    try:
        # one text, as upstream's harness parses it: error positions count lines over the whole case
        engine.execute("\n".join(case["statements"]))
    except UnsupportedError as e:
        return UNSUPPORTED, e.message
    except KsqlError as e:
        test_udf = _TEST_JAR_FUNCTION.search(e.message)
        if test_udf:
            return UNSUPPORTED, f"upstream's test-only function {test_udf.group(1)} (from its test jar)"
        if expected_exc is None:
            return FAILED, f"{type(e).__name__}: {e.message}"
        want = expected_exc.get("message")
        want_type = expected_exc.get("type", "")
        if want_type.endswith("ParseFailedException") and not isinstance(e, ParseError):
            return FAILED, f"expected a parse error, got: {e.message}"
        if want and want not in e.message:
            return FAILED, f"expected error containing {want!r}, got {e.message!r}"
        return PASSED, ""
    if expected_exc is not None and not case.get("inputs"):
        return FAILED, f"expected exception {expected_exc.get('message')!r}, none raised"

    for inp in case.get("inputs", []):
        source = _source_for_topic(engine, inp["topic"])
        if source is None:
            return FAILED, f"no source registered for input topic {inp['topic']}"
        serde = TestSerde(source, registry)
        headers = [
            (_header_field(h, "key"), _header_bytes(_header_field(h, "value"))) for h in inp.get("headers") or []
        ]
        key = serde.serialize(inp.get("key"), True)
        if "window" in inp:
            if source.window is None:
                return UNSUPPORTED, "windowed input keys for a source that is not windowed"
            key = encode_windowed_key(key, source.window, int(inp["window"]["start"]), int(inp["window"]["end"]))
        rec = Record(
            inp["topic"], key, serde.serialize(inp.get("value"), False), int(inp.get("timestamp", 0)), headers=headers
        )
        runtime.produce(rec)

    if expected_exc is not None:
        return FAILED, f"expected exception {expected_exc.get('message')!r}, none raised"

    exact = str((case.get("properties") or {}).get("use.exact.numeric.comparison", True)).lower() != "false"
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for out in case.get("outputs", []):
        by_topic.setdefault(out["topic"], []).append(out)
    for topic, expected in by_topic.items():
        actual = runtime.topics.get(topic, [])
        sink = _source_for_topic(engine, topic)
        if len(actual) != len(expected):
            return FAILED, f"topic {topic}: expected {len(expected)} records, got {len(actual)}"
        if sink is None:
            return FAILED, f"no source for output topic {topic}"
        serde = TestSerde(sink, registry)
        for i, (a, e) in enumerate(zip(actual, expected)):
            raw_key = a.key
            if sink.window is not None:
                if raw_key is None:
                    return FAILED, f"topic {topic} record {i}: windowed key missing"
                raw_key, start, end = decode_windowed_key(raw_key, sink.window)
                window = {"start": start, "end": end, "type": "session" if sink.window.is_session else "time"}
                want = e.get("window")
                if want is None or {k: (int(v) if k != "type" else v) for k, v in want.items()} != window:
                    return FAILED, f"topic {topic} record {i}: window {window} != expected {want}"
            elif "window" in e:
                return FAILED, f"topic {topic} record {i}: expected a windowed key, the sink is not windowed"
            akey = serde.deserialize(raw_key, True)
            aval = serde.deserialize(a.value, False)
            if not matches(akey, e.get("key"), exact):
                return FAILED, f"topic {topic} record {i}: key {akey!r} != expected {e.get('key')!r}"
            if not matches(aval, e.get("value"), exact):
                return FAILED, f"topic {topic} record {i}: value {aval!r} != expected {e.get('value')!r}"
            if "timestamp" in e and int(e["timestamp"]) != a.timestamp:
                return FAILED, f"topic {topic} record {i}: timestamp {a.timestamp} != {e['timestamp']}"
            if e.get("headers") or a.headers:
                return FAILED, f"topic {topic} record {i}: headers differ"
    problem = _check_post(case, engine)
    if problem:
        return FAILED, problem
    internal = _internal_topics(case)
    if internal:
        return UNSUPPORTED, f"outputs match, but the case checks Kafka Streams internal topics: {', '.join(internal)}"
    return PASSED, ""


#: The ksqlDB version the test data was taken from; cases bounded away from it are skipped, as upstream does.
TARGET_VERSION = (8, 5, 0)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", str(text))[:3])


def applies_to_target(case: dict[str, Any]) -> bool:
    bounds = case.get("versions") or {}
    if "min" in bounds and _version(bounds["min"]) > TARGET_VERSION:
        return False
    if "max" in bounds and _version(bounds["max"]) < TARGET_VERSION:
        return False
    return True


def run_file(path: Path) -> list[CaseResult]:
    data = load_file(path)
    results = []
    for case in data.get("tests", []):
        if case.get("enabled") is False or not applies_to_target(case):
            continue
        for variant in expand(case):
            try:
                status, reason = run_case(variant)
            except UnsupportedError as e:
                status, reason = UNSUPPORTED, e.message
            except Exception as e:  # noqa: BLE001 - an engine crash is a failed case, with its trace
                status = FAILED
                reason = f"crash: {type(e).__name__}: {e}\n{traceback.format_exc(limit=4)}"
            results.append(CaseResult(path.name, variant["name"], status, reason))
    return results


def run_dir(directory: Path, pattern: str = "*.json") -> dict[str, list[CaseResult]]:
    return {p.name: run_file(p) for p in sorted(directory.glob("*.json")) if fnmatch.fnmatch(p.name, pattern)}


def summarise(results: dict[str, list[CaseResult]]) -> dict[str, dict[str, int]]:
    return {
        name: {s: sum(1 for r in rs if r.status == s) for s in (PASSED, FAILED, UNSUPPORTED)}
        for name, rs in results.items()
    }


@click.command("conformance")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--file", "file_glob", default="*.json", show_default=True, help="Only files matching this glob.")
@click.option("--verbose", is_flag=True, help="Print the reason of every failed or unsupported case.")
def conformance_command(directory: Path, file_glob: str, verbose: bool) -> None:
    """Run ksqlDB query-validation-test files in DIRECTORY against the embedded engine."""
    console = Console()
    results = run_dir(directory, file_glob)
    table = Table(title=f"ksqlDB conformance: {directory}")
    for col in ("file", "passed", "failed", "unsupported", "total"):
        table.add_column(col, justify="left" if col == "file" else "right")
    totals = {PASSED: 0, FAILED: 0, UNSUPPORTED: 0}
    for name, counts in summarise(results).items():
        for k in totals:
            totals[k] += counts[k]
        table.add_row(
            name, str(counts[PASSED]), str(counts[FAILED]), str(counts[UNSUPPORTED]), str(sum(counts.values()))
        )
    table.add_row(
        "TOTAL",
        str(totals[PASSED]),
        str(totals[FAILED]),
        str(totals[UNSUPPORTED]),
        str(sum(totals.values())),
        style="bold",
    )
    console.print(table)
    if verbose:
        for name, rs in results.items():
            for r in rs:
                if r.status != PASSED:
                    console.print(
                        f"[{'red' if r.status == FAILED else 'yellow'}]{r.status}[/] {name} :: {r.name}: "
                        f"{r.reason.splitlines()[0] if r.reason else ''}",
                        markup=True,
                        highlight=False,
                    )


if __name__ == "__main__":  # python -m stack.ksqldb.qtt DIR [--file GLOB] [--verbose]
    conformance_command()
