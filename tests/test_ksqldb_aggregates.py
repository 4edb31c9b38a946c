"""Aggregations in the embedded engine, beyond what the QTT files cover: session windows, EMIT FINAL,
late records, undo on table aggregation, HAVING tombstones, windowed key bytes, aggregate typing."""

import json
import struct

import pytest

from stack.ksqldb.engine import Engine
from stack.ksqldb.errors import KsqlStatementError, UnsupportedError
from stack.ksqldb.formats import InMemorySchemaRegistry
from stack.ksqldb.records import Record
from stack.ksqldb.runtime import InMemoryRuntime
from stack.ksqldb.windows import parse_window

STREAM = (
    "CREATE STREAM pay (id STRING KEY, usr STRING, amount DOUBLE, n INT) "
    "WITH (kafka_topic='pay', value_format='JSON', key_format='KAFKA');"
)


@pytest.fixture()
def engine():
    e = Engine(InMemorySchemaRegistry(), InMemoryRuntime(), {"auto.offset.reset": "earliest"})
    e.execute(STREAM)
    return e


def pay(engine, ts, usr, amount=1.0, n=1, key="p"):
    value = json.dumps({"USR": usr, "AMOUNT": amount, "N": n}).encode()
    engine.runtime.produce(Record("pay", key.encode() if key is not None else None, value, ts))


def out(engine, topic, windowed=None):
    """(key, window, value, timestamp) per record; window decoded when `windowed` is 'time' or 'session'."""
    rows = []
    for r in engine.runtime.topics[topic]:
        key, window = r.key, None
        if windowed == "time":
            key, window = key[:-8], struct.unpack(">q", key[-8:])[0]
        elif windowed == "session":
            end, start = struct.unpack(">qq", key[-16:])
            key, window = key[:-16], (start, end)
        rows.append((key.decode(), window, json.loads(r.value) if r.value is not None else None, r.timestamp))
    return rows


# ---------------------------------------------------------------- typing and functions
def test_aggregate_result_types_follow_ksqldb(engine):
    engine.execute(
        "CREATE TABLE t AS SELECT usr, COUNT(*) AS c, SUM(n) AS s, SUM(amount) AS sa, AVG(n) AS a, "
        "MIN(n) AS lo, MAX(amount) AS hi, COLLECT_LIST(n) AS l, TOPK(n, 2) AS tk, "
        "COUNT_DISTINCT(n) AS cd, LATEST_BY_OFFSET(n, 2) AS lbo FROM pay GROUP BY usr;"
    )
    schema = engine.metastore.require("T").schema
    assert [(c.name, str(c.type)) for c in schema.key] == [("USR", "STRING")]
    assert [(c.name, str(c.type)) for c in schema.value] == [
        ("C", "BIGINT"),
        ("S", "INTEGER"),
        ("SA", "DOUBLE"),
        ("A", "DOUBLE"),
        ("LO", "INTEGER"),
        ("HI", "DOUBLE"),
        ("L", "ARRAY<INTEGER>"),
        ("TK", "ARRAY<INTEGER>"),
        ("CD", "BIGINT"),
        ("LBO", "ARRAY<INTEGER>"),
    ]


def test_aggregate_functions_over_a_stream(engine):
    engine.execute(
        "CREATE TABLE t AS SELECT usr, COUNT(n) AS c, SUM(n) AS s, COLLECT_LIST(n) AS l, "
        "COLLECT_SET(n) AS st, COUNT_DISTINCT(n) AS cd, TOPK(n, 2) AS tk, TOPKDISTINCT(n, 2) AS tkd, "
        "EARLIEST_BY_OFFSET(n) AS e, EARLIEST_BY_OFFSET(n, 2) AS e2, MIN(n) AS lo, MAX(n) AS hi "
        "FROM pay GROUP BY usr;"
    )
    for n in (3, None, 3, 7):
        pay(engine, 1, "a", n=n)
    last = out(engine, "T")[-1][2]
    assert last == {
        "C": 3,
        "S": 13,
        "L": [3, None, 3, 7],
        "ST": [3, None, 7],
        "CD": 2,
        "TK": [7, 3],
        "TKD": [7, 3],
        "E": 3,
        "E2": [3, 3],
        "LO": 3,
        "HI": 7,
    }


