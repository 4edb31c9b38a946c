"""The Connect worker's durability: a restart keeps configs, target states and offsets; a `kill -9` while
landing records loses and duplicates nothing in the lake.

Each test runs its own worker process (storage topics of its own) against the session stack, and
waits on observable conditions: committed offsets, objects in the store.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.client import ConnectClient, wait_until
from connectors.lake import list_objects, read_object
from fraudstream.bench.connect import create_topic, produce_payments
from fraudstream.config import Addresses
from fraudstream.s3 import s3_client
from stack import supervisor
from stack.connect import definitions as d
from stack.connect.process import connect_spec
from stack.embedded import EmbeddedStack
from stack.supervisor import RunningService, ServiceSpec


class Worker:
    """One worker's spec (fixed port and storage topics), started and stopped as the test says."""

    def __init__(self, addresses: Addresses, log_dir: Path) -> None:
        self.spec: ServiceSpec = connect_spec(
            addresses, supervisor.free_port(), storage_prefix=f"crash-{uuid.uuid4().hex[:8]}-"
        )
        self.log_dir = log_dir
        self.running: RunningService | None = None
        self.client = ConnectClient(self.spec.address)

    def start(self) -> ConnectClient:
        self.running = supervisor.start(self.spec, self.log_dir)
        return self.client

    def stop(self, kill: bool = False) -> None:
        if self.running is not None:
            supervisor.stop(self.running, kill=kill)
            self.running = None


@pytest.fixture
def worker(stack: EmbeddedStack, tmp_path: Path) -> Iterator[Worker]:
    process = Worker(stack.addresses, tmp_path / "logs")
    try:
        yield process
    finally:
        process.stop()
        process.client.close()


def sink_config(topic: str, flush_size: int, **extra: str) -> dict[str, str]:
    return {
        "connector.class": d.S3_SINK_CLASS,
        "tasks.max": "2",
        "topics": topic,
        "s3.bucket.name": "${env:S3_BUCKET}",
        "store.url": "${env:S3_ENDPOINT_URL}",
        "storage.class": d.S3_STORAGE,
        "format.class": d.AVRO_FORMAT,
        "flush.size": str(flush_size),
        "value.converter": d.AVRO_CONVERTER,
        "value.converter.schema.registry.url": "${env:SCHEMA_REGISTRY_URL}",
        **extra,
    }


def all_committed(client: ConnectClient, name: str, topic: str, partitions: int, offset: int) -> bool:
    offsets = client.offsets(name)
    return all(offsets.get((topic, p), -1) >= offset for p in range(partitions))


def lake_offsets(addresses: Addresses, topic: str) -> dict[int, list[int]]:
    """Every (partition -> offsets) the lake holds, read back from the objects; checks each record sits where its name says."""
    found: dict[int, list[int]] = {}
    for obj in list_objects(addresses.bucket, topic, endpoint_url=addresses.s3_endpoint_url):
        seqs = [record["seq"] for record in read_object(addresses.bucket, obj, addresses.s3_endpoint_url)]
        assert seqs == list(range(obj.start_offset, obj.start_offset + len(seqs))), obj.key
        found.setdefault(obj.partition, []).extend(seqs)
    return found


def object_bytes(addresses: Addresses, topic: str) -> dict[str, bytes]:
    client = s3_client(addresses.s3_endpoint_url)
    return {
        obj.key: client.get_object(Bucket=addresses.bucket, Key=obj.key)["Body"].read()
        for obj in list_objects(addresses.bucket, topic, endpoint_url=addresses.s3_endpoint_url)
    }


def test_restart_keeps_configs_target_states_and_offsets(worker: Worker, stack: EmbeddedStack, topic_name: str) -> None:
    addresses = stack.addresses
    create_topic(addresses, topic_name, 2)
    produce_payments(addresses, topic_name, 15, 2)
    client = worker.start()
    client.create("landing", sink_config(topic_name, 5))
    client.create("parked", sink_config(topic_name, 5, **{"topics.dir": "parked"}), initial_state="PAUSED")
    wait_until(lambda: all_committed(client, "landing", topic_name, 2, 15), 90, what="15 records landed")

    worker.stop()
    client = worker.start()
    assert sorted(client.request("GET", "/connectors")) == ["landing", "parked"]
    assert client.config("landing") == {**sink_config(topic_name, 5), "name": "landing"}
    assert client.status("parked")["connector"]["state"] == "PAUSED"
    assert client.offsets("landing") == {(topic_name, 0): 15, (topic_name, 1): 15}

    produce_payments(addresses, topic_name, 5, 2, start=15)
    wait_until(lambda: all_committed(client, "landing", topic_name, 2, 20), 90, what="20 records landed")
    assert lake_offsets(addresses, topic_name) == {0: list(range(20)), 1: list(range(20))}
    assert list_objects(addresses.bucket, topic_name, topics_dir="parked", endpoint_url=addresses.s3_endpoint_url) == []


@pytest.mark.parametrize("per_partition", [2_500, pytest.param(25_000, marks=pytest.mark.slow)], ids=["10k", "100k"])
def test_kill_9_while_landing_keeps_every_offset_exactly_once(
    worker: Worker, stack: EmbeddedStack, topic_name: str, per_partition: int
) -> None:
    """Kill the worker mid-way, with files open and uploads under way; after a restart the lake holds each offset once."""
    addresses, partitions = stack.addresses, 4
    flush = per_partition // 10
    create_topic(addresses, topic_name, partitions)
    produce_payments(
        addresses, topic_name, per_partition - flush // 2, partitions
    )  # the last file of each partition stays open
    client = worker.start()
    client.create("crash", sink_config(topic_name, flush))
    wait_until(
        lambda: list_objects(addresses.bucket, topic_name, endpoint_url=addresses.s3_endpoint_url),
        120,
        interval=0.05,
        what="first objects",
    )
    worker.stop(kill=True)
    before = object_bytes(addresses, topic_name)

    client = worker.start()
    assert client.status("crash")["connector"]["state"] == "RUNNING"
    produce_payments(addresses, topic_name, flush // 2, partitions, start=per_partition - flush // 2)
    wait_until(
        lambda: all_committed(client, "crash", topic_name, partitions, per_partition), 300, what="every record landed"
    )

    assert lake_offsets(addresses, topic_name) == {p: list(range(per_partition)) for p in range(partitions)}
    after = object_bytes(addresses, topic_name)
    assert sorted(after) == sorted(
        f"topics/{topic_name}/partition={p}/{topic_name}+{p}+{start:010d}.avro"
        for p in range(partitions)
        for start in range(0, per_partition, flush)
    )
    assert len(before) < len(after)  # the kill came before the last files (their records were not even produced)
    assert {key: after[key] for key in before} == before  # a rewritten object holds the very same bytes
