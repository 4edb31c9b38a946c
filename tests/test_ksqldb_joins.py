"""Joins in the embedded ksqlDB engine: behaviour the QTT files do not pin down (NULL padding and its
timing, out-of-window records, table tombstones, multi-way joins, replay order, refusals)."""

import json
import struct

import pytest

from stack.ksqldb.engine import Engine
from stack.ksqldb.errors import KsqlStatementError, UnsupportedError
from stack.ksqldb.formats import InMemorySchemaRegistry
from stack.ksqldb.records import Record
from stack.ksqldb.runtime import InMemoryRuntime


@pytest.fixture()
def engine():
    return Engine(InMemorySchemaRegistry(), InMemoryRuntime(), {"auto.offset.reset": "earliest"})


def send(engine, topic, key, value, ts):
    """Keys: str (a KAFKA STRING key), int (a KAFKA INT key) or None; values as JSON."""
    raw = None if key is None else struct.pack(">i", key) if isinstance(key, int) else key.encode()
    engine.runtime.produce(Record(topic, raw, None if value is None else json.dumps(value).encode(), ts))


def out(engine, topic, int_keys=False):
    """(key, value, timestamp) of every record on a topic (KAFKA STRING or INT keys, JSON values)."""
    return [
        (_key(r.key, int_keys), json.loads(r.value) if r.value is not None else None, r.timestamp)
        for r in engine.runtime.topics[topic]
    ]


def _key(raw, int_keys):
    if raw is None:
        return None
    return struct.unpack(">i", raw)[0] if int_keys else raw.decode()


def streams(engine, *names):
    for name, cols in names:
        engine.execute(
            f"CREATE STREAM {name} (ID STRING KEY, {cols}) "
            f"WITH (kafka_topic='{name.lower()}', value_format='JSON', partitions=1);"
        )


def tables(engine, *names):
    for name, cols in names:
        engine.execute(
            f"CREATE TABLE {name} (ID STRING PRIMARY KEY, {cols}) "
            f"WITH (kafka_topic='{name.lower()}', value_format='JSON', partitions=1);"
        )


# ---------------------------------------------------------------- stream-stream
def test_records_outside_the_window_do_not_join(engine):
    streams(engine, ("L", "A INT"), ("R", "B INT"))
    engine.execute("CREATE STREAM J AS SELECT L.ID, A, B FROM L JOIN R WITHIN 10 SECONDS ON L.ID = R.ID;")
    send(engine, "l", "k", {"A": 1}, 0)
    send(engine, "r", "k", {"B": 2}, 10_001)  # 1 ms too late for the left record
    send(engine, "r", "k", {"B": 3}, 10_000)  # exactly at the edge: joins
    send(engine, "l", "k", {"A": 4}, 20_000)  # within 10 s after both right records
    # partners come in timestamp order, and the result carries the later timestamp
    assert out(engine, "J") == [
        ("k", {"A": 1, "B": 3}, 10_000),
        ("k", {"A": 4, "B": 3}, 20_000),
        ("k", {"A": 4, "B": 2}, 20_000),
    ]


def test_before_and_after_sizes_bound_each_side(engine):
    streams(engine, ("L", "A INT"), ("R", "B INT"))
    # right records may be up to 1 s before and 5 s after a left record
    engine.execute("CREATE STREAM J AS SELECT L.ID, A, B FROM L JOIN R WITHIN (1 SECOND, 5 SECONDS) ON L.ID = R.ID;")
    send(engine, "l", "k", {"A": 1}, 10_000)
    send(engine, "r", "k", {"B": 1}, 8_999)  # 1.001 s before: no
    send(engine, "r", "k", {"B": 2}, 9_000)  # 1 s before: yes
    send(engine, "r", "k", {"B": 3}, 15_000)  # 5 s after: yes
    send(engine, "r", "k", {"B": 4}, 15_001)  # no
    assert [v["B"] for _, v, _ in out(engine, "J")] == [2, 3]