def test_sum_of_int_wraps_like_java(engine):
    engine.execute("CREATE TABLE t AS SELECT usr, SUM(n) AS s FROM pay GROUP BY usr;")
    pay(engine, 1, "a", n=2**31 - 1)
    pay(engine, 2, "a", n=1)
    assert [r[2]["S"] for r in out(engine, "T")] == [2**31 - 1, -(2**31)]


def test_invalid_aggregations_are_refused_with_ksqldb_messages(engine):
    with pytest.raises(KsqlStatementError, match="Your SELECT query produces a TABLE"):
        engine.execute("CREATE STREAM s AS SELECT usr, COUNT(*) FROM pay GROUP BY usr;")
    with pytest.raises(KsqlStatementError, match="Non-aggregate SELECT expression"):
        engine.execute("CREATE TABLE t AS SELECT usr, n, COUNT(*) FROM pay GROUP BY usr;")
    with pytest.raises(KsqlStatementError, match="EMIT FINAL is only supported for windowed aggregations"):
        engine.execute("CREATE TABLE t AS SELECT usr, COUNT(*) FROM pay GROUP BY usr EMIT FINAL;")
    with pytest.raises(KsqlStatementError, match="does not accept parameters"):
        engine.execute("CREATE TABLE t AS SELECT usr, SUM(usr) FROM pay GROUP BY usr;")
    with pytest.raises(UnsupportedError):
        engine.execute("CREATE TABLE t AS SELECT usr, CORRELATION(n, n) FROM pay GROUP BY usr;")


# ---------------------------------------------------------------- tables: undo, tombstones
def test_table_aggregation_takes_updated_rows_out_of_their_old_group(engine):
    engine.execute(
        "CREATE TABLE acct (id STRING PRIMARY KEY, region STRING, bal INT) "
        "WITH (kafka_topic='acct', value_format='JSON');"
    )
    engine.execute(
        "CREATE TABLE by_region AS SELECT region, COUNT(*) AS c, SUM(bal) AS s, "
        "COLLECT_LIST(bal) AS l FROM acct GROUP BY region;"
    )

    def acct(key, value, ts):
        engine.runtime.produce(Record("acct", key.encode(), None if value is None else json.dumps(value).encode(), ts))

    acct("1", {"REGION": "eu", "BAL": 10}, 1)
    acct("2", {"REGION": "eu", "BAL": 5}, 2)
    acct("1", {"REGION": "eu", "BAL": 7}, 3)  # same group: one update (undo 10, add 7)
    acct("1", {"REGION": "us", "BAL": 7}, 4)  # moves: eu loses it, then us gains it
    acct("2", None, 5)  # deleted: eu loses it; the count reaches 0, not a tombstone
    assert [(k, v) for k, _, v, _ in out(engine, "BY_REGION")] == [
        ("eu", {"C": 1, "S": 10, "L": [10]}),
        ("eu", {"C": 2, "S": 15, "L": [10, 5]}),
        ("eu", {"C": 2, "S": 12, "L": [5, 7]}),
        ("eu", {"C": 1, "S": 5, "L": [5]}),
        ("us", {"C": 1, "S": 7, "L": [7]}),
        ("eu", {"C": 0, "S": 0, "L": []}),
    ]


def test_table_only_functions_are_refused_over_tables(engine):
    engine.execute(
        "CREATE TABLE acct (id STRING PRIMARY KEY, region STRING, bal INT) "
        "WITH (kafka_topic='acct', value_format='JSON');"
    )
    with pytest.raises(KsqlStatementError, match="cannot be applied to a table source"):
        engine.execute("CREATE TABLE t AS SELECT region, MAX(bal) FROM acct GROUP BY region;")


