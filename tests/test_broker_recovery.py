"""Log recovery of the durable broker: a partition whose watermark a crash left past its last stored batch is put
back before the broker starts, so that readers do not stall at offsets with no records and a producer's retry is
stored (stack/broker_recovery.py)."""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from fraudstream.kafka import consumer_config, end_offsets, ensure_topic, producer_config
from stack.broker_recovery import ObjectLog, parse_header
from stack.embedded import EmbeddedStack


def test_a_batch_header_gives_its_records_producer_and_sequences() -> None:
    header = struct.pack(">qiibIhiqqqhi", 0, 500, 0, 2, 0, 0, 133, 0, 0, 9, 0, 164)  # Kafka's v2 batch header
    batch = parse_header(164, header + b"records...")
    assert (batch.records, batch.producer_id, batch.producer_epoch, batch.base_sequence) == (134, 9, 0, 164)
    assert (batch.end_offset, batch.end_sequence) == (298, 298)


@pytest.fixture(scope="module")
def durable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    directory: Path = tmp_path_factory.mktemp("recovery")
    with EmbeddedStack.on_free_ports(directory / "data", services=("objectstore", "broker")) as stack:
        yield stack


def _produce(bootstrap: str, topic: str, values: range) -> None:
    producer = Producer(producer_config(bootstrap))
    for value in values:
        producer.produce(topic, value=str(value).encode(), partition=0)
    assert producer.flush(30) == 0


def _read(bootstrap: str, topic: str, count: int) -> list[int]:
    consumer = Consumer(consumer_config(bootstrap, f"recovery-{uuid.uuid4().hex[:6]}", enable_auto_commit=False))
    consumer.assign([TopicPartition(topic, 0, 0)])
    values: list[int] = []
    try:
        for _ in range(60):
            values += [int(m.value()) for m in consumer.consume(1000, 1.0) if m.error() is None]
            if len(values) >= count:
                break
    finally:
        consumer.close()
    return values


@pytest.mark.integration
def test_a_watermark_past_the_last_stored_batch_is_put_back_and_the_partition_reads_on(durable: EmbeddedStack) -> None:
    bootstrap, topic = durable.addresses.bootstrap_servers, f"recovery-{uuid.uuid4().hex[:8]}"
    ensure_topic(bootstrap, topic, 1)
    _produce(bootstrap, topic, range(20))
    durable.stop_service("broker", kill=True)
    # What a broker killed between its writes leaves: sequence and watermark moved on, the batch never stored.
    log = ObjectLog(durable.addresses.s3_endpoint_url, durable.bucket)
    meta = log.meta()
    producer_id, epochs = next(
        (p, e) for p, e in meta["producers"].items() if any(topic in s for s in e["sequences"].values())
    )
    latest = epochs["sequences"][max(epochs["sequences"], key=int)]
    assert latest[topic]["0"] == 20
    latest[topic]["0"] = 25
    log.put_meta(meta)
    watermark = log.watermark(topic, 0)
    assert watermark["high"] == 20
    log.put_watermark(topic, 0, {**watermark, "high": 25})

    durable.start_service("broker")  # recovery runs first

    assert log.watermark(topic, 0)["high"] == 20
    after = log.meta()["producers"][producer_id]["sequences"]
    assert after[max(after, key=int)][topic]["0"] == 20
    _produce(bootstrap, topic, range(20, 30))
    assert end_offsets(bootstrap, topic) == {0: 30}
    assert _read(bootstrap, topic, 30) == list(range(30))  # no offsets without records: nothing stalls


@pytest.mark.integration
def test_an_intact_log_is_left_as_it_is(durable: EmbeddedStack) -> None:
    bootstrap, topic = durable.addresses.bootstrap_servers, f"intact-{uuid.uuid4().hex[:8]}"
    ensure_topic(bootstrap, topic, 1)
    _produce(bootstrap, topic, range(7))
    log = ObjectLog(durable.addresses.s3_endpoint_url, durable.bucket)
    durable.stop_service("broker", kill=True)
    before = (log.watermark(topic, 0), log.meta())
    durable.start_service("broker")
    assert (log.watermark(topic, 0), log.meta()) == before
    assert _read(bootstrap, topic, 7) == list(range(7))