def test_left_join_without_grace_pads_at_once_then_joins(engine):
    streams(engine, ("L", "A INT"), ("R", "B INT"))
    engine.execute("CREATE STREAM J AS SELECT L.ID, A, B FROM L LEFT JOIN R WITHIN 1 MINUTE ON L.ID = R.ID;")
    send(engine, "l", "k", {"A": 1}, 0)
    send(engine, "r", "k", {"B": 2}, 1_000)
    send(engine, "r", "x", {"B": 3}, 2_000)  # a right record without partner: a LEFT join drops it
    assert out(engine, "J") == [("k", {"A": 1, "B": None}, 0), ("k", {"A": 1, "B": 2}, 1_000)]


def test_left_join_with_grace_pads_only_after_the_window_closes(engine):
    streams(engine, ("L", "A INT"), ("R", "B INT"))
    engine.execute(
        "CREATE STREAM J AS SELECT L.ID, A, B FROM L LEFT JOIN R WITHIN 10 SECONDS GRACE PERIOD 5 SECONDS "
        "ON L.ID = R.ID;"
    )
    send(engine, "l", "matched", {"A": 1}, 0)
    send(engine, "l", "alone", {"A": 2}, 0)
    send(engine, "r", "matched", {"B": 9}, 3_000)
    assert out(engine, "J") == [("matched", {"A": 1, "B": 9}, 3_000)]
    send(engine, "r", "other", {"B": 0}, 15_000)  # stream time 15 s: window end 10 s + grace 5 s not yet passed
    assert len(out(engine, "J")) == 1
    send(engine, "r", "other", {"B": 0}, 15_001)  # now it has: the unmatched record comes out, at its own time
    assert out(engine, "J")[1:] == [("alone", {"A": 2, "B": None}, 0)]


def test_full_outer_join_pads_either_side_and_keys_by_the_join_key(engine):
    streams(engine, ("L", "A INT"), ("R", "B INT"))
    engine.execute(
        "CREATE STREAM J AS SELECT ROWKEY AS K, L.ID AS LID, R.ID AS RID, A, B FROM L FULL OUTER JOIN R "
        "WITHIN 1 SECOND ON L.ID = R.ID;"
    )
    send(engine, "l", "a", {"A": 1}, 0)
    send(engine, "r", "b", {"B": 2}, 0)
    assert out(engine, "J") == [
        ("a", {"LID": "a", "RID": None, "A": 1, "B": None}, 0),
        ("b", {"LID": None, "RID": "b", "A": None, "B": 2}, 0),
    ]


def test_join_on_a_value_column_rekeys_the_stream(engine):
    engine.execute(
        "CREATE STREAM CLICKS (URL STRING, USER_ID INT) WITH (kafka_topic='clicks', value_format='JSON', partitions=1);"
    )
    engine.execute(
        "CREATE STREAM VIEWS (ID INT KEY, PAGE STRING) WITH (kafka_topic='views', value_format='JSON', partitions=1);"
    )
    engine.execute(
        "CREATE STREAM J AS SELECT V.ID, URL, PAGE FROM CLICKS C JOIN VIEWS V WITHIN 1 MINUTE ON C.USER_ID = V.ID;"
    )
    send(engine, "views", 7, {"PAGE": "home"}, 0)
    send(engine, "clicks", None, {"URL": "/x", "USER_ID": 7}, 10)
    send(engine, "clicks", None, {"URL": "/y", "USER_ID": None}, 20)  # no join key: an inner join drops it
    assert out(engine, "J", int_keys=True) == [(7, {"URL": "/x", "PAGE": "home"}, 10)]
    assert [c.name for c in engine.metastore.get("J").schema.key] == ["ID"]


# ---------------------------------------------------------------- stream-table
def test_stream_table_join_sees_updates_and_deletes_of_the_table(engine):
    streams(engine, ("PAYMENTS", "AMOUNT DOUBLE"))
    tables(engine, ("USERS", "NAME STRING"))
    engine.execute("CREATE STREAM INNER_J AS SELECT P.ID, AMOUNT, NAME FROM PAYMENTS P JOIN USERS U ON P.ID = U.ID;")
    engine.execute(
        "CREATE STREAM LEFT_J AS SELECT P.ID, AMOUNT, NAME FROM PAYMENTS P LEFT JOIN USERS U ON P.ID = U.ID;"
    )
    send(engine, "payments", "u1", {"AMOUNT": 1.0}, 1)  # before the user exists
    send(engine, "users", "u1", {"NAME": "ann"}, 2)  # a table update emits nothing
    send(engine, "payments", "u1", {"AMOUNT": 2.0}, 3)
    send(engine, "users", "u1", {"NAME": "anne"}, 4)
    send(engine, "payments", "u1", {"AMOUNT": 3.0}, 5)
    send(engine, "users", "u1", None, 6)  # tombstone: the user is gone
    send(engine, "payments", "u1", {"AMOUNT": 4.0}, 7)
    assert out(engine, "INNER_J") == [
        ("u1", {"AMOUNT": 2.0, "NAME": "ann"}, 3),
        ("u1", {"AMOUNT": 3.0, "NAME": "anne"}, 5),
    ]
    assert [v["NAME"] for _, v, _ in out(engine, "LEFT_J")] == [None, "ann", "anne", None]


