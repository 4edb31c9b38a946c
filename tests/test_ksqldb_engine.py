"""Engine-level tests over in-memory topics: statements, persistent queries, processing log, push queries."""

import io
import json
import struct
from pathlib import Path

import fastavro
import pytest
from ksqldb_server_helpers import registry_with_scores

from stack.ksqldb.engine import Engine
from stack.ksqldb.errors import KsqlStatementError, UnsupportedError
from stack.ksqldb.formats import InMemorySchemaRegistry
from stack.ksqldb.records import Record
from stack.ksqldb.runtime import InMemoryRuntime

SOURCE = (
    "CREATE STREAM payments (payment_id STRING KEY, amount DOUBLE, user_name STRING, class INT) "
    "WITH (kafka_topic='payments_src', value_format='DELIMITED');"
)


@pytest.fixture()
def engine():
    return Engine(InMemorySchemaRegistry(), InMemoryRuntime(), {"auto.offset.reset": "earliest"})


def produce(engine, topic, key, value, ts=0):
    engine.runtime.produce(Record(topic, key, value, ts))


def avro_values(engine, topic):
    out = []
    for rec in engine.runtime.topics[topic]:
        assert rec.value[0] == 0
        schema_id = struct.unpack(">I", rec.value[1:5])[0]
        schema = fastavro.parse_schema(engine.registry.schema_by_id(schema_id))
        out.append((rec.key, fastavro.schemaless_reader(io.BytesIO(rec.value[5:]), schema, None)))
    return out


def test_delimited_to_avro_with_filter_mask_and_ifnull(engine):
    engine.execute(SOURCE)
    engine.execute(
        "CREATE STREAM clean WITH (kafka_topic='clean_avro', value_format='AVRO') AS "
        "SELECT payment_id, amount, MASK_LEFT(user_name, 2) AS user_masked, IFNULL(class, -1) AS label "
        "FROM payments WHERE class IS NOT NULL;"
    )
    produce(engine, "payments_src", b"p1", b"12.5,alice,0")
    produce(engine, "payments_src", b"p2", b"3.0,bob,")  # class null: filtered out
    produce(engine, "payments_src", b"p3", b"99.0,carol,1")
    rows = avro_values(engine, "clean_avro")
    assert rows == [
        (b"p1", {"AMOUNT": 12.5, "USER_MASKED": "xxice", "LABEL": 0}),
        (b"p3", {"AMOUNT": 99.0, "USER_MASKED": "xxrol", "LABEL": 1}),
    ]
    subject = engine.registry.latest("clean_avro-value")
    assert subject is not None
    schema = subject[1]
    assert (schema["name"], schema["namespace"]) == ("KsqlDataSourceSchema", "io.confluent.ksql.avro_schemas")


def test_bad_record_goes_to_processing_log_and_query_goes_on(engine):
    engine.execute(SOURCE)
    engine.execute("CREATE STREAM out AS SELECT payment_id, amount FROM payments;")
    produce(engine, "payments_src", b"p1", b"not-a-number,alice,0")
    produce(engine, "payments_src", b"p2", b"1.0,bob,1,extra")
    produce(engine, "payments_src", b"p3", b"2.0,carol,1")
    assert [r.value for r in engine.runtime.topics["OUT"]] == [b"2.0"]
    errors = engine.processing_log.entries
    assert len(errors) == 2
    assert "Unexpected field count" in errors[1]["errorMessage"]
    assert errors[0]["topic"] == "payments_src" and errors[0]["target"] == "value"


def test_expression_error_yields_null_and_is_logged(engine):
    engine.execute("CREATE STREAM s (k STRING KEY, a INT, b INT) WITH (kafka_topic='s', value_format='JSON');")
    engine.execute("CREATE STREAM q AS SELECT k, a / b AS r FROM s;")
    produce(engine, "s", b"x", b'{"A": 1, "B": 0}')
    assert [r.value for r in engine.runtime.topics["Q"]] == [b'{"R":null}']
    assert "by zero" in engine.processing_log.entries[0]["errorMessage"]


def test_insert_values_and_offset_reset(engine):
    engine.execute(SOURCE)
    engine.execute("INSERT INTO payments (payment_id, amount, user_name, class) VALUES ('p9', 5.5, 'zoe', 1);")
    engine.execute("SET 'auto.offset.reset'='latest';")
    engine.execute("CREATE STREAM late AS SELECT * FROM payments;")
    assert engine.runtime.topics["LATE"] == []  # existing record not replayed with 'latest'
    engine.execute("SET 'auto.offset.reset'='earliest';")
    engine.execute("CREATE STREAM early AS SELECT * FROM payments;")
    assert [(r.key, r.value) for r in engine.runtime.topics["EARLY"]] == [(b"p9", b"5.5,zoe,1")]


