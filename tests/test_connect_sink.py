"""The embedded Connect worker against the real session stack: REST API and the S3 sink's landing rules.

The worker runs as a child process on a free port; records are produced with confluent-kafka's
AvroSerializer against the embedded Schema Registry, and objects are read back from SeaweedFS.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import socketserver
import threading
import uuid
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
import pandas as pd
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from connectors.client import ConnectAPIError, ConnectClient, wait_until
from connectors.lake import list_objects, read_object
from fraudstream.config import Addresses
from fraudstream.kafka import admin_client, consumer_config, producer_config
from fraudstream.s3 import ensure_bucket, s3_client
from stack import supervisor
from stack.connect import definitions as d
from stack.connect.process import connect_spec
from stack.embedded import EmbeddedStack

SCHEMA = json.dumps(
    {
        "type": "record",
        "name": "Payment",
        "namespace": "fraudstream.test",
        "fields": [
            {"name": "seq", "type": "long"},
            {"name": "amount", "type": "double"},
            {"name": "note", "type": ["null", "string"], "default": None},
        ],
    }
)


def create_topic(addresses: Addresses, topic: str, partitions: int = 1) -> None:
    admin = admin_client(addresses.bootstrap_servers)  # must outlive the future, or librdkafka cancels it
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic].result(timeout=30)


def produce_avro(
    addresses: Addresses,
    topic: str,
    values: Sequence[dict[str, Any]],
    partition: int = 0,
    timestamps: Sequence[int] | None = None,
    raw: dict[int, bytes] | None = None,
) -> None:
    """Avro records in the Confluent wire format; `raw` puts other bytes at some positions instead."""
    serializer = AvroSerializer(SchemaRegistryClient({"url": addresses.schema_registry_url}), SCHEMA)
    producer = Producer(producer_config(addresses.bootstrap_servers))
    context = SerializationContext(topic, MessageField.VALUE)
    for index, value in enumerate(values):
        body = (raw or {}).get(index) or serializer(value, context)
        extra = {"timestamp": timestamps[index]} if timestamps else {}
        producer.produce(topic, key=str(value["seq"]).encode(), value=body, partition=partition, **extra)
        producer.poll(0)
    assert producer.flush(30) == 0


def payments(start: int, count: int) -> list[dict[str, Any]]:
    return [{"seq": i, "amount": i * 1.5, "note": None if i % 3 else f"n{i}"} for i in range(start, start + count)]


def sink_config(addresses: Addresses, topic: str, **overrides: str) -> dict[str, str]:
    return {
        "connector.class": d.S3_SINK_CLASS,
        "tasks.max": "1",
        "topics": topic,
        "s3.bucket.name": "${env:S3_BUCKET}",
        "store.url": "${env:S3_ENDPOINT_URL}",
        "storage.class": d.S3_STORAGE,
        "format.class": d.AVRO_FORMAT,
        "flush.size": "10",
        "key.converter": d.STRING_CONVERTER,
        "value.converter": d.AVRO_CONVERTER,
        "value.converter.schema.registry.url": "${env:SCHEMA_REGISTRY_URL}",
        **{key.replace("_", "."): value for key, value in overrides.items()},
    }


def committed(client: ConnectClient, name: str, topic: str, partition: int = 0) -> int:
    return client.offsets(name).get((topic, partition), -1)


def wait_committed(client: ConnectClient, name: str, topic: str, offset: int, partition: int = 0) -> None:
    wait_until(
        lambda: committed(client, name, topic, partition) >= offset,
        90,
        what=f"{name} committed {topic}[{partition}]@{offset}",
    )


@pytest.fixture(scope="module")
def worker(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConnectClient]:
    spec = connect_spec(stack.addresses, supervisor.free_port(), storage_prefix=f"sink-tests-{uuid.uuid4().hex[:8]}-")
    running = supervisor.start(spec, tmp_path_factory.mktemp("connect-logs"))
    client = ConnectClient(spec.address)
    try:
        yield client
    finally:
        client.close()
        supervisor.stop(running)


@pytest.fixture
def addresses(stack: EmbeddedStack) -> Addresses:
    return stack.addresses


# -- the worker ------------------------------------------------------------------------------------------


def test_root_plugins_and_unknown_connectors(worker: ConnectClient) -> None:
    root = worker.request("GET", "/")
    assert set(root) == {"version", "commit", "kafka_cluster_id"} and root["kafka_cluster_id"]
    assert {"class": d.S3_SINK_CLASS, "type": "sink", "version": d.S3_SINK_VERSION} in worker.request(
        "GET", "/connector-plugins"
    )
    response = worker.http.get("/connectors/no-such-connector/status")
    assert response.status_code == 404
    assert response.json() == {"error_code": 404, "message": "Connector no-such-connector not found"}


def test_validation_answers_in_connects_shape(worker: ConnectClient, addresses: Addresses) -> None:
    config = {**sink_config(addresses, "t", flush_size="lots", format_class="com.example.CsvFormat"), "name": "v"}
    result = worker.request("PUT", "/connector-plugins/S3SinkConnector/config/validate", config)
    assert result["name"] == d.S3_SINK_CLASS
    by_name = {entry["value"]["name"]: entry for entry in result["configs"]}
    assert by_name["flush.size"]["value"]["errors"] and by_name["format.class"]["value"]["errors"]
    assert (
        by_name["topics.dir"]["definition"]["default_value"] == "topics"
        and by_name["topics.dir"]["value"]["errors"] == []
    )
    assert d.AVRO_FORMAT in by_name["format.class"]["value"]["recommended_values"]
    assert result["error_count"] == sum(len(entry["value"]["errors"]) for entry in result["configs"]) == 2
    assert "Connector" in result["groups"]
    ok = worker.request("PUT", f"/connector-plugins/{d.S3_SINK_CLASS}/config/validate", sink_config(addresses, "t"))
    assert ok["error_count"] == 1  # only the name is missing, as Connect reports it
    assert {e["value"]["name"] for e in ok["configs"] if e["value"]["errors"]} == {"name"}


def test_bad_configs_are_refused_with_400(worker: ConnectClient, addresses: Addresses, topic_name: str) -> None:
    with pytest.raises(ConnectAPIError) as refused:
        worker.create(
            topic_name, sink_config(addresses, topic_name, flush_size="0", store_url="${env:NO_SUCH_VARIABLE}")
        )
    assert refused.value.status == 400
    assert "flush.size" in refused.value.message and "NO_SUCH_VARIABLE" in refused.value.message
    assert worker.config(topic_name) is None


# -- landing ---------------------------------------------------------------------------------------------


def test_avro_records_land_in_confluent_named_avro_objects(
    worker: ConnectClient, addresses: Addresses, topic_name: str
) -> None:
    create_topic(addresses, topic_name)
    produce_avro(addresses, topic_name, payments(0, 25))
    created = worker.create(topic_name, sink_config(addresses, topic_name))
    assert created["name"] == topic_name and created["config"]["s3.bucket.name"] == "${env:S3_BUCKET}"
    wait_committed(worker, topic_name, topic_name, 20)
    objects = list_objects(addresses.bucket, topic_name, endpoint_url=addresses.s3_endpoint_url)
    assert [o.key for o in objects] == [
        f"topics/{topic_name}/partition=0/{topic_name}+0+0000000000.avro",
        f"topics/{topic_name}/partition=0/{topic_name}+0+0000000010.avro",
    ]
    records = [r for o in objects for r in read_object(addresses.bucket, o, addresses.s3_endpoint_url)]
    assert records == payments(0, 20)  # the last 5 wait for flush.size
    assert committed(worker, topic_name, topic_name) == 20
    assert worker.config(topic_name)["store.url"] == "${env:S3_ENDPOINT_URL}"  # stored raw, resolved only to run
    status = worker.status(topic_name)
    assert status["connector"]["state"] == "RUNNING" and [t["state"] for t in status["tasks"]] == ["RUNNING"]
    tasks = worker.request("GET", f"/connectors/{topic_name}/tasks")
    assert tasks[0]["id"] == {"connector": topic_name, "task": 0}
    metrics = httpx.get(f"{worker.http.base_url}/metrics").text
    assert f'connect_sink_records_total{{connector="{topic_name}"}} 20.0' in metrics


def test_parquet_objects_read_back_with_pyarrow_and_pandas(
    worker: ConnectClient, addresses: Addresses, topic_name: str
) -> None:
    create_topic(addresses, topic_name)
    produce_avro(addresses, topic_name, payments(0, 12))
    worker.create(
        topic_name, sink_config(addresses, topic_name, format_class=d.PARQUET_FORMAT, flush_size="6", topics_dir="lake")
    )
    wait_committed(worker, topic_name, topic_name, 12)
    objects = list_objects(addresses.bucket, topic_name, topics_dir="lake", endpoint_url=addresses.s3_endpoint_url)
    assert [o.key.rsplit("/", 1)[1] for o in objects] == [
        f"{topic_name}+0+0000000000.parquet",
        f"{topic_name}+0+0000000006.parquet",
    ]
    assert [r for o in objects for r in read_object(addresses.bucket, o, addresses.s3_endpoint_url)] == payments(0, 12)
    body = s3_client(addresses.s3_endpoint_url).get_object(Bucket=addresses.bucket, Key=objects[1].key)["Body"].read()
    frame = pd.read_parquet(io.BytesIO(body))
    assert frame["seq"].tolist() == list(range(6, 12)) and frame["note"].isna().tolist() == [
        False,
        True,
        True,
        False,
        True,
        True,
    ]


def test_json_format_with_schemaless_json(worker: ConnectClient, addresses: Addresses, topic_name: str) -> None:
    create_topic(addresses, topic_name)
    producer = Producer(producer_config(addresses.bootstrap_servers))
    for i in range(4):
        producer.produce(topic_name, value=json.dumps({"seq": i, "tags": ["a", "b"]}).encode())
    producer.flush(30)
    worker.create(
        topic_name,
        sink_config(
            addresses,
            topic_name,
            format_class=d.JSON_FORMAT,
            flush_size="4",
            value_converter=d.JSON_CONVERTER,
            **{"value.converter.schemas.enable": "false"},
        ),
    )
    wait_committed(worker, topic_name, topic_name, 4)
    (obj,) = list_objects(addresses.bucket, topic_name, endpoint_url=addresses.s3_endpoint_url)
    assert obj.key.endswith(f"{topic_name}+0+0000000000.json")
    assert read_object(addresses.bucket, obj, addresses.s3_endpoint_url) == [
        {"seq": i, "tags": ["a", "b"]} for i in range(4)
    ]


def test_rotate_interval_and_time_based_partitions(
    worker: ConnectClient, addresses: Addresses, topic_name: str
) -> None:
    """Record time decides: a file closes when a record is rotate.interval.ms past the file's first one."""
    create_topic(addresses, topic_name)
    hour = 1_714_525_200_000  # 2024-05-01T01:00:00Z
    stamps = [hour + 10_000 * i for i in range(6)] + [hour + 3_600_000]  # 0,10..50 s, then the next hour
    produce_avro(addresses, topic_name, payments(0, 7), timestamps=stamps)
    worker.create(
        topic_name,
        sink_config(
            addresses,
            topic_name,
            flush_size="100",
            rotate_interval_ms="25000",
            partitioner_class=d.TIME_BASED_PARTITIONER,
            path_format="'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH",
            partition_duration_ms="3600000",
            locale="en-US",
            timezone="UTC",
            timestamp_extractor="Record",
        ),
    )
    wait_committed(worker, topic_name, topic_name, 6)
    objects = list_objects(addresses.bucket, topic_name, endpoint_url=addresses.s3_endpoint_url)
    prefix = f"topics/{topic_name}/year=2024/month=05/day=01/hour=01/{topic_name}+0+"
    assert [o.key for o in objects] == [prefix + "0000000000.avro", prefix + "0000000003.avro"]
    assert [[r["seq"] for r in read_object(addresses.bucket, o, addresses.s3_endpoint_url)] for o in objects] == [
        [0, 1, 2],
        [3, 4, 5],
    ]
    assert committed(worker, topic_name, topic_name) == 6  # record 6 (next hour) sits in an open file


