"""Tables in the embedded engine: CREATE TABLE, state stores, table queries and their changelogs."""

import datetime as dt
from decimal import Decimal

import pytest

from stack.ksqldb import state
from stack.ksqldb.engine import Engine
from stack.ksqldb.errors import KsqlStatementError
from stack.ksqldb.formats import InMemorySchemaRegistry
from stack.ksqldb.records import Record
from stack.ksqldb.runtime import InMemoryRuntime


@pytest.fixture()
def engine():
    return Engine(InMemorySchemaRegistry(), InMemoryRuntime(), {"auto.offset.reset": "earliest"})


def produce(engine, topic, key, value, ts=0):
    engine.runtime.produce(Record(topic, key, value, ts))


def records(engine, topic):
    return [(r.key, r.value) for r in engine.runtime.topics[topic]]


# ---------------------------------------------------------------- CREATE TABLE
def test_create_table_registers_a_table_with_its_primary_key(engine):
    engine.execute(
        "CREATE TABLE users (id STRING PRIMARY KEY, name STRING, limit_eur DOUBLE) "
        "WITH (kafka_topic='users', value_format='JSON');"
    )
    users = engine.metastore.require("USERS")
    assert users.kind == "TABLE"
    assert [c.name for c in users.schema.key] == ["ID"]
    assert [c.name for c in users.schema.value] == ["NAME", "LIMIT_EUR"]
    (listed,) = engine.execute("SHOW TABLES;")[0].data
    assert (listed["name"], listed["type"], listed["topic"]) == ("USERS", "TABLE", "users")
    assert engine.execute("DESCRIBE users;")[0].data["type"] == "TABLE"


def test_table_key_rules_follow_ksqldb(engine):
    with pytest.raises(KsqlStatementError, match="please use 'PRIMARY KEY' for tables"):
        engine.execute("CREATE TABLE t (k STRING KEY, v INT) WITH (kafka_topic='t', value_format='JSON');")
    with pytest.raises(KsqlStatementError, match="Tables require a PRIMARY KEY"):
        engine.execute("CREATE TABLE t (v INT) WITH (kafka_topic='t', value_format='JSON');")
    with pytest.raises(KsqlStatementError, match="please use 'KEY' for streams"):
        engine.execute("CREATE STREAM s (k STRING PRIMARY KEY, v INT) WITH (kafka_topic='s', value_format='JSON');")


def test_table_schema_from_the_registry_for_avro(engine):
    engine.registry.register("users_avro-key", "string")
    engine.registry.register(
        "users_avro-value", {"type": "record", "name": "User", "fields": [{"name": "name", "type": ["null", "string"]}]}
    )
    engine.execute("CREATE TABLE users WITH (kafka_topic='users_avro', format='AVRO');")
    users = engine.metastore.require("USERS")
    assert users.kind == "TABLE"
    assert [(c.name, str(c.type)) for c in users.schema.key] == [("ROWKEY", "STRING")]
    assert [c.name for c in users.schema.value] == ["NAME"]


def test_a_projection_of_a_stream_is_not_a_table(engine):
    engine.execute("CREATE STREAM s (k STRING KEY, v INT) WITH (kafka_topic='s', value_format='JSON');")
    with pytest.raises(KsqlStatementError, match="Your SELECT query produces a STREAM"):
        engine.execute("CREATE TABLE t AS SELECT * FROM s;")


# ---------------------------------------------------------------- state stores
def test_key_value_store_keys_are_sql_values():
    store = state.InMemoryStateStores().key_value("agg")
    store.put(("a", 1), [1, 2])
    store.put((None, [1, 2], {"F": 1}), "struct and array keys")
    store.put((1,), "int")
    store.put((1.0,), "double")
    assert store.get(("a", 1)) == [1, 2]
    assert store.get((None, [1, 2], {"F": 1})) == "struct and array keys"
    assert (store.get((1,)), store.get((1.0,))) == ("int", "double")
    store.delete(("a", 1))
    assert store.get(("a", 1)) is None
    assert len(store) == 3
    assert sorted(str(k) for k, _ in store.items()) == sorted(str(k) for k in [(None, [1, 2], {"F": 1}), (1,), (1.0,)])