def test_drop_terminate_and_show(engine):
    engine.execute(SOURCE)
    (res,) = engine.execute("CREATE STREAM out AS SELECT * FROM payments;")
    qid = res.query_id
    with pytest.raises(KsqlStatementError, match="Cannot drop PAYMENTS"):
        engine.execute("DROP STREAM payments;")
    streams = engine.execute("SHOW STREAMS;")[0].data
    assert {s["name"] for s in streams} == {"PAYMENTS", "OUT"}
    queries = engine.execute("SHOW QUERIES;")[0].data
    assert [q["id"] for q in queries] == [qid]
    desc = engine.execute("DESCRIBE out;")[0].data
    assert [f["name"] for f in desc["fields"]] == ["PAYMENT_ID", "AMOUNT", "USER_NAME", "CLASS"]
    engine.execute(f"TERMINATE {qid};")
    engine.execute("DROP STREAM out DELETE TOPIC;")
    assert "OUT" not in engine.runtime.topics
    engine.execute("DROP STREAM payments;")
    engine.execute("DROP STREAM IF EXISTS payments;")
    with pytest.raises(KsqlStatementError, match="does not exist"):
        engine.execute("DROP STREAM payments;")


def test_push_query_rows_with_limit(engine):
    engine.execute(SOURCE)
    for i in range(5):
        produce(engine, "payments_src", f"p{i}".encode(), f"{i}.0,u{i},{i % 2}".encode())
    (res,) = engine.execute(
        "SELECT payment_id, amount * 2 AS twice FROM payments WHERE class = 1 EMIT CHANGES LIMIT 1;"
    )
    tq = res.data
    assert tq.columns[0][0] == "PAYMENT_ID"
    rows = tq.rows(engine.runtime.topics["payments_src"])
    assert rows == [["p1", 2.0]]
    assert tq.done


def test_push_query_rows_keep_projection_order_and_need_no_key(engine):
    """As in ksqlDB, a push query's columns are its SELECT list in order, the key anywhere or nowhere."""
    engine.execute(SOURCE)
    produce(engine, "payments_src", b"p1", b"12.5,alice,0")
    (res,) = engine.execute("SELECT amount, class, payment_id AS id FROM payments EMIT CHANGES;")
    assert [name for name, _ in res.data.columns] == ["AMOUNT", "CLASS", "ID"]
    assert res.data.rows(engine.runtime.topics["payments_src"]) == [[12.5, 0, "p1"]]
    (res,) = engine.execute("SELECT user_name, amount FROM payments EMIT CHANGES;")
    assert [name for name, _ in res.data.columns] == ["USER_NAME", "AMOUNT"]
    assert res.data.rows(engine.runtime.topics["payments_src"]) == [["alice", 12.5]]
    with pytest.raises(KsqlStatementError, match="must include the key column PAYMENT_ID"):
        engine.execute("CREATE STREAM no_key AS SELECT amount FROM payments;")  # a sink still needs it


def test_a_table_push_query_tombstone_fills_the_key_where_it_was_selected(engine):
    engine.execute(
        "CREATE TABLE users (id STRING PRIMARY KEY, name STRING, limit_eur INT) "
        "WITH (kafka_topic='users', value_format='JSON');"
    )
    (res,) = engine.execute("SELECT name, id, limit_eur FROM users EMIT CHANGES;")
    records = [Record("users", b"u1", b'{"NAME": "ann", "LIMIT_EUR": 5}', 1), Record("users", b"u1", None, 2)]
    assert res.data.changelog(records) == [(["ann", "u1", 5], False), ([None, "u1", None], True)]


def test_errors_for_common_mistakes(engine):
    engine.execute(SOURCE)
    with pytest.raises(KsqlStatementError, match="NOPE does not exist"):
        engine.execute("CREATE STREAM x AS SELECT * FROM nope;")
    with pytest.raises(KsqlStatementError, match="SELECT column 'NOPE' cannot be resolved"):
        engine.execute("CREATE STREAM x AS SELECT payment_id, nope FROM payments;")
    with pytest.raises(KsqlStatementError, match="already exists"):
        engine.execute(SOURCE)
    with pytest.raises(KsqlStatementError, match="Unknown format: FOO"):
        engine.execute("CREATE STREAM y (a INT) WITH (kafka_topic='y', value_format='foo');")


