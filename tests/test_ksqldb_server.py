"""The ksqlDB REST API of the embedded server, driven by ksql-python (`from ksql import KSQLAPI`) and raw HTTP."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import httpx
import pytest
from confluent_kafka import Consumer, Producer
from ksql.errors import KSQLError
from ksqldb_server_helpers import service_id_of

from fraudstream.kafka import producer_config
from ksql import KSQLAPI
from stack.supervisor import RunningService


def _produce(bootstrap: str, topic: str, values: list[tuple[bytes | None, bytes]]) -> None:
    producer = Producer(producer_config(bootstrap))
    for key, value in values:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


def _read(bootstrap: str, topic: str, n: int) -> list[tuple[bytes | None, bytes | None]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"t-{topic}",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    out = []
    try:
        while len(out) < n:
            m = consumer.poll(30)
            assert m is not None, f"only {len(out)} of {n} records arrived in {topic}"
            if m.error() is None:
                out.append((m.key(), m.value()))
    finally:
        consumer.close()
    return out


def _first(bootstrap: str, topic: str, match: Callable[[bytes], bool]) -> dict:
    """The first record of `topic` whose value matches (topics such as the processing log are shared by tests)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"t-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    try:
        while True:
            m = consumer.poll(30)
            assert m is not None, f"no matching record in {topic}"
            if m.error() is None and m.value() and match(m.value()):
                return json.loads(m.value())
    finally:
        consumer.close()


def test_info_and_healthcheck(server: RunningService, client: KSQLAPI) -> None:
    assert client.get_ksql_version() == "0.29.0"
    health = httpx.get(f"{server.address}/healthcheck").json()
    assert health["isHealthy"] is True


def test_client_methods_end_to_end(stack, client: KSQLAPI, topic_name: str) -> None:
    name = topic_name.upper().replace("-", "_")
    src, out = f"S_{name}", f"O_{name}"
    assert client.create_stream(src, ["ID VARCHAR", "AMOUNT DOUBLE"], topic_name, "JSON") is True
    described = client.ksql(f"DESCRIBE {src}")[0]
    assert described["@type"] == "sourceDescription"
    assert [f["name"] for f in described["sourceDescription"]["fields"]] == ["ID", "AMOUNT"]

    _produce(
        stack.addresses.bootstrap_servers,
        topic_name,
        [(None, b'{"ID":"a","AMOUNT":1.5}'), (None, b'{"ID":"b","AMOUNT":20.0}')],
    )
    assert (
        client.create_stream_as(
            out,
            ["ID", "AMOUNT * 2 AS DOUBLED"],
            src,
            kafka_topic=f"{topic_name}-out",
            value_format="JSON",
            conditions="AMOUNT > 10",
        )
        is True
    )
    queries = client.ksql("SHOW QUERIES")[0]["queries"]
    assert any(q["sinks"] == [out] and q["state"] == "RUNNING" for q in queries)
    streams = client.ksql("SHOW STREAMS")[0]["streams"]
    assert {src, out} <= {s["name"] for s in streams}

    inserted = client.inserts_stream(src, [{"ID": "c", "AMOUNT": 30.0}, {"ID": "d", "AMOUNT": 2.0}])
    assert [r["status"] for r in inserted] == ["ok", "ok"]
    # the query started at "latest": only the inserted row with AMOUNT > 10 comes out
    assert _read(stack.addresses.bootstrap_servers, f"{topic_name}-out", 1) == [(None, b'{"ID":"c","DOUBLED":60.0}')]

    chunks = list(
        client.query(
            f"SELECT ID, AMOUNT FROM {src} EMIT CHANGES LIMIT 3", stream_properties={"auto.offset.reset": "earliest"}
        )
    )
    body = json.loads("".join(chunks))
    assert body[0]["header"]["schema"] == "`ID` STRING, `AMOUNT` DOUBLE"
    assert [r["row"]["columns"] for r in body[1:4]] == [["a", 1.5], ["b", 20.0], ["c", 30.0]]
    assert body[-1] == {"finalMessage": "Limit Reached"}

    props = client.get_properties()
    assert {"name": "auto.offset.reset", "scope": "KSQL", "value": "latest"} in props


def test_errors_are_ksqldb_bodies(server: RunningService, client: KSQLAPI) -> None:
    with pytest.raises(KSQLError) as info:
        client.ksql("DESCRIBE NO_SUCH_STREAM")
    assert info.value.error_code == 40001
    with pytest.raises(KSQLError) as info:
        client.ksql("EXPLAIN SELECT * FROM T EMIT CHANGES")
    assert "Unsupported" in str(info.value)
    response = httpx.post(f"{server.address}/ksql", json={"ksql": "SELEC nonsense;"})
    assert response.status_code == 400
    assert response.json()["@type"] == "statement_error"
    assert response.json()["error_code"] == 40001
    response = httpx.post(f"{server.address}/ksql", json={"ksql": "SELECT * FROM X EMIT CHANGES;"})
    assert response.json()["error_code"] == 40002