# -- bad records -----------------------------------------------------------------------------------------


def test_unreadable_records_go_to_the_dead_letter_topic(
    worker: ConnectClient, addresses: Addresses, topic_name: str
) -> None:
    create_topic(addresses, topic_name)
    dlq = f"{topic_name}-dlq"
    produce_avro(addresses, topic_name, payments(0, 12), raw={3: b"not avro", 7: b"\x00\x00\x00\x03\xe7garbage"})
    worker.create(
        topic_name,
        sink_config(
            addresses,
            topic_name,
            flush_size="5",
            errors_tolerance="all",
            **{"errors.deadletterqueue.topic.name": dlq, "errors.deadletterqueue.context.headers.enable": "true"},
        ),
    )
    wait_committed(worker, topic_name, topic_name, 12)
    objects = list_objects(addresses.bucket, topic_name, endpoint_url=addresses.s3_endpoint_url)
    assert [o.start_offset for o in objects] == [0, 6]
    landed = [r["seq"] for o in objects for r in read_object(addresses.bucket, o, addresses.s3_endpoint_url)]
    assert landed == [0, 1, 2, 4, 5, 6, 8, 9, 10, 11]
    consumer = Consumer(consumer_config(addresses.bootstrap_servers, f"{topic_name}-reader"))
    consumer.subscribe([dlq])
    letters = []
    try:

        def read() -> bool:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                letters.append(message)
            return len(letters) == 2

        wait_until(read, 60, interval=0, what="two dead letters")
    finally:
        consumer.close()
    assert [m.value() for m in letters] == [b"not avro", b"\x00\x00\x00\x03\xe7garbage"]
    headers = dict(letters[0].headers())
    assert headers["__connect.errors.topic"] == topic_name.encode()
    assert headers["__connect.errors.offset"] == b"3" and headers["__connect.errors.stage"] == b"VALUE_CONVERTER"
    assert b"magic byte" in headers["__connect.errors.exception.message"]
    assert headers["__connect.errors.connector.name"] == topic_name.encode()