TWO_SOURCES = (
    "CREATE STREAM s (id INT KEY, a INT, b STRING) WITH (kafka_topic='s', value_format='JSON');\n"
    "CREATE TABLE t (id INT PRIMARY KEY, a INT, c STRING) WITH (kafka_topic='t', value_format='JSON');\n"
)


@pytest.mark.parametrize(
    "statement, message",
    [
        ("CREATE STREAM o AS SELECT id, x FROM s;", "Line: 3, Col: 31: SELECT column 'X' cannot be resolved."),
        (
            "CREATE STREAM o AS SELECT id FROM s WHERE abs(s.x) > 1;",
            "Line: 3, Col: 47: WHERE column 'S.X' cannot be resolved.",
        ),
        (
            "CREATE TABLE o AS SELECT x, COUNT(*) FROM s GROUP BY x;",
            "Line: 3, Col: 54: GROUP BY column 'X' cannot be resolved.",
        ),
        (
            "CREATE STREAM o AS SELECT id, a FROM s PARTITION BY x;",
            "Line: 3, Col: 53: PARTITION BY column 'X' cannot be resolved.",
        ),
        (
            "CREATE STREAM o AS SELECT * FROM s JOIN t ON s.id = t.nope;",
            "Line: 3, Col: 53: JOIN ON column 'T.NOPE' cannot be resolved.",
        ),
        (
            "CREATE STREAM o AS SELECT s.id, a FROM s JOIN t ON s.id = t.id;",
            "Exception while preparing statement: Line: 3, Col: 33: Column 'A' is ambiguous. Could be S.A or T.A.",
        ),
        # columns are resolved clause by clause before grouping and projection are analysed, as in ksqlDB
        (
            "CREATE TABLE o AS SELECT x, COUNT(*) FROM s GROUP BY id;",
            "Line: 3, Col: 26: SELECT column 'X' cannot be resolved.",
        ),
        (
            "CREATE TABLE o AS SELECT id, COUNT(x) FROM s GROUP BY id HAVING SUM(y) > 1;",
            "Line: 3, Col: 69: HAVING column 'Y' cannot be resolved.",
        ),
        (
            "CREATE STREAM o AS SELECT s.id FROM s JOIN t ON s.id = t.id WHERE x = 1;",
            "Line: 3, Col: 67: WHERE column 'X' cannot be resolved.",
        ),
        # a qualifier naming no source is refused first, without a position, as ksqlDB does while building the AST
        (
            "CREATE TABLE o AS SELECT q.id, COUNT(*) FROM s GROUP BY q.id;",
            "Failed to prepare statement: 'Q' is not a valid stream/table name or alias.",
        ),
        ("CREATE STREAM o AS SELECT q.* FROM s;", "Failed to prepare statement: 'Q' is not a valid stream/table name"),
        (
            "CREATE STREAM o AS SELECT id, a FROM s WINDOW TUMBLING (SIZE 1 SECOND);",
            "Line: 3, Col: 47: WINDOW clause requires a GROUP BY clause.",
        ),
        (
            "CREATE STREAM o (k INT PRIMARY KEY, v INT) WITH (kafka_topic='o', value_format='JSON');",
            "Line: 3, Col: 18: Column `K` is a 'PRIMARY KEY' column: please use 'KEY' for streams.",
        ),
    ],
)
def test_analysis_errors_point_at_the_node_in_the_request(engine, statement, message):
    """ksqlDB prefixes these errors with the offending node's line and column, counted over the request."""
    with pytest.raises(KsqlStatementError) as e:
        engine.execute(TWO_SOURCES + statement)
    assert e.value.message.startswith(message)


def test_unsupported_constructs_fail_loudly(engine):
    engine.execute(SOURCE)
    with pytest.raises(UnsupportedError):
        engine.execute("EXPLAIN SELECT * FROM payments EMIT CHANGES;")
    with pytest.raises(UnsupportedError):
        engine.execute(
            "CREATE TABLE r AS SELECT user_name, CORRELATION(amount, amount) FROM payments GROUP BY user_name;"
        )


KSQL_DIR = Path(__file__).resolve().parents[1] / "ksql"