def test_stream_table_left_join_keeps_stream_records_without_a_key(engine):
    engine.execute(
        "CREATE STREAM S (USER_ID STRING, AMOUNT INT) WITH (kafka_topic='s', value_format='JSON', partitions=1);"
    )
    tables(engine, ("USERS", "NAME STRING"))
    engine.execute("CREATE STREAM J AS SELECT USER_ID, AMOUNT, NAME FROM S LEFT JOIN USERS U ON S.USER_ID = U.ID;")
    send(engine, "s", None, {"USER_ID": None, "AMOUNT": 5}, 1)
    assert out(engine, "J") == [(None, {"AMOUNT": 5, "NAME": None}, 1)]


# ---------------------------------------------------------------- table-table
def test_table_table_join_is_a_changelog_with_single_tombstones(engine):
    tables(engine, ("A", "X INT"), ("B", "Y INT"))
    engine.execute("CREATE TABLE J AS SELECT A.ID, X, Y FROM A JOIN B ON A.ID = B.ID WHERE Y > 0;")
    send(engine, "a", "k", {"X": 1}, 10)
    send(engine, "b", "k", {"Y": 1}, 20)
    send(engine, "b", "k", {"Y": -1}, 30)  # no longer matches WHERE: a tombstone
    send(engine, "b", "k", {"Y": -2}, 40)  # still not matching: nothing more to delete
    send(engine, "a", "k", None, 50)  # the joined row is already gone downstream
    send(engine, "b", "k", {"Y": 5}, 60)  # no left row: nothing
    assert out(engine, "J") == [("k", {"X": 1, "Y": 1}, 20), ("k", None, 30)]
    assert engine.metastore.get("J").kind == "TABLE"


def test_table_table_outer_join_keeps_the_side_that_remains(engine):
    tables(engine, ("A", "X INT"), ("B", "Y INT"))
    engine.execute("CREATE TABLE J AS SELECT ROWKEY AS ID, X, Y FROM A FULL OUTER JOIN B ON A.ID = B.ID;")
    send(engine, "a", "k", {"X": 1}, 10)
    send(engine, "b", "k", {"Y": 2}, 20)
    send(engine, "a", "k", None, 30)
    send(engine, "b", "k", None, 40)
    assert out(engine, "J") == [
        ("k", {"X": 1, "Y": None}, 10),
        ("k", {"X": 1, "Y": 2}, 20),
        ("k", {"X": None, "Y": 2}, 30),
        ("k", None, 40),
    ]