def test_having_emits_a_tombstone_only_for_a_row_that_passed_before(engine):
    engine.execute("CREATE TABLE t AS SELECT usr, SUM(n) AS s FROM pay GROUP BY usr HAVING SUM(n) > 5;")
    for n in (3, 4, -4, -1, 10):
        pay(engine, 1, "a", n=n)
    assert [v for _, _, v, _ in out(engine, "T")] == [{"S": 7}, None, {"S": 12}]


def test_table_projection_turns_rows_that_stop_matching_into_tombstones(engine):
    engine.execute(
        "CREATE TABLE acct (id STRING PRIMARY KEY, region STRING, bal INT) "
        "WITH (kafka_topic='acct', value_format='JSON');"
    )
    engine.execute("CREATE TABLE rich AS SELECT id, bal FROM acct WHERE bal > 100;")
    for key, value in (
        ("1", {"REGION": "eu", "BAL": 500}),
        ("1", {"REGION": "eu", "BAL": 50}),
        ("2", None),
        (None, {"REGION": "eu", "BAL": 900}),
    ):
        engine.runtime.produce(Record("acct", key and key.encode(), value and json.dumps(value).encode(), 0))
    assert [(r.key, r.value) for r in engine.runtime.topics["RICH"]] == [
        (b"1", b'{"BAL":500}'),
        (b"1", None),
        (b"2", None),
    ]
    assert engine.metastore.require("RICH").kind == "TABLE"


# ---------------------------------------------------------------- windows
def test_tumbling_window_keys_carry_the_window_start(engine):
    engine.execute(
        "CREATE TABLE t AS SELECT usr, COUNT(*) AS c, WINDOWSTART AS ws, WINDOWEND AS we "
        "FROM pay WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY usr;"
    )
    pay(engine, 12_000, "a")
    rec = engine.runtime.topics["T"][0]
    assert rec.key == b"a" + struct.pack(">q", 10_000)
    assert json.loads(rec.value) == {"C": 1, "WS": 10_000, "WE": 20_000}
    sink = engine.metastore.require("T")
    assert (sink.window.type, sink.window.size) == ("TUMBLING", 10_000)


def test_late_records_beyond_grace_are_dropped(engine):
    engine.execute(
        "CREATE TABLE t AS SELECT usr, COUNT(*) AS c FROM pay "
        "WINDOW TUMBLING (SIZE 10 SECONDS, GRACE PERIOD 5 SECONDS) GROUP BY usr;"
    )
    pay(engine, 1_000, "a")
    pay(engine, 14_999, "a")  # stream time 14999: [0, 10000) is open until 15000
    pay(engine, 2_000, "a")  # accepted
    pay(engine, 15_000, "a")  # closes [0, 10000)
    pay(engine, 3_000, "a")  # dropped
    assert [(w, v["C"]) for _, w, v, _ in out(engine, "T", "time")] == [(0, 1), (10_000, 1), (0, 2), (10_000, 2)]


def test_session_windows_merge_and_leave_tombstones(engine):
    engine.execute(
        "CREATE TABLE t AS SELECT usr, COUNT(*) AS c, SUM(n) AS s FROM pay WINDOW SESSION (5 SECONDS) GROUP BY usr;"
    )
    pay(engine, 0, "a", n=1)
    pay(engine, 20_000, "a", n=2)
    pay(engine, 10_000, "a", n=3)  # 10 s from each: separate
    pay(engine, 5_000, "a", n=4)  # bridges [0,0] and [10000,10000]
    assert out(engine, "T", "session") == [
        ("a", (0, 0), {"C": 1, "S": 1}, 0),
        ("a", (20_000, 20_000), {"C": 1, "S": 2}, 20_000),
        ("a", (10_000, 10_000), {"C": 1, "S": 3}, 10_000),
        ("a", (0, 0), None, 0),
        ("a", (10_000, 10_000), None, 10_000),
        ("a", (0, 10_000), {"C": 3, "S": 8}, 10_000),
    ]
    assert engine.metastore.require("T").window.type == "SESSION"