@pytest.mark.skipif(not KSQL_DIR.is_dir(), reason="no ksql/ statement files")
def test_fraud_statement_files_run_and_reapply_idempotently():
    engine = Engine(registry_with_scores(), InMemoryRuntime(), {"auto.offset.reset": "earliest"})
    for path in sorted(KSQL_DIR.glob("*.sql")):
        engine.execute(path.read_text())
    features = ",".join(str(i / 10) for i in range(28))
    produce(engine, "creditcardfraud_source", b"p1", f"p1,2013-09-01T00:00:05Z,alice,5.0,{features},12.5".encode())
    produce(engine, "creditcardfraud_source", b"p2", f"p2,2013-09-01T00:00:06Z,,6.0,{features},".encode())
    produce(engine, "creditcardfraud_source", b"p3", b"not,a,payment")
    served = avro_values(engine, "creditcardfraud_preprocessed_avro")  # every payment, none with a label
    assert [key for key, _ in served] == [b"p1", b"p2"]
    value = served[0][1]
    assert value["AMOUNT"] == 12.5 and value["HOUR_OF_DAY"] == 0.0 and value["ID"] == "p1"
    assert value["EVENT_TIME"] == 1377993605000 and not {"USER", "CLASS", "TIME"} & set(value)
    assert engine.runtime.topics["creditcardfraud_preprocessed_avro"][0].timestamp == 1377993605000
    enriched = [json.loads(r.value) for r in engine.runtime.topics["creditcardfraud_enriched"]]
    assert [(e["USER"], e["AMOUNT"]) for e in enriched] == [("alice", 12.5), ("unknown", 0.0)]
    anonymised = [json.loads(r.value)["USER"] for r in engine.runtime.topics["creditcardfraud_anonymised"]]
    assert anonymised == ["xxice", None]
    errors = sorted(
        (e["query"].split("_", 1)[1].rsplit("_", 1)[0], e["errorMessage"]) for e in engine.processing_log.entries
    )
    bad_line = "Unexpected field count, csvFields:3 schemaFields:33"
    no_user = "Error computing expression GROUP BY: Group-by column with index 0 resolved to null."
    assert errors == [  # the bad line, once per query reading the source; the user left empty, by the history
        ("CREDITCARDFRAUD_ANONYMISED", bad_line),
        ("CREDITCARDFRAUD_ENRICHED", bad_line),
        ("CREDITCARDFRAUD_PREPROCESSED_AVRO", bad_line),
        ("CREDITCARDFRAUD_SOURCE_AVRO", bad_line),
        ("CREDITCARDFRAUD_USER_HISTORY", no_user + " The source row will be excluded from the table."),
    ]
    queries_before = list(engine.queries)
    for path in sorted(KSQL_DIR.glob("*.sql")):
        engine.execute(path.read_text())
    assert list(engine.queries) == queries_before