def test_window_store_orders_windows_and_expires_them():
    store = state.InMemoryStateStores().window("win")
    store.put(("a",), 20, 30, "late")
    store.put(("a",), 0, 10, "early")
    store.put(("b",), 5, 15, "other key")
    assert [(s, e, v) for s, e, v in store.windows(("a",))] == [(0, 10, "early"), (20, 30, "late")]
    gone = store.expire(end_before=16)
    assert sorted((k, s, e) for k, s, e, _ in gone) == [(("a",), 0, 10), (("b",), 5, 15)]
    assert list(store.windows(("b",))) == []
    assert len(store) == 1


def test_stores_are_shared_by_name_within_a_query():
    stores = state.InMemoryStateStores()
    stores.key_value("x").put((1,), 1)
    assert stores.key_value("x").get((1,)) == 1


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        2**70,
        -3,
        1.5,
        float("inf"),
        "text",
        b"\x00\xff",
        Decimal("1.10"),
        dt.date(2024, 2, 29),
        dt.time(12, 30, 1, 5000),
        dt.datetime(2024, 1, 2, 3, 4, 5, 6000),
        [1, [2, None]],
        (1, "a", (Decimal("0.5"),)),
        {"K": [1, 2], "M": {"x": 1.0}},
    ],
)
def test_state_codec_round_trips_exactly(value):
    back = state.decode(state.encode(value))
    assert back == value and type(back) is type(value)
    if isinstance(value, Decimal):
        assert str(back) == str(value)  # scale kept


def test_state_codec_refuses_objects():
    with pytest.raises(TypeError):
        state.encode(object())


# ---------------------------------------------------------------- windowed sources
def test_a_windowed_source_exposes_its_bounds_and_keeps_its_windows(engine):
    import struct

    engine.execute(
        "CREATE STREAM w (k STRING KEY, v INT) WITH (kafka_topic='w', value_format='JSON', WINDOW_TYPE='SESSION');"
    )
    engine.execute("CREATE STREAM w2 AS SELECT k, v, WINDOWSTART AS ws, WINDOWEND AS we FROM w;")
    session_key = b"a" + struct.pack(">qq", 20, 10)  # key, end, start
    produce(engine, "w", session_key, b'{"V": 1}')
    assert records(engine, "W2") == [(session_key, b'{"V":1,"WS":10,"WE":20}')]
    assert engine.metastore.require("W2").window.type == "SESSION"
    engine.execute(
        "CREATE TABLE t (k STRING PRIMARY KEY, v INT) WITH (kafka_topic='t', value_format='JSON', "
        "WINDOW_TYPE='TUMBLING', WINDOW_SIZE='10 SECONDS');"
    )
    assert engine.metastore.require("T").window.size == 10_000
    with pytest.raises(KsqlStatementError, match="WINDOW_SIZE"):
        engine.execute("CREATE STREAM bad (v INT) WITH (kafka_topic='b', value_format='JSON', WINDOW_TYPE='HOPPING');")


def test_insert_into_a_stream_refuses_a_table_result(engine):
    engine.execute("CREATE STREAM s (k STRING KEY, v INT) WITH (kafka_topic='s', value_format='JSON');")
    engine.execute("CREATE TABLE t (k STRING PRIMARY KEY, v INT) WITH (kafka_topic='t', value_format='JSON');")
    with pytest.raises(KsqlStatementError, match=r"Data sink \(S\) type is KSTREAM but select query result is KTABLE"):
        engine.execute("INSERT INTO s SELECT * FROM t;")
    with pytest.raises(KsqlStatementError, match="select query result is KTABLE"):
        engine.execute("INSERT INTO s SELECT k, COUNT(*) AS v FROM s GROUP BY k;")


def test_drop_must_name_the_kind_of_the_source(engine):
    engine.execute("CREATE TABLE t (k STRING PRIMARY KEY, v INT) WITH (kafka_topic='t', value_format='JSON');")
    with pytest.raises(
        KsqlStatementError, match="Incompatible data source type is table, but statement was DROP stream"
    ):
        engine.execute("DROP STREAM t;")
    engine.execute("DROP TABLE t;")
    assert engine.metastore.get("T") is None
