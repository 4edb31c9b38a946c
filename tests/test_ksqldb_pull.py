"""Pull queries (SELECT ... FROM table WHERE ... without EMIT) over /query and /query-stream, answered from
the materialised state of the table's query; ksqlDB's errors for what cannot be pulled."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from confluent_kafka import Consumer, Producer
from ksqldb_server_helpers import labelled_payments, prefixed_statements, running_server, service_id_of

from fraudstream.kafka import committed_offsets, end_offsets, producer_config
from ksql import KSQLAPI
from producers.generate import USERS
from producers.replay import replay
from stack.ksqldb.apply import KsqlRest, apply_directory
from stack.ksqldb.engine import Engine
from stack.ksqldb.errors import KsqlError, UnsupportedError
from stack.ksqldb.kafka_runtime import query_group
from stack.supervisor import RunningService

HOUR, FIVE_MINUTES = 3_600_000, 300_000


@pytest.fixture(scope="module")
def server(stack, tmp_path_factory) -> Iterator[RunningService]:
    with running_server(
        stack.addresses, tmp_path_factory.mktemp("ksqldb-logs"), service_id=f"p{uuid.uuid4().hex[:8]}_"
    ) as service:
        yield service


def _pull(client: KSQLAPI, sql: str) -> list[dict]:
    """A pull query through ksql-python's `query`, as the notebooks call it: the JSON array it streams."""
    return json.loads("".join(client.query(sql)))


def _rows_when(client: KSQLAPI, sql: str, expected: list[list]) -> list[dict]:
    """Pull until the table has caught up with the input (the query commits its state batch by batch)."""
    while True:
        body = _pull(client, sql)
        if [r["row"]["columns"] for r in body[1:]] == expected:
            return body


@pytest.fixture(scope="module")
def tables(stack, server: RunningService) -> dict[str, str]:
    """A stream of 60 records over 3 keys, a count/sum table and a tumbling-window table over it."""
    tag = uuid.uuid4().hex[:8]
    names = {
        "stream": f"PAYS_{tag}",
        "totals": f"TOTALS_{tag}",
        "windows": f"WIN_{tag}",
        "topic": f"pays-{tag}",
        "plain": f"PLAIN_{tag}",
    }
    client = KSQLAPI(server.address)
    client.ksql(
        f"CREATE STREAM {names['stream']} (USER_ID STRING KEY, AMOUNT DOUBLE) WITH "
        f"(KAFKA_TOPIC='{names['topic']}', VALUE_FORMAT='JSON', PARTITIONS=2);"
    )
    earliest = {"auto.offset.reset": "earliest"}
    client.ksql(
        f"CREATE TABLE {names['totals']} AS SELECT USER_ID, COUNT(*) AS N, SUM(AMOUNT) AS TOTAL "
        f"FROM {names['stream']} GROUP BY USER_ID;",
        stream_properties=earliest,
    )
    client.ksql(
        f"CREATE TABLE {names['windows']} AS SELECT USER_ID, COUNT(*) AS N FROM {names['stream']} "
        "WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY USER_ID;",
        stream_properties=earliest,
    )
    client.ksql(
        f"CREATE TABLE {names['plain']} (ID STRING PRIMARY KEY, NAME STRING) WITH "
        f"(KAFKA_TOPIC='{names['topic']}-plain', VALUE_FORMAT='JSON', PARTITIONS=1);"
    )
    producer = Producer(producer_config(stack.addresses.bootstrap_servers))
    for i in range(60):  # user u<i % 3>, amount i, at 1 s steps from 1000 s
        producer.produce(
            names["topic"],
            json.dumps({"AMOUNT": float(i)}).encode(),
            f"u{i % 3}".encode(),
            timestamp=1_000_000 + 1000 * i,
        )
    assert producer.flush(30) == 0
    return names


def test_key_lookups_in_and_scans(server: RunningService, tables: dict[str, str]) -> None:
    client = KSQLAPI(server.address)
    totals = tables["totals"]
    body = _rows_when(client, f"SELECT * FROM {totals} WHERE USER_ID = 'u1';", [["u1", 20, 590.0]])
    assert body[0]["header"]["schema"] == "`USER_ID` STRING KEY, `N` BIGINT, `TOTAL` DOUBLE"
    assert body[0]["header"]["queryId"]
    body = _pull(
        client, f"SELECT USER_ID, TOTAL / N AS MEAN, ROWTIME FROM {totals} WHERE USER_ID IN ('u2', 'u0', 'nobody');"
    )
    assert body[0]["header"]["schema"] == "`USER_ID` STRING KEY, `MEAN` DOUBLE, `ROWTIME` BIGINT"
    assert [r["row"]["columns"] for r in body[1:]] == [["u2", 30.5, 1_059_000], ["u0", 28.5, 1_057_000]]
    assert _pull(client, f"SELECT * FROM {totals} WHERE USER_ID = 'nobody';")[1:] == []
    scanned = _pull(client, f"SELECT USER_ID, N FROM {totals} WHERE N >= 20;")  # a table scan (enabled by default)
    assert sorted(r["row"]["columns"] for r in scanned[1:]) == [["u0", 20], ["u1", 20], ["u2", 20]]
    assert len(_pull(client, f"SELECT * FROM {totals} LIMIT 2;")[1:]) == 2