@pytest.mark.parametrize("kind", ["INNER", "LEFT"])
def test_foreign_key_join_follows_both_tables(engine, kind):
    tables(engine, ("ORDERS", "CUST STRING, AMOUNT INT"), ("CUSTOMERS", "NAME STRING"))
    engine.execute(
        f"CREATE TABLE J AS SELECT O.ID, AMOUNT, NAME FROM ORDERS O {kind} JOIN CUSTOMERS C ON O.CUST = C.ID;"
    )
    send(engine, "orders", "o0", {"CUST": "nobody", "AMOUNT": 1}, 1)
    send(engine, "customers", "c1", {"NAME": "bo"}, 2)
    send(engine, "orders", "o1", {"CUST": "c1", "AMOUNT": 5}, 3)
    send(engine, "orders", "o2", {"CUST": "c1", "AMOUNT": 6}, 4)
    send(engine, "customers", "c1", {"NAME": "bob"}, 5)  # re-joins every order of c1
    send(engine, "orders", "o1", {"CUST": "c2", "AMOUNT": 5}, 6)  # moves to a customer not there yet
    send(engine, "customers", "c2", {"NAME": "cy"}, 7)
    send(engine, "customers", "c1", None, 8)
    send(engine, "orders", "o2", None, 9)
    expected = [
        ("o1", {"AMOUNT": 5, "NAME": "bo"}, 3),
        ("o2", {"AMOUNT": 6, "NAME": "bo"}, 4),
        ("o1", {"AMOUNT": 5, "NAME": "bob"}, 5),
        ("o2", {"AMOUNT": 6, "NAME": "bob"}, 5),
        ("o1", None, 6) if kind == "INNER" else ("o1", {"AMOUNT": 5, "NAME": None}, 6),
        ("o1", {"AMOUNT": 5, "NAME": "cy"}, 7),
        ("o2", None, 8) if kind == "INNER" else ("o2", {"AMOUNT": 6, "NAME": None}, 8),
        ("o2", None, 9),
    ]
    if kind == "LEFT":
        expected.insert(0, ("o0", {"AMOUNT": 1, "NAME": None}, 1))
    assert out(engine, "J") == expected
    assert [c.name for c in engine.metastore.get("J").schema.key] == ["O_ID"]  # the left table's key


def test_foreign_key_joins_are_inner_or_left(engine):
    tables(engine, ("ORDERS", "CUST STRING"), ("CUSTOMERS", "NAME STRING"))
    with pytest.raises(KsqlStatementError, match="full-outer join not supported for foreign-key table-table join"):
        engine.execute("CREATE TABLE J AS SELECT O.ID, NAME FROM ORDERS O FULL JOIN CUSTOMERS C ON O.CUST = C.ID;")


def test_windowed_tables_join_window_by_window(engine):
    """Joins of windowed sources match on the key and the window; the result keeps the window."""
    from stack.ksqldb.windows import decode_windowed_key

    streams(engine, ("P", "AMOUNT INT"))
    engine.execute("CREATE TABLE C AS SELECT ID, COUNT(*) AS N FROM P WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY ID;")
    engine.execute(
        "CREATE TABLE S AS SELECT ID, SUM(AMOUNT) AS T FROM P WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY ID;"
    )
    engine.execute("CREATE TABLE J AS SELECT C.ID, N, T FROM C JOIN S ON C.ID = S.ID;")
    for amount, ts in ((1, 1_000), (2, 12_000)):
        send(engine, "p", "u", {"AMOUNT": amount}, ts)
    window = engine.metastore.get("J").window
    assert (window.type, window.size) == ("TUMBLING", 10_000)
    got = [(decode_windowed_key(r.key, window), json.loads(r.value)) for r in engine.runtime.topics["J"]]
    assert got == [((b"u", 0, 10_000), {"N": 1, "T": 1}), ((b"u", 10_000, 20_000), {"N": 1, "T": 2})]


def test_windowed_sources_join_only_on_their_keys(engine):
    for name in ("A", "B"):
        engine.execute(
            f"CREATE STREAM {name} (ID STRING KEY, V INT) WITH (kafka_topic='{name.lower()}', "
            "value_format='JSON', partitions=1, WINDOW_TYPE='TUMBLING', WINDOW_SIZE='10 SECONDS');"
        )
    with pytest.raises(KsqlStatementError, match="Implicit repartitioning of windowed sources is not supported"):
        engine.execute(
            "CREATE STREAM J AS SELECT A.ID, A.V FROM A JOIN B WITHIN 1 MINUTE ON A.ID = CAST(B.V AS STRING);"
        )


# ---------------------------------------------------------------- multi-way
def test_three_way_stream_table_table_join(engine):
    streams(engine, ("ORDERS", "ITEM STRING"))
    tables(engine, ("CUSTOMERS", "NAME STRING"), ("REGIONS", "REGION STRING"))
    engine.execute(
        "CREATE STREAM J AS SELECT O.ID, ITEM, NAME, REGION FROM ORDERS O "
        "JOIN CUSTOMERS C ON O.ID = C.ID LEFT JOIN REGIONS R ON O.ID = R.ID;"
    )
    send(engine, "customers", "c1", {"NAME": "bo"}, 1)
    send(engine, "orders", "c1", {"ITEM": "pen"}, 2)
    send(engine, "regions", "c1", {"REGION": "eu"}, 3)
    send(engine, "orders", "c1", {"ITEM": "ink"}, 4)
    send(engine, "orders", "c2", {"ITEM": "cap"}, 5)  # no customer: the inner join drops it
    assert out(engine, "J") == [
        ("c1", {"ITEM": "pen", "NAME": "bo", "REGION": None}, 2),
        ("c1", {"ITEM": "ink", "NAME": "bo", "REGION": "eu"}, 4),
    ]


