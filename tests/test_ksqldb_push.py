"""Push queries (SELECT ... EMIT CHANGES) of every shape through the embedded server over real HTTP, as the
notebooks run them with ksql-python (`KSQLAPI.query`): aggregations (the result table's changelog), windowed
aggregations, tables (tombstones flagged) and joins (every source topic read, in timestamp order)."""

from __future__ import annotations

import json

import httpx
from confluent_kafka import Producer

from fraudstream.kafka import producer_config
from ksql import KSQLAPI
from stack.supervisor import RunningService

EARLIEST = {"auto.offset.reset": "earliest"}


def _name(topic: str) -> str:
    return topic.upper().replace("-", "_")


def _produce(bootstrap: str, records: list[tuple[str, bytes | None, bytes | None, int]]) -> None:
    """(topic, key, value, timestamp) in order."""
    producer = Producer(producer_config(bootstrap))
    for topic, key, value, ts in records:
        producer.produce(topic, value, key, timestamp=ts)
    assert producer.flush(30) == 0


def _payments(client: KSQLAPI, stack, topic: str) -> str:
    """A payments stream holding five payments of two users, one a refund, within 20 seconds."""
    stream = f"P_{_name(topic)}"
    client.ksql(
        f"CREATE STREAM {stream} (ID STRING KEY, USR STRING, AMOUNT DOUBLE) "
        f"WITH (KAFKA_TOPIC='{topic}', VALUE_FORMAT='JSON', PARTITIONS=1);"
    )
    payments = [
        (1_000, "alice", 5.0),
        (2_000, "bob", 1.0),
        (3_000, "alice", 7.0),
        (4_000, "alice", -20.0),
        (12_000, "alice", 2.5),
    ]
    _produce(
        stack.addresses.bootstrap_servers,
        [
            (topic, f"p{i}".encode(), json.dumps({"USR": usr, "AMOUNT": amount}).encode(), ts)
            for i, (ts, usr, amount) in enumerate(payments)
        ],
    )
    return stream


def _query(client: KSQLAPI, sql: str) -> list[dict]:
    """/query (HTTP/1.1): the header, the rows, the final message."""
    return json.loads("".join(client.query(sql, stream_properties=EARLIEST)))


def test_an_aggregation_streams_its_changelog(stack, client: KSQLAPI, topic_name: str) -> None:
    stream = _payments(client, stack, topic_name)
    body = _query(
        client, f"SELECT USR, COUNT(*) AS N, SUM(AMOUNT) AS TOTAL FROM {stream} GROUP BY USR EMIT CHANGES LIMIT 5;"
    )
    assert body[0]["header"]["schema"] == "`USR` STRING, `N` BIGINT, `TOTAL` DOUBLE"
    assert [r["row"]["columns"] for r in body[1:-1]] == [
        ["alice", 1, 5.0],
        ["bob", 1, 1.0],
        ["alice", 2, 12.0],
        ["alice", 3, -8.0],
        ["alice", 4, -5.5],
    ]
    assert body[-1] == {"finalMessage": "Limit Reached"}


def test_a_windowed_aggregation_in_projection_order_with_tombstones(stack, client: KSQLAPI, topic_name: str) -> None:
    """Columns come in projection order (the grouping column need not be projected, window bounds only when
    selected); a window that stops passing HAVING is a tombstone: its window bounds kept, the rest null."""
    stream = _payments(client, stack, topic_name)
    body = _query(
        client,
        f"SELECT SUM(AMOUNT) AS TOTAL, WINDOWSTART AS WS FROM {stream} "
        "WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY USR HAVING SUM(AMOUNT) > 0 EMIT CHANGES LIMIT 5;",
    )
    assert body[0]["header"]["schema"] == "`TOTAL` DOUBLE, `WS` BIGINT"
    assert [r["row"] for r in body[1:-1]] == [
        {"columns": [5.0, 0]},
        {"columns": [1.0, 0]},
        {"columns": [12.0, 0]},
        {"columns": [None, 0], "tombstone": True},  # alice's first window falls to -8.0
        {"columns": [2.5, 10_000]},
    ]


def test_a_hopping_window_query_over_http2(stack, client: KSQLAPI, topic_name: str) -> None:
    """The per-user features' shape (ksql/070), read by `KSQLAPI.query(..., use_http2=True, parse=True)`."""
    stream = _payments(client, stack, topic_name)
    rows = list(
        client.query(
            f"SELECT USR, WINDOWSTART, COUNT(*) AS N, MAX(AMOUNT) AS BIGGEST FROM {stream} "
            "WINDOW HOPPING (SIZE 10 SECONDS, ADVANCE BY 5 SECONDS) WHERE USR = 'alice' "
            "GROUP BY USR EMIT CHANGES LIMIT 5;",
            use_http2=True,
            parse=True,
            stream_properties=EARLIEST,
        )
    )
    assert rows == [  # every window a payment falls in (none starts before 0), every update
        {"USR": "alice", "WINDOWSTART": 0, "N": 1, "BIGGEST": 5.0},
        {"USR": "alice", "WINDOWSTART": 0, "N": 2, "BIGGEST": 7.0},
        {"USR": "alice", "WINDOWSTART": 0, "N": 3, "BIGGEST": 7.0},
        {"USR": "alice", "WINDOWSTART": 5_000, "N": 1, "BIGGEST": 2.5},
        {"USR": "alice", "WINDOWSTART": 10_000, "N": 1, "BIGGEST": 2.5},
    ]