def test_emit_final_holds_each_window_until_it_closes(engine):
    engine.execute(
        "CREATE TABLE t AS SELECT usr, COUNT(*) AS c FROM pay "
        "WINDOW TUMBLING (SIZE 10 SECONDS, GRACE PERIOD 2 SECONDS) GROUP BY usr EMIT FINAL;"
    )
    for ts, usr in ((1_000, "a"), (2_000, "b"), (3_000, "a"), (11_000, "a")):
        pay(engine, ts, usr)
    assert engine.runtime.topics["T"] == []  # [0, 10000) closes at stream time 12000
    pay(engine, 12_000, "c")
    assert [(k, w, v) for k, w, v, _ in out(engine, "T", "time")] == [("a", 0, {"C": 2}), ("b", 0, {"C": 1})]
    pay(engine, 9_000, "a")  # late: the window is closed and was emitted
    pay(engine, 30_000, "c")
    assert [(k, w, v) for k, w, v, _ in out(engine, "T", "time")][2:] == [
        ("a", 10_000, {"C": 1}),
        ("c", 10_000, {"C": 1}),
    ]


def test_hopping_windows_and_push_queries_over_aggregates(engine):
    result = engine.execute(
        "SELECT usr, COUNT(*) AS c FROM pay WINDOW HOPPING (SIZE 10 SECONDS, "
        "ADVANCE BY 5 SECONDS) GROUP BY usr EMIT CHANGES LIMIT 3;"
    )[0]
    tq = result.data
    records = [
        Record("pay", b"p", json.dumps({"USR": "a", "AMOUNT": 1.0, "N": 1}).encode(), ts) for ts in (7_000, 8_000)
    ]
    assert tq.rows(records) == [["a", 1], ["a", 1], ["a", 2]]
    assert tq.done


def test_window_clause_parsing():
    w = parse_window("HOPPING (SIZE 1 HOUR, ADVANCE BY 5 MINUTES, RETENTION 2 DAYS, GRACE PERIOD 10 MINUTES)")
    assert (w.size, w.advance, w.grace, w.retention) == (3_600_000, 300_000, 600_000, 172_800_000)
    assert parse_window("TUMBLING (SIZE 1 SECOND)").grace_ms == 24 * 3_600_000
    with pytest.raises(KsqlStatementError, match="advancement interval"):
        parse_window("HOPPING (SIZE 1 SECOND, ADVANCE BY 2 SECONDS)")
    with pytest.raises(KsqlStatementError, match="retention period"):
        parse_window("TUMBLING (SIZE 1 HOUR, RETENTION 1 MINUTE, GRACE PERIOD 0 SECONDS)")


def test_coalescing_keeps_each_keys_last_change_of_a_batch(engine):
    engine.execute("CREATE TABLE t AS SELECT usr, COUNT(*) AS c FROM pay GROUP BY usr;")
    (q,) = engine.queries.values()
    q.coalesce = True
    batch = [
        Record("pay", b"p", json.dumps({"USR": u, "AMOUNT": 1.0, "N": 1}).encode(), ts) for ts, u in enumerate("abab")
    ]
    assert [(r.key, json.loads(r.value)) for r in q.process(batch)] == [(b"a", {"C": 2}), (b"b", {"C": 2})]