def test_three_way_join_rekeys_the_intermediate_result(engine):
    engine.execute(
        "CREATE STREAM ORDERS (ID STRING KEY, CUSTOMER STRING) WITH (kafka_topic='orders', "
        "value_format='JSON', partitions=1);"
    )
    tables(engine, ("SHIPMENTS", "CARRIER STRING"), ("CUSTOMERS", "NAME STRING"))
    engine.execute(
        "CREATE STREAM J AS SELECT C.ID AS CID, O.ID AS OID, CARRIER, NAME FROM ORDERS O "
        "JOIN SHIPMENTS S ON O.ID = S.ID JOIN CUSTOMERS C ON O.CUSTOMER = C.ID;"
    )
    send(engine, "shipments", "o1", {"CARRIER": "ups"}, 1)
    send(engine, "customers", "c9", {"NAME": "cy"}, 2)
    send(engine, "orders", "o1", {"CUSTOMER": "c9"}, 3)
    assert out(engine, "J") == [("c9", {"OID": "o1", "CARRIER": "ups", "NAME": "cy"}, 3)]


# ---------------------------------------------------------------- aggregations over joins
def test_group_by_over_a_stream_table_join(engine):
    """Per-user totals of payments enriched by a users table: the aggregation reads the joined rows."""
    engine.execute(
        "CREATE STREAM PAYMENTS (PID STRING KEY, USER_ID STRING, AMOUNT INT) WITH (kafka_topic='payments', "
        "value_format='JSON', partitions=1);"
    )
    tables(engine, ("USERS", "REGION STRING"))
    engine.execute(
        "CREATE TABLE T AS SELECT REGION, COUNT(*) AS N, SUM(AMOUNT) AS TOTAL FROM PAYMENTS P "
        "JOIN USERS U ON P.USER_ID = U.ID GROUP BY REGION;"
    )
    send(engine, "users", "u1", {"REGION": "eu"}, 1)
    send(engine, "users", "u2", {"REGION": "us"}, 2)
    send(engine, "payments", "p1", {"USER_ID": "u1", "AMOUNT": 5}, 3)
    send(engine, "payments", "p2", {"USER_ID": "u2", "AMOUNT": 7}, 4)
    send(engine, "payments", "p3", {"USER_ID": "u1", "AMOUNT": 1}, 5)
    send(engine, "payments", "p4", {"USER_ID": "nobody", "AMOUNT": 100}, 6)  # no user: the inner join drops it
    assert out(engine, "T") == [
        ("eu", {"N": 1, "TOTAL": 5}, 3),
        ("us", {"N": 1, "TOTAL": 7}, 4),
        ("eu", {"N": 2, "TOTAL": 6}, 5),
    ]


def test_group_by_over_a_table_table_join_takes_updates_back(engine):
    tables(engine, ("ACCOUNTS", "BRANCH STRING"), ("BALANCES", "AMOUNT INT"))
    engine.execute(
        "CREATE TABLE T AS SELECT BRANCH, SUM(AMOUNT) AS TOTAL FROM ACCOUNTS A "
        "JOIN BALANCES B ON A.ID = B.ID GROUP BY BRANCH;"
    )
    send(engine, "accounts", "a1", {"BRANCH": "x"}, 1)
    send(engine, "balances", "a1", {"AMOUNT": 10}, 2)
    send(engine, "balances", "a1", {"AMOUNT": 15}, 3)  # replaces 10 in the sum
    send(engine, "accounts", "a1", {"BRANCH": "y"}, 4)  # moves the account: out of x, into y
    assert out(engine, "T") == [
        ("x", {"TOTAL": 10}, 2),
        ("x", {"TOTAL": 15}, 3),
        ("x", {"TOTAL": 0}, 4),
        ("y", {"TOTAL": 15}, 4),
    ]


