"""Broker conformance: each Kafka feature fraudstream relies on, checked against the embedded broker.

The session stack's broker runs in memory; the durability tests start their own broker on the
object store, because surviving a restart is what they are about.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import ConfigResource, NewTopic

from fraudstream.kafka import admin_client, consumer_config, end_offsets, producer_config, topic_ends
from stack.embedded import EmbeddedStack

pytestmark = pytest.mark.integration  # starts its own servers


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll an observable condition; fail with `what` if it never holds (a bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def create_topic(bootstrap: str, name: str, partitions: int = 1, config: dict[str, str] | None = None) -> None:
    admin = admin_client(bootstrap)  # keep the client alive until its future resolves
    admin.create_topics([NewTopic(name, partitions, 1, config=config or {})])[name].result(timeout=30)


def produce(bootstrap: str, topic: str, records: list[dict]) -> list:
    """Produce `records` (kwargs for Producer.produce) and return the delivered messages, all acknowledged."""
    delivered: list = []
    errors: list = []
    producer = Producer(producer_config(bootstrap))
    for record in records:
        producer.produce(
            topic, **record, on_delivery=lambda err, msg: (errors if err else delivered).append(err or msg)
        )
    assert producer.flush(30) == 0
    assert errors == []
    return delivered


def consume_all(consumer: Consumer, count: int, timeout: float = 60.0) -> list:
    messages: list = []
    deadline = time.monotonic() + timeout
    while len(messages) < count and time.monotonic() < deadline:
        for message in consumer.consume(500, timeout=0.5):
            if message.error() is None:
                messages.append(message)
    return messages


@pytest.fixture
def bootstrap(stack: EmbeddedStack) -> str:
    return stack.addresses.bootstrap_servers


def test_create_describe_delete_topics(bootstrap: str, topic_name: str) -> None:
    admin = admin_client(bootstrap)
    compacted = f"{topic_name}-compact"
    create_topic(bootstrap, topic_name, partitions=4)
    create_topic(bootstrap, compacted, partitions=1, config={"cleanup.policy": "compact"})

    topics = admin.list_topics(timeout=10).topics
    assert len(topics[topic_name].partitions) == 4
    assert len(topics[compacted].partitions) == 1
    described = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, compacted)])
    config = next(iter(described.values())).result(timeout=10)
    assert config["cleanup.policy"].value == "compact"

    admin.delete_topics([compacted])[compacted].result(timeout=10)
    wait_until(lambda: compacted not in admin.list_topics(timeout=10).topics, "the deleted topic to disappear")
    assert topic_name in admin.list_topics(timeout=10).topics


def test_produce_keys_headers_timestamps_acks_all_idempotent(bootstrap: str, topic_name: str) -> None:
    create_topic(bootstrap, topic_name, partitions=2)
    records = [
        {
            "key": f"k{i}".encode(),
            "value": f"v{i}".encode(),
            "headers": [("source", b"test"), ("n", str(i).encode())],
            "timestamp": 1_600_000_000_000 + i,
        }
        for i in range(100)
    ]
    delivered = produce(bootstrap, topic_name, records)
    assert len(delivered) == 100

    consumer = Consumer(consumer_config(bootstrap, f"g-{topic_name}"))
    consumer.subscribe([topic_name])
    messages = consume_all(consumer, 100)
    consumer.close()
    by_key = {m.key(): m for m in messages}
    assert len(by_key) == 100
    sample = by_key[b"k42"]
    assert sample.value() == b"v42"
    assert sample.headers() == [("source", b"test"), ("n", b"42")]
    assert sample.timestamp()[1] == 1_600_000_000_042
    # The same key always lands on the same partition, so consumers keep per-key order.
    assert {m.partition() for m in messages if m.key() == b"k7"} == {by_key[b"k7"].partition()}


def test_consume_by_assignment_from_an_offset(bootstrap: str, topic_name: str) -> None:
    create_topic(bootstrap, topic_name, partitions=1)
    produce(bootstrap, topic_name, [{"value": str(i).encode()} for i in range(50)])
    consumer = Consumer(consumer_config(bootstrap, f"g-{topic_name}", enable_auto_commit=False))
    consumer.assign([TopicPartition(topic_name, 0, 30)])
    messages = consume_all(consumer, 20)
    consumer.close()
    assert [m.offset() for m in messages] == list(range(30, 50))
    assert messages[0].value() == b"30"


def test_commit_and_committed(bootstrap: str, topic_name: str) -> None:
    create_topic(bootstrap, topic_name, partitions=2)
    produce(bootstrap, topic_name, [{"value": b"x", "partition": i % 2} for i in range(40)])
    group = f"g-{topic_name}"
    consumer = Consumer(consumer_config(bootstrap, group, enable_auto_commit=False))
    consumer.subscribe([topic_name])
    messages = consume_all(consumer, 40)
    assert len(messages) == 40
    consumer.commit(offsets=[TopicPartition(topic_name, 0, 20), TopicPartition(topic_name, 1, 5)], asynchronous=False)
    consumer.close()

    reader = Consumer(consumer_config(bootstrap, group))
    committed = reader.committed([TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)], timeout=10)
    reader.close()
    assert [(tp.partition, tp.offset) for tp in committed] == [(0, 20), (1, 5)]


def test_rebalance_between_two_consumers(bootstrap: str, topic_name: str) -> None:
    create_topic(bootstrap, topic_name, partitions=4)
    group = f"g-{topic_name}"
    assignments: dict[str, set[int]] = {"a": set(), "b": set()}

    def member(name: str) -> Consumer:
        consumer = Consumer(consumer_config(bootstrap, group))

        def on_assign(_: Consumer, partitions: list[TopicPartition]) -> None:
            assignments[name] = {tp.partition for tp in partitions}

        def on_revoke(_: Consumer, partitions: list[TopicPartition]) -> None:
            assignments[name] = set()

        consumer.subscribe([topic_name], on_assign=on_assign, on_revoke=on_revoke)
        return consumer

    first = member("a")
    wait_until(
        lambda: first.poll(0.1) is None and assignments["a"] == {0, 1, 2, 3}, "the first member to own every partition"
    )
    second = member("b")

    def balanced() -> bool:
        first.poll(0.05)
        second.poll(0.05)
        return len(assignments["a"]) == 2 and len(assignments["b"]) == 2

    wait_until(balanced, "the group to rebalance across two members")
    assert assignments["a"] | assignments["b"] == {0, 1, 2, 3}
    second.close()
    wait_until(
        lambda: first.poll(0.1) is None and assignments["a"] == {0, 1, 2, 3},
        "the partitions to return when a member leaves",
    )
    first.close()


def test_list_offsets_and_the_true_end(bootstrap: str, topic_name: str) -> None:
    """The broker's ListOffsets(latest) is wrong for multi-record batches; `end_offsets` must not be."""
    create_topic(bootstrap, topic_name, partitions=3)
    producer = Producer(producer_config(bootstrap, linger_ms=200))
    for _ in range(1000):
        producer.produce(topic_name, value=b"x", partition=0)
    producer.flush(30)
    for _ in range(7):
        producer.produce(topic_name, value=b"y", partition=1)
        producer.flush(30)
    assert end_offsets(bootstrap, topic_name) == {0: 1000, 1: 7, 2: 0}
    other = f"{topic_name}-other"
    create_topic(bootstrap, other, partitions=2)
    for _ in range(300):
        producer.produce(other, value=b"z", partition=1)
    producer.flush(30)
    # several topics at once, in one round of fetches
    assert topic_ends(bootstrap, [topic_name, other]) == {topic_name: {0: 1000, 1: 7, 2: 0}, other: {0: 0, 1: 300}}

    consumer = Consumer(consumer_config(bootstrap, f"g-{topic_name}"))
    low, _ = consumer.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10)
    earliest = consumer.offsets_for_times([TopicPartition(topic_name, 0, 0)], timeout=10)
    consumer.close()
    assert low == 0
    assert earliest[0].offset == 0