def test_query_stream_formats_and_close(stack, server: RunningService, client: KSQLAPI, topic_name: str) -> None:
    name = "QS_" + topic_name.upper().replace("-", "_")
    client.ksql(
        f"CREATE STREAM {name} (K STRING KEY, N INT) WITH (KAFKA_TOPIC='{topic_name}', "
        "VALUE_FORMAT='DELIMITED', PARTITIONS=1)"
    )
    _produce(stack.addresses.bootstrap_servers, topic_name, [(b"k1", b"1"), (b"k2", b"2")])
    sql = f"SELECT * FROM {name} EMIT CHANGES LIMIT 2;"
    body = {"sql": sql, "properties": {"auto.offset.reset": "earliest"}}
    lines = httpx.post(f"{server.address}/query-stream", json=body, timeout=30).text.strip().split("\n")
    header = json.loads(lines[0])
    assert header["columnNames"] == ["K", "N"] and header["columnTypes"] == ["STRING", "INTEGER"]
    assert [json.loads(line) for line in lines[1:]] == [["k1", 1], ["k2", 2]]
    as_json = httpx.post(
        f"{server.address}/query-stream", json=body, headers={"Accept": "application/json"}, timeout=30
    ).json()
    assert as_json[1:] == [["k1", 1], ["k2", 2]]

    # an endless push query, closed from another request
    with httpx.stream(
        "POST",
        f"{server.address}/query-stream",
        timeout=30,
        json={"sql": f"SELECT * FROM {name} EMIT CHANGES;", "properties": {}},
    ) as stream:
        lines_iter = stream.iter_lines()
        query_id = json.loads(next(lines_iter))["queryId"]
        assert client.close_query(query_id) is True
        assert list(lines_iter) == []
    assert client.close_query("no_such_query") is False


def test_bad_records_go_to_the_processing_log(stack, server, client: KSQLAPI, topic_name: str) -> None:
    name = "PL_" + topic_name.upper().replace("-", "_")
    client.ksql(f"CREATE STREAM {name} (N INT) WITH (KAFKA_TOPIC='{topic_name}', VALUE_FORMAT='JSON', PARTITIONS=1)")
    client.ksql(f"CREATE STREAM {name}_OUT WITH (KAFKA_TOPIC='{topic_name}-out') AS SELECT N * 10 AS N10 FROM {name};")
    _produce(stack.addresses.bootstrap_servers, topic_name, [(None, b"{not json"), (None, b'{"N": 4}')])
    assert _read(stack.addresses.bootstrap_servers, f"{topic_name}-out", 1) == [(None, b'{"N10":40}')]
    entry = _first(
        stack.addresses.bootstrap_servers,
        f"{service_id_of(server)}ksql_processing_log",
        lambda value: json.loads(value).get("topic") == topic_name,
    )
    assert entry["target"] == "value" and "JSON" in entry["errorMessage"] and entry["offset"] == 0


def test_query_over_http2(stack, client: KSQLAPI, topic_name: str) -> None:
    name = "H2_" + topic_name.upper().replace("-", "_")
    client.ksql(f"CREATE STREAM {name} (N INT) WITH (KAFKA_TOPIC='{topic_name}', VALUE_FORMAT='JSON', PARTITIONS=1)")
    assert client.inserts_stream(name, [{"N": 1}, {"N": "x"}])[1]["status"] == "error"
    rows = list(
        client.query(
            f"SELECT N FROM {name} EMIT CHANGES LIMIT 1",
            use_http2=True,
            parse=True,
            stream_properties={"auto.offset.reset": "earliest"},
        )
    )
    assert rows == [{"N": 1}]


def metric(text: str, name: str, query_id: str | None = None) -> float:
    """One sample of a Prometheus text page (`name`, for `query_id` when given)."""
    label = f'{{query_id="{query_id}"}}' if query_id else ""
    for line in text.splitlines():
        if line.startswith(f"{name}{label} "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name}{label} in /metrics")


def test_command_status_and_metrics(stack, server: RunningService, client: KSQLAPI, topic_name: str) -> None:
    """GET /status/<commandId> (ksqldb-client's status()) and GET /metrics under ksqlDB's names: messages
    consumed and produced per query, processing-log errors, query status (issue 16, item 9)."""
    name = "MX_" + topic_name.upper().replace("-", "_")
    client.ksql(f"CREATE STREAM {name} (N INT) WITH (KAFKA_TOPIC='{topic_name}', VALUE_FORMAT='JSON', PARTITIONS=1)")
    created = client.ksql(f"CREATE STREAM {name}_OUT AS SELECT N * 10 AS N10 FROM {name};")[0]
    query_id = created["commandStatus"]["queryId"]
    _produce(stack.addresses.bootstrap_servers, topic_name, [(None, b"{not json"), (None, b'{"N": 4}')])
    _read(stack.addresses.bootstrap_servers, f"{name}_OUT", 1)
    with httpx.Client(base_url=server.address, timeout=30) as http:
        status = http.get(f"/status/{created['commandId']}")
        assert status.status_code == 200 and status.json() == created["commandStatus"]
        missing = http.get("/status/stream/`NOPE`/create")
        assert missing.status_code == 404 and missing.json()["error_code"] == 40400
        page = http.get("/metrics").text
    assert metric(page, "ksql_ksql_engine_query_stats_liveness_indicator") == 1
    assert metric(page, "ksql_ksql_engine_query_stats_num_persistent_queries") >= 1
    assert (
        metric(page, "ksql_ksql_queries_messages_consumed_total", query_id) == 1
    )  # processed; the undecodable one is an error
    assert metric(page, "ksql_ksql_queries_messages_produced_total", query_id) == 1
    assert metric(page, "ksql_ksql_queries_processing_errors_total", query_id) == 1
    assert f'ksql_ksql_queries_query_status{{query_id="{query_id}",status="RUNNING"}} 1.0' in page