def test_avro_sink_readable_with_confluent_deserializer(stack, topic_name):
    """Against the embedded Schema Registry over HTTP: ksqlDB's subject naming and wire format."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from stack.ksqldb.formats import HttpSchemaRegistry

    url = stack.addresses.schema_registry_url
    engine = Engine(HttpSchemaRegistry(url), InMemoryRuntime(), {"auto.offset.reset": "earliest"})
    engine.execute(
        f"CREATE STREAM src (id STRING KEY, amount DOUBLE, label INT) "
        f"WITH (kafka_topic='{topic_name}-src', value_format='DELIMITED');"
    )
    engine.execute(
        f"CREATE STREAM out WITH (kafka_topic='{topic_name}', value_format='AVRO') AS "
        f"SELECT id, amount, label FROM src;"
    )
    produce(engine, f"{topic_name}-src", b"a", b"1.5,1")
    (rec,) = engine.runtime.topics[topic_name]
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": url}))
    value = deserializer(rec.value, SerializationContext(topic_name, MessageField.VALUE))
    assert value == {"AMOUNT": 1.5, "LABEL": 1}
    latest = SchemaRegistryClient({"url": url}).get_latest_version(f"{topic_name}-value")
    assert json.loads(latest.schema.schema_str)["name"] == "KsqlDataSourceSchema"


def test_header_columns_read_record_headers(engine):
    engine.execute(
        "CREATE STREAM h (k STRING KEY, v INT, hs ARRAY<STRUCT<key STRING, value BYTES>> HEADERS, "
        "x BYTES HEADER('abc')) WITH (kafka_topic='h', value_format='JSON');"
    )
    engine.execute("CREATE STREAM ho AS SELECT k, v, FROM_BYTES(x, 'utf8') AS xs, ARRAY_LENGTH(hs) AS n FROM h;")
    engine.runtime.produce(Record("h", b"a", b'{"V": 1}', 0, headers=[("abc", b"one"), ("z", None), ("abc", b"two")]))
    assert [json.loads(r.value) for r in engine.runtime.topics["HO"]] == [{"V": 1, "XS": "two", "N": 3}]
    with pytest.raises(KsqlStatementError, match="HEADER"):
        engine.execute("CREATE STREAM bad (x STRING HEADER('abc')) WITH (kafka_topic='b', value_format='JSON');")


def test_queries_that_would_feed_themselves_are_refused(engine):
    engine.execute(SOURCE)
    with pytest.raises(KsqlStatementError, match="reads from the same topic"):
        engine.execute("INSERT INTO payments SELECT * FROM payments;")
    with pytest.raises(KsqlStatementError, match="topic it reads from"):
        engine.execute("CREATE STREAM loop WITH (kafka_topic='payments_src') AS SELECT * FROM payments;")


def test_clauses_a_persistent_stream_query_cannot_have(engine):
    engine.execute(SOURCE)
    with pytest.raises(KsqlStatementError, match="LIMIT"):
        engine.execute("CREATE STREAM lim AS SELECT * FROM payments LIMIT 3;")
    with pytest.raises(KsqlStatementError, match="EMIT FINAL"):
        engine.execute("CREATE STREAM fin AS SELECT * FROM payments EMIT FINAL;")


def test_request_properties_override_session_offset_reset():
    engine = Engine(InMemorySchemaRegistry(), InMemoryRuntime())  # session default: latest
    engine.execute(SOURCE)
    produce(engine, "payments_src", b"p1", b"1.0,a,1")
    engine.execute("CREATE STREAM a AS SELECT * FROM payments;")
    engine.execute("CREATE STREAM b AS SELECT * FROM payments;", {"auto.offset.reset": "earliest"})
    assert engine.runtime.topics["A"] == [] and len(engine.runtime.topics["B"]) == 1


def test_drop_of_a_csas_sink_terminates_its_query(engine):
    engine.execute(SOURCE)
    (res,) = engine.execute("CREATE STREAM out AS SELECT * FROM payments;")
    engine.execute("DROP STREAM out;")
    assert res.query_id not in engine.queries and engine.metastore.get("OUT") is None
    engine.execute("DROP STREAM payments;")  # no query reads it any more


def test_insert_values_widens_but_does_not_parse_strings(engine):
    engine.execute(
        "CREATE STREAM iv (k STRING KEY, b BIGINT, d DOUBLE, m DECIMAL(5,2)) "
        "WITH (kafka_topic='iv', value_format='JSON');"
    )
    engine.execute("INSERT INTO iv (ROWTIME, k, b, d, m) VALUES (1234, 'x', 1, 2, 3.5);")
    (rec,) = engine.runtime.topics["iv"]
    assert (rec.key, rec.value, rec.timestamp) == (b"x", b'{"B":1,"D":2.0,"M":3.50}', 1234)
    with pytest.raises(KsqlStatementError, match="Expected type BIGINT for field `B`"):
        engine.execute("INSERT INTO iv (k, b) VALUES ('y', '10');")


@pytest.mark.parametrize("value_format", ["AVRO", "JSON"])  # AVRO from DELIMITED takes the vectorized path
def test_an_event_time_beyond_year_9999_goes_to_the_processing_log(engine, value_format):
    engine.execute(
        "CREATE STREAM t (id STRING KEY, ts STRING, amount DOUBLE) WITH (kafka_topic='t_src', "
        "value_format='DELIMITED', timestamp='TS', timestamp_format='yyyy-MM-dd''T''HH:mm:ssXXX');"
    )
    engine.execute(f"CREATE STREAM t_out WITH (value_format='{value_format}') AS SELECT id, amount FROM t;")
    produce(engine, "t_src", b"a", b"9999-12-31T23:59:59-01:00,1.0")
    produce(engine, "t_src", b"b", b"2020-01-01T00:00:00Z,2.0")
    out = engine.runtime.topics["T_OUT"]
    assert [r.key for r in out] == [b"b"] and out[0].timestamp == 1577836800000
    [entry] = engine.processing_log.entries
    assert entry["target"] == "timestamp" and entry["offset"] == 0