def test_end_offsets_of_a_missing_topic_is_a_clear_error(bootstrap: str) -> None:
    with pytest.raises((LookupError, KafkaException)):
        end_offsets(bootstrap, f"missing-{uuid.uuid4().hex}", timeout=5)


@pytest.mark.xfail(
    strict=False,
    reason="Tansu 0.6.0 was measured losing committed transactional records; fraudstream never enables transactions. "
    "Non-strict: an XPASS in the summary shows this run did not reproduce the loss.",
)
def test_transactions_keep_every_committed_record(bootstrap: str, topic_name: str) -> None:
    create_topic(bootstrap, topic_name, partitions=1)
    producer = Producer(producer_config(bootstrap, transactional_id=f"tx-{topic_name}"))
    producer.init_transactions(30)
    for batch in range(5):
        producer.begin_transaction()
        for i in range(100):
            producer.produce(topic_name, value=f"{batch}-{i}".encode())
        producer.commit_transaction(30)
    consumer = Consumer(consumer_config(bootstrap, f"g-{topic_name}", isolation_level="read_committed"))
    consumer.subscribe([topic_name])
    messages = consume_all(consumer, 500, timeout=20)
    consumer.close()
    assert len(messages) == 500


# --- durability: a broker on the object store, stopped and killed ---------------------------------


@pytest.fixture(scope="module")
def durable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    stack = EmbeddedStack.on_free_ports(tmp_path_factory.mktemp("durable"), services=("objectstore", "broker"))
    with stack:
        yield stack


@pytest.mark.parametrize("kill", [False, True], ids=["graceful-stop", "kill-9"])
def test_records_and_committed_offsets_survive_a_broker_restart(durable: EmbeddedStack, kill: bool) -> None:
    bootstrap = durable.addresses.bootstrap_servers
    topic = f"durable-{uuid.uuid4().hex[:8]}"
    group = f"g-{topic}"
    create_topic(bootstrap, topic, partitions=2)
    produce(bootstrap, topic, [{"key": str(i).encode(), "value": f"r{i}".encode()} for i in range(500)])
    consumer = Consumer(consumer_config(bootstrap, group, enable_auto_commit=False))
    consumer.subscribe([topic])
    assert len(consume_all(consumer, 500)) == 500
    consumer.commit(asynchronous=False)
    committed_before = consumer.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
    consumer.close()

    durable.stop_service("broker", kill=kill)
    durable.start_service("broker")

    assert sum(end_offsets(bootstrap, topic).values()) == 500
    reader = Consumer(consumer_config(bootstrap, f"other-{group}"))
    reader.subscribe([topic])
    values = sorted(m.value() for m in consume_all(reader, 500))
    reader.close()
    assert values == sorted(f"r{i}".encode() for i in range(500))
    resumed = Consumer(consumer_config(bootstrap, group))
    committed_after = resumed.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
    resumed.close()
    assert [tp.offset for tp in committed_after] == [tp.offset for tp in committed_before]
    assert sum(tp.offset for tp in committed_after) == 500
