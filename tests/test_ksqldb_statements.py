"""Statements, WITH properties, formats and operators of ksqlDB's reference that the coverage page
(docs/ksql-engine.md) lists as supported and no other test exercises; and the ones it lists as unsupported,
which must be refused loudly."""

import json

import pytest

from stack.ksqldb.engine import Engine
from stack.ksqldb.errors import UnsupportedError
from stack.ksqldb.expressions import Compiler, Scope
from stack.ksqldb.formats import InMemorySchemaRegistry
from stack.ksqldb.parser import parse_expression
from stack.ksqldb.records import Record
from stack.ksqldb.runtime import InMemoryRuntime


@pytest.fixture()
def engine():
    return Engine(InMemorySchemaRegistry(), InMemoryRuntime(), {"auto.offset.reset": "earliest"})


def ev(text: str):
    return Compiler(Scope([])).compile(parse_expression(text)).fn(())


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1 = 1", True),
        ("1 <> 1", False),
        ("1 != 2", True),
        ("1 < 2", True),
        ("2 <= 2", True),
        ("1 > 2", False),
        ("2 >= 3", False),
        ("'a' || 'b' || 'c'", "abc"),
        ("'a' || CAST(NULL AS STRING)", "a"),
    ],
)
def test_comparison_and_concatenation_operators(text, expected):
    assert ev(text) == expected


def test_delimited_properties_and_formats(engine):
    """KEY_DELIMITER and VALUE_DELIMITER, PARTITIONS, REPLICAS and RETENTION_MS on a DELIMITED source; a
    sink with KEY_FORMAT JSON and an AVRO value named by VALUE_AVRO_SCHEMA_FULL_NAME."""
    engine.execute(
        "CREATE STREAM S (K1 STRING KEY, K2 INT KEY, V INT, W STRING) WITH (kafka_topic='s', format='DELIMITED', "
        "KEY_DELIMITER='|', VALUE_DELIMITER=';', PARTITIONS=2, REPLICAS=1, RETENTION_MS=1000);"
    )
    engine.execute(
        "CREATE STREAM O WITH (KEY_FORMAT='JSON', VALUE_FORMAT='AVRO', VALUE_AVRO_SCHEMA_FULL_NAME='my.ns.Rec', "
        "KAFKA_TOPIC='o') AS SELECT K1, K2, V FROM S;"
    )
    engine.runtime.produce(Record("s", b"a|1", b"5;x", 0))
    (rec,) = engine.runtime.topics["o"]
    assert json.loads(rec.key) == {"K1": "a", "K2": 1}
    _, schema = engine.registry.latest("o-value")
    assert (schema["namespace"], schema["name"]) == ("my.ns", "Rec")
    assert engine.metastore.require("S").partitions == 2


def test_key_avro_schema_full_name(engine):
    engine.execute("CREATE STREAM S (K1 STRING KEY, K2 INT KEY, V INT) WITH (kafka_topic='s', format='JSON');")
    engine.execute(
        "CREATE STREAM O WITH (FORMAT='AVRO', KEY_AVRO_SCHEMA_FULL_NAME='my.ns.Key') AS SELECT K1, K2, V FROM S;"
    )
    engine.runtime.produce(Record("s", b'{"K1": "a", "K2": 1}', b'{"V": 1}', 0))
    _, schema = engine.registry.latest("O-key")
    assert (schema["namespace"], schema["name"]) == ("my.ns", "Key")


def test_kafka_and_none_formats_and_cleanup_policy(engine):
    engine.execute(
        "CREATE TABLE T (K STRING PRIMARY KEY, V INT) WITH (kafka_topic='t', key_format='KAFKA', "
        "value_format='KAFKA', CLEANUP_POLICY='compact');"
    )
    engine.execute("CREATE STREAM N (V INT) WITH (kafka_topic='n', key_format='NONE', value_format='JSON');")
    engine.execute("CREATE TABLE T2 AS SELECT * FROM T;")
    engine.runtime.produce(Record("t", b"a", (7).to_bytes(4, "big"), 0))
    assert [(r.key, r.value) for r in engine.runtime.topics["T2"]] == [(b"a", (7).to_bytes(4, "big"))]
    assert engine.metastore.require("N").key_format.name == "NONE"