# ---------------------------------------------------------------- runtime and refusals
def test_a_query_started_later_replays_both_sides_in_timestamp_order(engine):
    streams(engine, ("L", "A INT"), ("R", "B INT"))
    send(engine, "r", "k", {"B": 1}, 5)
    send(engine, "l", "k", {"A": 1}, 0)  # earlier timestamp, produced later: replayed first
    engine.execute("CREATE STREAM J AS SELECT L.ID, A, B FROM L LEFT JOIN R WITHIN 1 MINUTE ON L.ID = R.ID;")
    assert out(engine, "J") == [("k", {"A": 1, "B": None}, 0), ("k", {"A": 1, "B": 1}, 5)]


def test_bad_records_go_to_the_processing_log_and_the_join_goes_on(engine):
    streams(engine, ("L", "A INT"), ("R", "B INT"))
    engine.execute("CREATE STREAM J AS SELECT L.ID, A, B FROM L JOIN R WITHIN 1 MINUTE ON L.ID = R.ID;")
    engine.runtime.produce(Record("r", b"k", b"{not json", 1))
    send(engine, "r", "k", {"B": 2}, 2)
    send(engine, "l", "k", {"A": 1}, 3)
    assert out(engine, "J") == [("k", {"A": 1, "B": 2}, 3)]
    assert [e["topic"] for e in engine.processing_log.entries] == ["r"]


def test_sides_joined_on_keys_need_equal_partition_counts(engine):
    engine.execute("CREATE STREAM L (ID STRING KEY, A INT) WITH (kafka_topic='l', value_format='JSON', partitions=2);")
    engine.execute("CREATE STREAM R (ID STRING KEY, B INT) WITH (kafka_topic='r', value_format='JSON', partitions=3);")
    with pytest.raises(
        KsqlStatementError, match="number of partitions don't match. `L` partitions = 2; `R` partitions = 3"
    ):
        engine.execute("CREATE STREAM J AS SELECT L.ID, A, B FROM L JOIN R WITHIN 1 MINUTE ON L.ID = R.ID;")
    # re-keying one side removes the requirement, as the repartition topic takes the other side's count
    engine.execute("CREATE STREAM J AS SELECT L.ID, A, B FROM L JOIN R WITHIN 1 MINUTE ON L.ID = CAST(R.B AS STRING);")


def test_join_queries_are_refused_by_runtimes_that_read_one_topic():
    class OneTopicRuntime(InMemoryRuntime):
        runs_joins = False

    engine = Engine(InMemorySchemaRegistry(), OneTopicRuntime(), {})
    streams(engine, ("L", "A INT"), ("R", "B INT"))
    with pytest.raises(UnsupportedError):
        engine.execute("CREATE STREAM J AS SELECT L.ID, A, B FROM L JOIN R WITHIN 1 MINUTE ON L.ID = R.ID;")
    assert engine.metastore.get("J") is None


def test_a_push_query_over_a_join_reads_every_source(engine):
    """Push queries run the join with their own in-memory state; a table-table join's deleted row is a
    tombstone (key columns, null values) in the push query's changelog."""
    tables(engine, ("A", "X INT"), ("B", "Y INT"))
    (result,) = engine.execute("SELECT * FROM A JOIN B ON A.ID = B.ID EMIT CHANGES LIMIT 3;")
    tq = result.data
    assert tq.source_topics == ["a", "b"] and [n for n, _ in tq.columns] == ["A_ID", "A_X", "B_ID", "B_Y"]
    records = [
        Record("a", b"k", b'{"X": 1}', 1),
        Record("b", b"k", b'{"Y": 2}', 2),
        Record("a", b"k", None, 3),
        Record("b", b"k", b'{"Y": 3}', 4),
        Record("a", b"k", b'{"X": 4}', 5),
        Record("a", b"k", b'{"X": 5}', 6),
    ]
    assert tq.changelog(records) == [
        (["k", 1, "k", 2], False),
        (["k", None, None, None], True),
        (["k", 4, "k", 3], False),
    ]
    assert tq.done
    (result,) = engine.execute("SELECT B.Y, A.ID, A.X FROM A JOIN B ON A.ID = B.ID EMIT CHANGES;")
    assert [n for n, _ in result.data.columns] == ["Y", "A_ID", "X"]
    assert result.data.changelog(records[:3]) == [([2, "k", 1], False), ([None, "k", None], True)]