@pytest.mark.parametrize(
    "window", ["", "WINDOW TUMBLING (SIZE 10 SECONDS)", "WINDOW HOPPING (SIZE 10 SECONDS, ADVANCE BY 2 SECONDS)"]
)
def test_a_coalesced_batch_is_each_keys_last_update(window):
    """With the record cache on, values are computed only for the changes it lets out (`Aggregator.lazy`):
    the same bytes, in the same order, as every update with the cache's rule applied afterwards."""
    sql = (
        f"CREATE TABLE t AS SELECT usr, COUNT(*) AS c, SUM(amount) AS s, MAX(n) AS m, LATEST_BY_OFFSET(n) AS l "
        f"FROM pay {window} GROUP BY usr;"
    )
    batches = [
        [
            Record(
                "pay",
                b"p",
                json.dumps({"USR": "abc"[(i * 7 + j) % 3], "AMOUNT": i * 1.5, "N": i % 4}).encode(),
                1_000 * i + j,
            )
            for i in range(b * 20, b * 20 + 20)
        ]
        for b, j in ((0, 0), (1, 3))
    ]
    outputs = []
    for coalesce in (False, True):
        engine = Engine(InMemorySchemaRegistry(), InMemoryRuntime(), {"auto.offset.reset": "earliest"})
        engine.execute(STREAM)
        engine.execute(sql)
        (q,) = engine.queries.values()
        q.coalesce = coalesce
        assert q.aggregator.lazy is coalesce
        outputs.append([[(r.key, r.value, r.timestamp) for r in q.process(batch)] for batch in batches])
    for every, coalesced in zip(*outputs):
        last = {}
        for key, value, ts in every:
            last.pop(key, None)
            last[key] = (key, value, ts)
        assert coalesced == list(last.values()) and len(coalesced) < len(every)


FEATURES = (
    "CREATE TABLE F AS SELECT `USER`, COUNT(*) AS N, SUM(AMOUNT) AS TOTAL, MAX(AMOUNT) AS BIGGEST, "
    "MIN(CLASS) AS LEAST_CLASS FROM creditcardfraud_source {window} GROUP BY `USER` {having};"
)


@pytest.mark.parametrize(
    "window", ["", "WINDOW TUMBLING (SIZE 1 HOUR)", "WINDOW HOPPING (SIZE 1 HOUR, ADVANCE BY 5 MINUTES)"]
)
@pytest.mark.parametrize("coalesce", [False, True])
@pytest.mark.parametrize("having", ["", "HAVING SUM(AMOUNT) > 100"])
def test_delimited_input_read_column_wise_agrees_with_the_row_path(window, coalesce, having):
    """An aggregation over DELIMITED values reads its batches with the vectorized path's Arrow reader
    (ColumnarInput): the same output bytes, processing-log entries and counters as reading each record,
    awkward lines and keys included (those go row by row)."""
    from test_ksqldb_vectorized import AWKWARD_LINES, _engine, _payments, _records

    from stack.ksqldb.records import Columns

    good = [r.value for r in _payments(400, seed=9)]
    values = [v for pair in zip(good, AWKWARD_LINES) for v in pair] + good[len(AWKWARD_LINES) :]
    keys = [f"k{i}".encode() for i in range(len(values))]
    keys[3], keys[7], keys[11] = None, b"\xff\xfe", b""
    records = _records(values, keys)
    results = []
    for columnar in (False, True):
        engine = _engine()
        engine.execute(FEATURES.format(window=window, having=having))
        (q,) = engine.queries.values()
        q.coalesce = coalesce
        assert q.vectorized is not None
        out = []
        for start in range(0, len(records), 150):
            batch = records[start : start + 150]
            out += (
                q.vectorized.process(Columns.from_records(batch)).records(q.sink.topic)
                if columnar
                else q.process(batch)
            )
        entries = [{k: v for k, v in e.items() if k != "time"} for e in engine.processing_log.entries]
        results.append((out, entries, q.processed))
    assert 0 < q.vectorized.handed_back < len(AWKWARD_LINES) + 3, "good lines are read column-wise"
    assert results[1] == results[0]
    assert results[0][1] and results[0][0], "awkward lines reach the processing log, good ones the sink"


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE W AS SELECT `USER`, COUNT(*) AS N FROM creditcardfraud_source WHERE AMOUNT > 1 GROUP BY `USER`;",
        "CREATE TABLE U AS SELECT UCASE(`USER`) AS U, COUNT(*) AS N FROM creditcardfraud_source GROUP BY UCASE(`USER`);",
        "CREATE TABLE P AS SELECT PAYMENT_ID, COUNT(*) AS N FROM creditcardfraud_source GROUP BY PAYMENT_ID;",
        "CREATE TABLE S AS SELECT `USER`, SUM(AMOUNT * 2) AS S FROM creditcardfraud_source GROUP BY `USER`;",
    ],
)
def test_aggregations_it_cannot_read_column_wise_read_row_by_row(statement):
    from test_ksqldb_vectorized import _engine

    engine = _engine()
    engine.execute(statement)
    (q,) = engine.queries.values()
    assert q.vectorized is None