def test_windowed_tables_with_window_bounds(server: RunningService, tables: dict[str, str]) -> None:
    client = KSQLAPI(server.address)
    windows = tables["windows"]
    expected = [
        ["u0", start, start + 10_000, n]
        for start, n in [(1_000_000, 4), (1_010_000, 3), (1_020_000, 3), (1_030_000, 4), (1_040_000, 3), (1_050_000, 3)]
    ]
    body = _rows_when(client, f"SELECT * FROM {windows} WHERE USER_ID = 'u0';", expected)
    assert body[0]["header"]["schema"] == (
        "`USER_ID` STRING KEY, `WINDOWSTART` BIGINT KEY, `WINDOWEND` BIGINT KEY, `N` BIGINT"
    )
    bounded = _pull(
        client, f"SELECT * FROM {windows} WHERE USER_ID = 'u0' AND 1020000 <= WINDOWSTART AND WINDOWEND <= 1040000;"
    )
    assert [r["row"]["columns"] for r in bounded[1:]] == expected[2:4]
    iso = _pull(client, f"SELECT N FROM {windows} WHERE USER_ID = 'u0' AND WINDOWSTART = '1970-01-01T00:17:00';")
    assert [r["row"]["columns"] for r in iso[1:]] == [[3]]  # 1,020,000 ms


def test_query_stream_answers_pull_queries(server: RunningService, tables: dict[str, str]) -> None:
    totals = tables["totals"]
    _rows_when(KSQLAPI(server.address), f"SELECT * FROM {totals} WHERE USER_ID = 'u1';", [["u1", 20, 590.0]])
    response = httpx.post(
        f"{server.address}/query-stream",
        json={"sql": f"SELECT USER_ID, N FROM {totals} WHERE USER_ID = 'u1';", "properties": {}},
    )
    assert response.status_code == 200
    header, *rows = [json.loads(line) for line in response.text.splitlines() if line]
    assert header["columnNames"] == ["USER_ID", "N"] and header["columnTypes"] == ["STRING", "BIGINT"]
    assert rows == [["u1", 20]]
    response = httpx.post(
        f"{server.address}/query-stream",
        headers={"Accept": "application/json"},
        json={"sql": f"SELECT USER_ID, N FROM {totals} WHERE USER_ID = 'u1';"},
    )
    assert response.json()[1:] == [["u1", 20]]
    rows = list(
        KSQLAPI(server.address).query(
            f"SELECT USER_ID, N FROM {totals} WHERE USER_ID = 'u1';", use_http2=True, parse=True
        )
    )  # ksql-python over HTTP/2
    assert rows == [{"USER_ID": "u1", "N": 20}]


def test_what_cannot_be_pulled_is_a_ksqldb_error(server: RunningService, tables: dict[str, str]) -> None:
    client = KSQLAPI(server.address)
    for sql, message in [
        (f"SELECT * FROM {tables['plain']} WHERE ID = 'a';", f"The `{tables['plain'].upper()}` table isn't queryable."),
        (f"SELECT * FROM {tables['totals']} WHERE USER_ID = 1;", "Cannot compare USER_ID (STRING) to 1 (INTEGER)"),
    ]:
        response = httpx.post(f"{server.address}/query", json={"ksql": sql})
        assert response.status_code == 400, sql
        assert response.json()["error_code"] == 40001 and message in response.json()["message"], response.json()
    with pytest.raises(ValueError, match="isn't queryable"):  # ksql-python's own report of an error status
        _pull(client, f"SELECT * FROM {tables['plain']} WHERE ID = 'a';")


def test_pull_query_planning_errors() -> None:
    """Validation happens before any state is read: an in-memory engine shows ksqlDB's messages."""
    engine = Engine(None)
    engine.execute(
        "CREATE STREAM S (ID STRING KEY, V INT) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', PARTITIONS=1);"
        "CREATE TABLE T AS SELECT ID, COUNT(*) AS C FROM S GROUP BY ID;"
        "CREATE TABLE U (ID STRING PRIMARY KEY, NAME STRING) WITH (KAFKA_TOPIC='u', VALUE_FORMAT='JSON', "
        "PARTITIONS=1);"
    )
    cases = [
        (
            "SELECT * FROM T WHERE C > 1;",
            {"ksql.query.pull.table.scan.enabled": "false"},
            "WHERE clause missing key column for disjunct: (C > 1)",
        ),
        ("SELECT * FROM T;", {"ksql.query.pull.table.scan.enabled": False}, "Missing WHERE clause."),
        ("SELECT * FROM T WHERE ID = 'a' AND WINDOWSTART > 1;", {}, "Cannot use WINDOWSTART/WINDOWEND on non-windowed"),
        (
            "SELECT ID, ROWOFFSET FROM T WHERE ID = 'a';",
            {},
            "Pull queries don't support the following columns in SELECT clauses: ROWOFFSET",
        ),
        ("SELECT ID, COUNT(*) FROM T GROUP BY ID;", {}, "Pull queries don't support GROUP BY clauses."),
        (
            "SELECT * FROM U WHERE ID = 'a';",
            {},
            "The `U` table isn't queryable. To derive a queryable table, you can do 'CREATE TABLE QUERYABLE_U AS SELECT * "
            "FROM U'. See https://cnfl.io/queries for more info.\nAdd EMIT CHANGES if you intended to issue a push query.",
        ),
        ("SELECT * FROM T WHERE ID = NULL;", {}, "Primary key columns can not be NULL"),
    ]
    for sql, props, message in cases:
        with pytest.raises(KsqlError) as info:
            engine.execute(sql, props)
        assert message in info.value.message, (sql, info.value.message)
    with pytest.raises(UnsupportedError):
        engine.execute("SELECT * FROM S WHERE ID = 'a';")  # pull queries on streams
    with pytest.raises(UnsupportedError):
        engine.execute("SELECT * FROM T WHERE ID = 'a';")  # the in-memory runtime keeps no materialised state