def test_value_schema_id(engine):
    schema = {"type": "record", "name": "R", "fields": [{"name": "A", "type": ["null", "int"], "default": None}]}
    schema_id = engine.registry.register("x-value", schema)
    engine.execute(f"CREATE STREAM X WITH (kafka_topic='x', value_format='AVRO', VALUE_SCHEMA_ID={schema_id});")
    assert [c.name for c in engine.metastore.require("X").schema.value] == ["A"]


def test_alter_and_show_functions(engine):
    engine.execute("CREATE STREAM S (V INT) WITH (kafka_topic='s', value_format='JSON');")
    engine.execute("ALTER STREAM S ADD COLUMN W STRING;")
    assert [c.name for c in engine.metastore.require("S").schema.value] == ["V", "W"]
    (shown,) = engine.execute("SHOW FUNCTIONS;")
    assert {"ABS", "URL_EXTRACT_HOST", "JSON_CONCAT"} <= set(shown.data)


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER SYSTEM 'ksql.streams.num.stream.threads'='2';",
        "ASSERT TOPIC t;",
        "ASSERT SCHEMA ID 4;",
        "CREATE TYPE ADDRESS AS STRUCT<STREET STRING>;",
        "DROP TYPE ADDRESS;",
        "SHOW TYPES;",
        "DEFINE x = 'y';",
        "UNDEFINE x;",
        "SHOW VARIABLES;",
        "DESCRIBE FUNCTION ABS;",
        "EXPLAIN SELECT * FROM S EMIT CHANGES;",
        "PAUSE ALL;",
        "RESUME ALL;",
        "PRINT 's';",
        "RUN SCRIPT '/tmp/x.sql';",
        "CREATE SOURCE CONNECTOR c WITH ('connector.class'='x');",
        "SHOW CONNECTORS;",
        "SELECT S->* FROM S EMIT CHANGES;",
        "SELECT CASE V WHEN 1 THEN 2 END FROM S EMIT CHANGES;",
        "SELECT V AT TIME ZONE 'UTC' FROM S EMIT CHANGES;",
        "CREATE STREAM P (V INT) WITH (kafka_topic='p', value_format='PROTOBUF');",
        "CREATE STREAM P (V INT) WITH (kafka_topic='p', value_format='JSON_SR');",
        "CREATE STREAM P (V INT) WITH (kafka_topic='p', value_format='AVRO', VALUE_SCHEMA_FULL_NAME='a.B');",
        "CREATE STREAM P (K INT KEY, V INT) WITH (kafka_topic='p', format='AVRO', KEY_SCHEMA_ID=1);",
        "CREATE STREAM P (K INT KEY, V INT) WITH (kafka_topic='p', format='AVRO', KEY_SCHEMA_FULL_NAME='a.B');",
        "CREATE STREAM P (V INT) WITH (kafka_topic='p', value_format='PROTOBUF_NOSR');",
        "CREATE STREAM P (V INT) WITH (kafka_topic='p', value_format='JSON', KEY_PROTOBUF_NULLABLE_REPRESENTATION='x');",
        "CREATE STREAM P (V INT) WITH (kafka_topic='p', value_format='JSON', VALUE_PROTOBUF_NULLABLE_REPRESENTATION='x');",
    ],
)
def test_unsupported_statements_and_properties_are_refused(engine, statement):
    engine.execute("CREATE STREAM S (V INT) WITH (kafka_topic='s', value_format='JSON');")
    with pytest.raises(UnsupportedError):
        engine.execute(statement)