def test_collect_list_limit_comes_from_the_config(engine):
    engine.execute(
        "CREATE TABLE t AS SELECT usr, COLLECT_LIST(n) AS l, COLLECT_SET(n) AS s FROM pay GROUP BY usr;",
        {"ksql.functions.collect_list.limit": "2", "ksql.functions.collect_set.limit": 1},
    )
    for n in (1, 2, 3):
        pay(engine, 1, "a", n=n)
    assert out(engine, "T")[-1][2] == {"L": [1, 2], "S": [1]}


# ---------------------------------------------------------------- on the embedded stack, over REST
def test_windowed_aggregate_through_the_server(stack, tmp_path, topic_name):
    """A hopping-window count and sum per user, created over REST and run by the server on the real broker:
    the output topic holds windowed keys (key bytes + 8-byte window start); the runtime's record cache keeps
    each key's last update of a batch, so the updates arrive in order, some perhaps coalesced away."""
    from confluent_kafka import Consumer, Producer
    from ksqldb_server_helpers import running_server

    from fraudstream.kafka import producer_config
    from ksql import KSQLAPI

    bootstrap = stack.addresses.bootstrap_servers
    name = topic_name.upper().replace("-", "_")
    with running_server(stack.addresses, tmp_path) as server:
        client = KSQLAPI(server.address)
        client.ksql(
            f"CREATE STREAM P_{name} (id STRING KEY, usr STRING, amount DOUBLE) "
            f"WITH (kafka_topic='{topic_name}', value_format='JSON', partitions=1);"
        )
        client.ksql(
            f"CREATE TABLE F_{name} WITH (kafka_topic='{topic_name}-f') AS SELECT usr, COUNT(*) AS n, "
            f"SUM(amount) AS total FROM P_{name} WINDOW HOPPING (SIZE 10 SECONDS, ADVANCE BY 5 SECONDS) "
            "GROUP BY usr EMIT CHANGES;",
            stream_properties={"auto.offset.reset": "earliest"},
        )
        producer = Producer(producer_config(bootstrap))
        for ts, usr, amount in ((1_000, "alice", 5.0), (6_000, "alice", 7.0), (7_000, "bob", 1.0)):
            producer.produce(
                topic_name, key=b"p", value=json.dumps({"USR": usr, "AMOUNT": amount}).encode(), timestamp=ts
            )
        assert producer.flush(30) == 0
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"t-{topic_name}",
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
            }
        )
        consumer.subscribe([f"{topic_name}-f"])
        every_update = [
            ("alice", 0, {"N": 1, "TOTAL": 5.0}),
            ("alice", 0, {"N": 2, "TOTAL": 12.0}),
            ("alice", 5_000, {"N": 1, "TOTAL": 7.0}),
            ("bob", 0, {"N": 1, "TOTAL": 1.0}),
            ("bob", 5_000, {"N": 1, "TOTAL": 1.0}),
        ]
        final = {(usr, start): value for usr, start, value in every_update}
        got, latest = [], {}
        try:
            while latest != final:
                m = consumer.poll(30)
                assert m is not None, f"only {got} arrived"
                if m.error() is None:
                    start = struct.unpack(">q", m.key()[-8:])[0]
                    got.append((m.key()[:-8].decode(), start, json.loads(m.value())))
                    latest[got[-1][:2]] = got[-1][2]
        finally:
            consumer.close()
    assert got == [update for update in every_update if update in got]  # in order, none extra, none twice