def test_fraud_features_from_the_ksql_files(stack, server: RunningService, tmp_path) -> None:
    """ksql/050-070 end to end: users in a table, payments joined to them, per-user hourly features read back
    with a pull query, equal to the features computed here from the same payments."""
    bootstrap = stack.addresses.bootstrap_servers
    prefix = f"f{uuid.uuid4().hex[:8]}"
    outcomes = apply_directory(KsqlRest(server.address), prefixed_statements(tmp_path / "ksql", prefix))
    assert {o.status for o in outcomes} <= {"created", "set", "unset"}, outcomes
    queries = {q["sinks"][0]: q["id"] for q in KsqlRest(server.address).ksql("SHOW QUERIES;")[0]["queries"]}
    join_query = queries[f"{prefix}_creditcardfraud_payments_with_users".upper()]

    users_topic = f"{prefix}_creditcardfraud_users"
    producer = Producer(producer_config(bootstrap))
    for i, name in enumerate(USERS):  # users exist before any payment (timestamp 1 ms)
        producer.produce(
            users_topic,
            json.dumps(
                {
                    "COUNTRY": ["DE", "FR", "NL"][i % 3],
                    "CARD_TYPE": "VISA",
                    "CREDIT_LIMIT": 1000.0 + i,
                    "SIGNUP_DATE": "2020-01-01",
                }
            ).encode(),
            name.encode(),
            timestamp=1,
        )
    assert producer.flush(30) == 0
    group = query_group(join_query, service_id_of(server))
    while not _committed_to_end(bootstrap, group, users_topic):
        time.sleep(0.2)  # the join has read every user before the first payment arrives

    payments = labelled_payments(200, seed=3)
    assert replay(payments, bootstrap_servers=bootstrap, topic=f"{prefix}_creditcardfraud_source").ok
    joined = _read_json(bootstrap, f"{prefix}_creditcardfraud_payments_with_users", len(payments))
    limits = {name: 1000.0 + i for i, name in enumerate(USERS)}
    assert {v["PAYMENT_ID"] for _, v in joined} == {p.id for p in payments}
    for key, value in joined:
        assert value["CREDIT_LIMIT"] == limits[key.decode()]
        assert value["SHARE_OF_LIMIT"] == pytest.approx(value["AMOUNT"] / limits[key.decode()])

    user = payments[0].user
    mine = [p for p in payments if p.user == user]
    expected: dict[int, list[float]] = {}
    for p in mine:
        ts = int(p.timestamp.timestamp() * 1000)
        for start in range((max(0, ts - HOUR + FIVE_MINUTES) // FIVE_MINUTES) * FIVE_MINUTES, ts + 1, FIVE_MINUTES):
            expected.setdefault(start, []).append(p.amount)
    client = KSQLAPI(server.address)
    features = f"{prefix}_creditcardfraud_user_features"
    sql = f"SELECT WINDOWSTART, PAYMENTS_1H, AMOUNT_1H, MAX_AMOUNT_1H FROM {features} WHERE `USER` = '{user}';"
    want = sorted([start, len(amounts)] for start, amounts in expected.items())
    while True:  # until the features query has caught up with every payment
        rows = [r["row"]["columns"] for r in _pull(client, sql)[1:]]
        if sorted(r[:2] for r in rows) == want:
            break
        time.sleep(0.2)
    for start, _count, total, biggest in rows:
        assert total == pytest.approx(sum(expected[start])) and biggest == pytest.approx(max(expected[start]))


def _committed_to_end(bootstrap: str, group: str, topic: str) -> bool:
    committed = committed_offsets(bootstrap, group, topic)
    return all(p in committed and committed[p] >= end for p, end in end_offsets(bootstrap, topic).items())


def _read_json(bootstrap: str, topic: str, want: int) -> list[tuple[bytes, dict]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    out: list[tuple[bytes, dict]] = []
    try:
        while len(out) < want:
            m = consumer.poll(60)
            assert m is not None, f"{len(out)} of {want} records in {topic}"
            if m.error() is None:
                out.append((m.key(), json.loads(m.value())))
    finally:
        consumer.close()
    return out