def test_a_table_streams_its_changes_and_deletes(
    stack, server: RunningService, client: KSQLAPI, topic_name: str
) -> None:
    table = f"T_{_name(topic_name)}"
    client.ksql(
        f"CREATE TABLE {table} (K STRING PRIMARY KEY, N INT) "
        f"WITH (KAFKA_TOPIC='{topic_name}', VALUE_FORMAT='JSON', PARTITIONS=1);"
    )
    _produce(
        stack.addresses.bootstrap_servers,
        [
            (topic_name, b"k1", b'{"N": 1}', 1_000),
            (topic_name, b"k1", None, 2_000),
            (topic_name, b"k2", b'{"N": 2}', 3_000),
        ],
    )
    body = _query(client, f"SELECT * FROM {table} EMIT CHANGES LIMIT 3;")
    assert [r["row"] for r in body[1:-1]] == [
        {"columns": ["k1", 1]},
        {"columns": ["k1", None], "tombstone": True},
        {"columns": ["k2", 2]},
    ]
    # /query-stream carries no flag: the deleted row comes as its key and null values
    lines = (
        httpx.post(
            f"{server.address}/query-stream",
            timeout=30,
            json={"sql": f"SELECT * FROM {table} EMIT CHANGES LIMIT 3;", "properties": EARLIEST},
        )
        .text.strip()
        .split("\n")
    )
    assert [json.loads(line) for line in lines[1:]] == [["k1", 1], ["k1", None], ["k2", 2]]


def test_a_join_reads_every_source_in_timestamp_order(stack, client: KSQLAPI, topic_name: str) -> None:
    """A stream-table LEFT JOIN: both topics read from the start, records taken in timestamp order across
    them (whichever the consumer fetched first), so each payment meets the user row as of its time."""
    stream, users = f"S_{_name(topic_name)}", f"U_{_name(topic_name)}"
    client.ksql(
        f"CREATE STREAM {stream} (USR STRING KEY, AMOUNT DOUBLE) "
        f"WITH (KAFKA_TOPIC='{topic_name}', VALUE_FORMAT='JSON', PARTITIONS=1);"
    )
    client.ksql(
        f"CREATE TABLE {users} (USR STRING PRIMARY KEY, COUNTRY STRING) "
        f"WITH (KAFKA_TOPIC='{topic_name}-users', VALUE_FORMAT='JSON', PARTITIONS=1);"
    )
    bootstrap = stack.addresses.bootstrap_servers
    _produce(
        bootstrap,
        [
            (topic_name, b"alice", b'{"AMOUNT": 1.0}', 1_000),  # before alice's row exists
            (topic_name, b"alice", b'{"AMOUNT": 2.0}', 3_000),
            (topic_name, b"alice", b'{"AMOUNT": 3.0}', 5_000),
        ],
    )
    _produce(
        bootstrap,
        [
            (f"{topic_name}-users", b"alice", b'{"COUNTRY": "FR"}', 2_000),
            (f"{topic_name}-users", b"alice", b'{"COUNTRY": "DE"}', 4_000),
        ],
    )
    rows = list(
        client.query(
            f"SELECT S.USR, S.AMOUNT, U.COUNTRY FROM {stream} S LEFT JOIN {users} U "
            "ON S.USR = U.USR EMIT CHANGES LIMIT 3;",
            use_http2=True,
            parse=True,
            stream_properties=EARLIEST,
        )
    )
    assert rows == [
        {"S_USR": "alice", "AMOUNT": 1.0, "COUNTRY": None},
        {"S_USR": "alice", "AMOUNT": 2.0, "COUNTRY": "FR"},
        {"S_USR": "alice", "AMOUNT": 3.0, "COUNTRY": "DE"},
    ]


def test_latest_sees_only_what_comes_after_the_query_starts(
    stack, server: RunningService, client: KSQLAPI, topic_name: str
) -> None:
    stream = _payments(client, stack, topic_name)
    sql = f"SELECT USR, COUNT(*) AS N FROM {stream} GROUP BY USR EMIT CHANGES LIMIT 2;"
    with httpx.stream(
        "POST",
        f"{server.address}/query-stream",
        timeout=30,
        json={"sql": sql, "properties": {"auto.offset.reset": "latest"}},
    ) as response:
        lines = response.iter_lines()
        assert json.loads(next(lines))["columnNames"] == ["USR", "N"]  # positioned at the end by now
        _produce(
            stack.addresses.bootstrap_servers,
            [
                (topic_name, b"p9", b'{"USR": "carol", "AMOUNT": 1.0}', 20_000),
                (topic_name, b"p10", b'{"USR": "carol", "AMOUNT": 1.0}', 21_000),
            ],
        )
        assert [json.loads(line) for line in lines] == [["carol", 1], ["carol", 2]]