def test_decimal_sums_keep_their_type_and_refuse_overflow(engine):
    engine.execute("CREATE STREAM d (k STRING KEY, v DECIMAL(4, 2)) WITH (kafka_topic='d', value_format='JSON');")
    engine.execute("CREATE TABLE t AS SELECT k, SUM(v) AS s FROM d GROUP BY k;")
    assert str(engine.metastore.require("T").schema.value[0].type) == "DECIMAL(4, 2)"
    # 100.00 does not fit DECIMAL(4, 2): that record is skipped and emits no row (ksqlDB's query would stop)
    for v in ("60.50", "30.25", "9.25", "0.01"):
        engine.runtime.produce(Record("d", b"a", json.dumps({"V": float(v)}).encode(), 0))
    assert [json.loads(r.value)["S"] for r in engine.runtime.topics["T"]] == [60.5, 90.75, 90.76]
    assert any("Numeric field overflow" in e["errorMessage"] for e in engine.processing_log.entries)


def test_min_max_and_topk_order_strings_and_bytes_as_java_does(engine):
    engine.execute("CREATE STREAM s (k STRING KEY, v STRING, b BYTES) WITH (kafka_topic='s', value_format='JSON');")
    engine.execute("CREATE TABLE t AS SELECT k, MAX(v) AS mx, MIN(b) AS mn, TOPK(v, 2) AS tk FROM s GROUP BY k;")
    # U+FF5E sorts after U+1F600 in Python (code points) but before it in Java (UTF-16 surrogates D83D...)
    for v, b in (("\uff5e", "fw=="), ("\U0001f600", "AQ==")):  # bytes 0x7f and 0x01; 0x80 would be negative
        engine.runtime.produce(Record("s", b"a", json.dumps({"V": v, "B": b}).encode(), 0))
    engine.runtime.produce(Record("s", b"a", json.dumps({"V": "a", "B": "gA=="}).encode(), 0))
    last = json.loads(engine.runtime.topics["T"][-1].value)
    assert last == {"MX": "\uff5e", "MN": "gA==", "TK": ["\uff5e", "\U0001f600"]}


def test_a_table_row_that_stops_matching_where_leaves_its_group(engine):
    engine.execute(
        "CREATE TABLE acct (id STRING PRIMARY KEY, region STRING, bal INT) "
        "WITH (kafka_topic='acct', value_format='JSON');"
    )
    engine.execute("CREATE TABLE t AS SELECT region, COUNT(*) AS c FROM acct WHERE bal > 0 GROUP BY region;")
    for key, bal in (("1", 5), ("2", 7), ("1", -1), ("1", 3)):
        engine.runtime.produce(Record("acct", key.encode(), json.dumps({"REGION": "eu", "BAL": bal}).encode(), 0))
    assert [v["C"] for _, _, v, _ in out(engine, "T")] == [1, 2, 1, 2]


def test_session_update_failing_having_emits_nothing_as_kafka_streams(engine):
    engine.execute(
        "CREATE TABLE t AS SELECT usr, SUM(n) AS s FROM pay WINDOW SESSION (5 SECONDS) GROUP BY usr HAVING SUM(n) > 0;"
    )
    pay(engine, 1_000, "a", n=2)
    pay(engine, 1_000, "a", n=-5)  # same session [1000, 1000]: fails HAVING, sent without an old value
    pay(engine, 2_000, "a", n=4)  # extends it: the old session's tombstone only if it had passed
    assert [(w, v) for _, w, v, _ in out(engine, "T", "session")] == [
        ((1_000, 1_000), {"S": 2}),
        ((1_000, 2_000), {"S": 1}),
    ]