def test_without_tolerance_a_bad_record_fails_the_task_and_a_fixed_config_resumes(
    worker: ConnectClient, addresses: Addresses, topic_name: str
) -> None:
    create_topic(addresses, topic_name)
    produce_avro(addresses, topic_name, payments(0, 6), raw={4: b"not avro"})
    worker.create(topic_name, sink_config(addresses, topic_name, flush_size="2"))
    failed = wait_until(
        lambda: (s := worker.status(topic_name))["tasks"] and s["tasks"][0]["state"] == "FAILED" and s,
        60,
        what="task failed",
    )
    assert "Tolerance exceeded" in failed["tasks"][0]["trace"] and "magic byte" in failed["tasks"][0]["trace"]
    assert committed(worker, topic_name, topic_name) == 4  # the files before the bad record are in
    restarted = worker.request(
        "POST", f"/connectors/{topic_name}/restart", params={"includeTasks": "true", "onlyFailed": "true"}
    )
    assert restarted["name"] == topic_name
    worker.put_config(topic_name, sink_config(addresses, topic_name, flush_size="1", errors_tolerance="all"))
    wait_committed(worker, topic_name, topic_name, 6)
    assert worker.status(topic_name)["tasks"][0]["state"] == "RUNNING"
    objects = list_objects(addresses.bucket, topic_name, endpoint_url=addresses.s3_endpoint_url)
    assert [o.start_offset for o in objects] == [0, 2, 5]


# -- lifecycle -------------------------------------------------------------------------------------------


def test_pause_resume_restart_delete(worker: ConnectClient, addresses: Addresses, topic_name: str) -> None:
    create_topic(addresses, topic_name)
    name = f"{topic_name}-c"
    worker.create(name, sink_config(addresses, topic_name, flush_size="5"))
    with pytest.raises(ConnectAPIError) as duplicate:
        worker.create(name, sink_config(addresses, topic_name))
    assert duplicate.value.status == 409
    wait_until(lambda: worker.status(name)["tasks"][0]["state"] == "RUNNING", 60, what="running")

    assert worker.http.put(f"/connectors/{name}/pause").status_code == 202
    paused = worker.status(name)
    assert paused["connector"]["state"] == "PAUSED" and paused["tasks"][0]["state"] == "PAUSED"
    produce_avro(addresses, topic_name, payments(0, 10))
    assert committed(worker, name, topic_name) == -1  # nothing consumed while paused

    assert worker.http.put(f"/connectors/{name}/resume").status_code == 202
    wait_committed(worker, name, topic_name, 10)
    assert worker.http.post(f"/connectors/{name}/restart").status_code == 204
    restarted = worker.request("POST", f"/connectors/{name}/restart", params={"includeTasks": "true"})
    assert restarted["connector"]["state"] == "RUNNING"
    assert worker.http.post(f"/connectors/{name}/tasks/0/restart").status_code == 204
    assert worker.http.post(f"/connectors/{name}/tasks/7/restart").status_code == 404
    assert worker.request("GET", f"/connectors/{name}/tasks/0/status")["id"] == 0
    produce_avro(addresses, topic_name, payments(10, 5))
    wait_committed(worker, name, topic_name, 15)
    landed = [
        r["seq"]
        for o in list_objects(addresses.bucket, topic_name, endpoint_url=addresses.s3_endpoint_url)
        for r in read_object(addresses.bucket, o, addresses.s3_endpoint_url)
    ]
    assert landed == list(range(15))

    listed = worker.request("GET", "/connectors", params=[("expand", "status"), ("expand", "info")])
    assert listed[name]["status"]["connector"]["state"] == "RUNNING" and listed[name]["info"]["type"] == "sink"
    assert worker.http.delete(f"/connectors/{name}").status_code == 204
    assert worker.http.get(f"/connectors/{name}").status_code == 404
    assert name not in worker.request("GET", "/connectors")