def test_a_failed_batch_is_rolled_back_and_evaluated_again(stack, tmp_path, topic_name, monkeypatch):
    """An exception in the Kafka runtime after a batch has updated the aggregation's state, before its output
    is produced: the durable state rolls back, the query reloads its aggregator from it (stream time, sequence)
    and evaluates the batch again. The query keeps running and its output is an uninterrupted run's."""
    import time
    import uuid
    from collections import Counter

    from confluent_kafka import Consumer, Producer, TopicPartition

    from fraudstream.kafka import end_offsets, producer_config
    from stack.ksqldb.kafka_runtime import KafkaRuntime, QueryRunner, query_group

    statements = [
        f"CREATE STREAM pay (id STRING KEY, usr STRING, amount DOUBLE) WITH (kafka_topic='{topic_name}', "
        "value_format='JSON', partitions=1);",
        f"CREATE TABLE t WITH (kafka_topic='{topic_name}-t') AS SELECT usr, COUNT(*) AS n, SUM(amount) AS total, "
        "LATEST_BY_OFFSET(amount) AS last FROM pay WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY usr;",
    ]
    records = [
        (b"p", json.dumps({"USR": f"u{i % 7}", "AMOUNT": float(i % 13)}).encode(), 1_000 * (i + 1))
        for i in range(1_000)
    ]
    reference = Engine(None, InMemoryRuntime())
    for sql in statements:
        reference.execute(sql, {"auto.offset.reset": "earliest"})
    for key, value, ts in records:
        reference.runtime.produce(Record(topic_name, key, value, ts))
    expected = [(r.key, r.value) for r in reference.runtime.topics[f"{topic_name}-t"]]

    bootstrap = stack.addresses.bootstrap_servers
    producer = Producer(producer_config(bootstrap))
    runtime = KafkaRuntime(bootstrap, f"t{uuid.uuid4().hex[:8]}_", batch_size=200, state_dir=tmp_path)
    engine = Engine(None, runtime)
    engine.execute(statements[0])
    for key, value, ts in records:
        producer.produce(topic_name, value, key, timestamp=ts)
    assert producer.flush(30) == 0

    produce_batch = QueryRunner._produce
    calls = []

    def failing_second_batch(self, out, skip=None, wait=True):
        calls.append(len(out.keys))
        if len(calls) == 2:
            raise RuntimeError("injected: the broker went away")
        produce_batch(self, out, skip, wait)

    monkeypatch.setattr(QueryRunner, "_produce", failing_second_batch)
    try:
        engine.execute(statements[1], {"auto.offset.reset": "earliest"})
        (query,) = engine.queries.values()
        group = query_group(query.id, runtime.service_id)
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
        deadline = time.monotonic() + 300  # a hang guard: the loop waits on the committed offsets
        try:
            while consumer.committed([TopicPartition(topic_name, 0)], timeout=10)[0].offset < len(records):
                assert query.state == "RUNNING", runtime.query_error(query.id)
                assert time.monotonic() < deadline, f"{group} has not caught up"
                time.sleep(0.2)
        finally:
            consumer.close()
        assert len(calls) > 2 and query.state == "RUNNING"
    finally:
        runtime.close()

    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{topic_name}", "enable.auto.commit": False})
    end = end_offsets(bootstrap, f"{topic_name}-t")[0]
    reader.assign([TopicPartition(f"{topic_name}-t", 0, 0)])
    got = []
    try:
        while len(got) < end:
            got += [(m.key(), m.value()) for m in reader.consume(1_000, 10) if m.error() is None]
    finally:
        reader.close()
    assert not Counter(got) - Counter(expected)  # coalesced per batch: no record the reference lacks, none twice
    assert dict(got) == dict(expected)  # and every key's final aggregate


def test_a_push_query_over_a_windowed_table_shows_the_window_bounds(engine):
    """`SELECT *` from a windowed table: key, WINDOWSTART, WINDOWEND, then the values, as ksqlDB's push
    queries show it (a persistent query's `*` leaves the bounds in the key)."""
    engine.execute(
        "CREATE TABLE per_minute AS SELECT usr, COUNT(*) AS n FROM pay WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY usr;"
    )
    pay(engine, 61_000, "ann")
    (res,) = engine.execute("SELECT * FROM per_minute EMIT CHANGES;")
    assert [name for name, _ in res.data.columns] == ["USR", "WINDOWSTART", "WINDOWEND", "N"]
    assert res.data.rows(engine.runtime.topics["PER_MINUTE"]) == [["ann", 60_000, 120_000, 1]]