def _metric(worker: ConnectClient, name: str, connector: str) -> float:
    for line in httpx.get(f"{worker.http.base_url}/metrics").text.splitlines():
        if line.startswith(f'{name}{{connector="{connector}"}} '):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class Forwarder(socketserver.ThreadingTCPServer):
    """Forwards every connection to `target`: an object store that starts answering at a new address."""

    daemon_threads = True

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        super().__init__(("127.0.0.1", port), _Pipe)
        self.target = target


class _Pipe(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        upstream = socket.create_connection(self.server.target)  # type: ignore[attr-defined]

        def pump(source: socket.socket, sink: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while data := source.recv(65536):
                    sink.sendall(data)
                sink.shutdown(socket.SHUT_WR)

        back = threading.Thread(target=pump, args=(upstream, self.request), daemon=True)
        back.start()
        pump(self.request, upstream)
        back.join()
        upstream.close()


def test_a_store_that_does_not_answer_at_start_stalls_the_task_until_it_does(
    worker: ConnectClient, addresses: Addresses, topic_name: str
) -> None:
    """A task started while the object store restarts waits for it (the chaos run's Connect came back before
    SeaweedFS did, and its task failed for good); a missing bucket still fails it (the test below)."""
    create_topic(addresses, topic_name)
    produce_avro(addresses, topic_name, payments(0, 5))
    port = supervisor.free_port()  # nothing listens there yet
    worker.create(
        topic_name, sink_config(addresses, topic_name, flush_size="5", **{"store.url": f"http://127.0.0.1:{port}"})
    )
    wait_until(
        lambda: _metric(worker, "connect_sink_store_unanswered_total", topic_name) > 0, 60, what="an unanswered check"
    )
    assert worker.status(topic_name)["tasks"][0]["state"] != "FAILED"
    target = urlsplit(addresses.s3_endpoint_url)
    with Forwarder(port, (target.hostname, target.port)) as store:
        threading.Thread(target=store.serve_forever, daemon=True).start()
        wait_committed(worker, topic_name, topic_name, 5)
        assert worker.status(topic_name)["tasks"][0]["state"] == "RUNNING"
        assert worker.http.delete(f"/connectors/{topic_name}").status_code == 204  # before the store goes
        store.shutdown()
    (obj,) = list_objects(addresses.bucket, topic_name, endpoint_url=addresses.s3_endpoint_url)
    assert [r["seq"] for r in read_object(addresses.bucket, obj, addresses.s3_endpoint_url)] == list(range(5))


def test_a_missing_bucket_stalls_the_task_until_it_is_back(
    worker: ConnectClient, addresses: Addresses, topic_name: str
) -> None:
    """Upload errors are retried (the task stays RUNNING and commits nothing), as S3 errors are in Confluent's sink."""
    bucket = f"stall-{uuid.uuid4().hex[:12]}"
    ensure_bucket(bucket, addresses.s3_endpoint_url)
    create_topic(addresses, topic_name)
    produce_avro(addresses, topic_name, payments(0, 5))
    worker.create(topic_name, sink_config(addresses, topic_name, flush_size="5", **{"s3.bucket.name": bucket}))
    wait_committed(worker, topic_name, topic_name, 5)

    s3 = s3_client(addresses.s3_endpoint_url)
    for obj in list_objects(bucket, topic_name, endpoint_url=addresses.s3_endpoint_url):
        s3.delete_object(Bucket=bucket, Key=obj.key)
    s3.delete_bucket(Bucket=bucket)
    produce_avro(addresses, topic_name, payments(5, 5))
    wait_until(
        lambda: _metric(worker, "connect_sink_upload_failures_total", topic_name) > 0, 60, what="a failed upload"
    )
    assert worker.status(topic_name)["tasks"][0]["state"] == "RUNNING"
    assert committed(worker, topic_name, topic_name) == 5

    ensure_bucket(bucket, addresses.s3_endpoint_url)
    wait_committed(worker, topic_name, topic_name, 10)
    (obj,) = list_objects(bucket, topic_name, endpoint_url=addresses.s3_endpoint_url)
    assert obj.start_offset == 5 and [r["seq"] for r in read_object(bucket, obj, addresses.s3_endpoint_url)] == list(
        range(5, 10)
    )


def test_a_bucket_missing_at_start_fails_the_task_with_a_reason(
    worker: ConnectClient, addresses: Addresses, topic_name: str
) -> None:
    worker.create(
        topic_name, sink_config(addresses, topic_name, **{"s3.bucket.name": f"absent-{uuid.uuid4().hex[:12]}"})
    )
    failed = wait_until(
        lambda: (s := worker.status(topic_name))["tasks"] and s["tasks"][0]["state"] == "FAILED" and s,
        60,
        what="task failed",
    )
    assert "is not reachable" in failed["tasks"][0]["trace"]


def test_scheduled_rotation_lands_a_partial_file_on_the_wall_clock(
    worker: ConnectClient, addresses: Addresses, topic_name: str
) -> None:
    """rotate.schedule.interval.ms closes files at wall-clock boundaries, however few records they hold."""
    create_topic(addresses, topic_name)
    produce_avro(addresses, topic_name, payments(0, 3))
    worker.create(
        topic_name,
        sink_config(
            addresses, topic_name, flush_size="1000", **{"rotate.schedule.interval.ms": "1000", "timezone": "UTC"}
        ),
    )
    wait_committed(worker, topic_name, topic_name, 3)
    landed = [
        r["seq"]
        for o in list_objects(addresses.bucket, topic_name, endpoint_url=addresses.s3_endpoint_url)
        for r in read_object(addresses.bucket, o, addresses.s3_endpoint_url)
    ]
    assert landed == [0, 1, 2]
