"""Kafka client defaults, the one way to create a topic, and the one helper that finds the true end of a partition.

Every confluent-kafka client in fraudstream is configured through these functions, so that the
settings the embedded broker needs (short group session timeouts) live in one place.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from fraudstream.credentials import Credentials

logger = logging.getLogger(__name__)

#: A group join takes ~23 s with librdkafka's defaults on the embedded broker, ~3 s with these.
GROUP_DEFAULTS: dict[str, Any] = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 1000,
}

#: The short-lived consumers that only look (ends, committed offsets) log nothing themselves: closed a moment
#: after they start, they cut their group coordinator's connection mid-handshake, which librdkafka reports as
#: a SASL or TLS failure on a secured cluster. Their real failures raise (a time-out, a missing topic).
PROBE_LOGGING: dict[str, Any] = {"log_level": 2}

#: Durable, ordered and free of retry duplicates: what "acknowledged" means everywhere in fraudstream. Keyed
#: records go where Java clients and Kafka Streams put them (murmur2, not librdkafka's CRC32 default), so
#: that a label and its payment's features share a partition number and a real ksqlDB can join them.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 5,
    "partitioner": "murmur2_random",
}

#: The same group timeouts for aiokafka (Faust's transport), which names them in milliseconds too.
AIOKAFKA_GROUP_DEFAULTS: dict[str, Any] = {
    "session_timeout_ms": GROUP_DEFAULTS["session.timeout.ms"],
    "heartbeat_interval_ms": GROUP_DEFAULTS["heartbeat.interval.ms"],
}


def client_config(bootstrap_servers: str, **overrides: Any) -> dict[str, Any]:
    """Configuration for any confluent-kafka client: the servers and the credentials for them (`Credentials`)."""
    security = Credentials.from_env(bootstrap_servers=bootstrap_servers).kafka()
    return {"bootstrap.servers": bootstrap_servers, **security, **_dotted(overrides)}


#: The embedded broker's s3:// engine lists a partition's objects (all of them) within a fetch's wait and
#: answers with nothing when the listing takes longer, so on the durable broker a short fetch.wait.max.ms
#: starves a consumer. Reading records that are already there costs no wait (a fetch returns once it has
#: data), so reads of existing records use this one everywhere.
READ_FETCH_WAIT_MS = 500
#: The variable that sets a streaming consumer's fetch wait (the engine's queries, the workers): the stack
#: sets it for its services when the broker is durable. In memory a short wait keeps a trickle fast (the
#: broker looks again at halves of the wait left, so a record may wait up to half of it).
FETCH_WAIT_ENV = "FRAUDSTREAM_FETCH_WAIT_MS"


def fetch_wait_ms(default: int) -> int:
    """A streaming consumer's fetch.wait.max.ms: FRAUDSTREAM_FETCH_WAIT_MS when set, else `default`."""
    value = os.environ.get(FETCH_WAIT_ENV, "")
    return int(value) if value.strip().isdigit() else default


def producer_config(bootstrap_servers: str, **overrides: Any) -> dict[str, Any]:
    """Configuration for a confluent-kafka `Producer` (dots in keys may be given as underscores)."""
    return client_config(bootstrap_servers, **{**PRODUCER_DEFAULTS, **_dotted(overrides)})


def consumer_config(bootstrap_servers: str, group_id: str, **overrides: Any) -> dict[str, Any]:
    """Configuration for a confluent-kafka `Consumer` in a group, reading from the start by default."""
    defaults = {"group.id": group_id, "auto.offset.reset": "earliest", **GROUP_DEFAULTS}
    return client_config(bootstrap_servers, **{**defaults, **_dotted(overrides)})


def admin_client(bootstrap_servers: str) -> AdminClient:
    return AdminClient(client_config(bootstrap_servers))


def ensure_topic(
    bootstrap_servers: str,
    topic: str,
    partitions: int = 1,
    config: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> bool:
    """Create `topic` unless it exists; True when this call created it.

    A topic created meanwhile by another client (TOPIC_ALREADY_EXISTS) counts as existing, never as an
    error: producers, the engine, Connect and the registry all start concurrently.
    """
    admin = admin_client(bootstrap_servers)  # held until the future resolves: a collected client cancels it
    new = NewTopic(topic, num_partitions=partitions, replication_factor=1, config=dict(config or {}))
    future = admin.create_topics([new], operation_timeout=timeout)[topic]
    try:
        future.result(timeout=timeout)
    except KafkaException as error:
        if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise
        return False
    logger.info("created topic %s (%d partitions%s)", topic, partitions, f", {dict(config)}" if config else "")
    return True


def _dotted(overrides: dict[str, Any]) -> dict[str, Any]:
    return {key.replace("_", "."): value for key, value in overrides.items()}


def end_offsets(bootstrap_servers: str, topic: str, timeout: float = 10.0) -> dict[int, int]:
    """The true end (the offset the next record will get) of every partition of `topic`."""
    return topic_ends(bootstrap_servers, [topic], timeout)[topic]


def topic_ends(bootstrap_servers: str, topics: Iterable[str], timeout: float = 10.0) -> dict[str, dict[int, int]]:
    """The true end of every partition of each of `topics`, with one consumer and one round of fetches.

    The embedded broker answers ListOffsets(latest) with the last batch's base offset + 1, which
    undercounts whenever the last batch holds more than one record. The high watermark carried in
    fetch responses is right, so this reads one record at the listed "latest" - 1 (the start of the
    last batch) of every partition at once and takes the watermark that came with it. Against a correct
    broker the same steps give the same answer, so nothing needs to change when the broker is fixed.
    """
    topics = list(topics)
    consumer = Consumer(
        client_config(
            bootstrap_servers,
            **{
                "group.id": f"fraudstream-end-offsets-{topics[0] if len(topics) == 1 else 'topics'}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "fetch.wait.max.ms": READ_FETCH_WAIT_MS,
                **GROUP_DEFAULTS,
            },
        )
        | PROBE_LOGGING
    )
    try:
        ends: dict[str, dict[int, int]] = {}
        listed: dict[tuple[str, int], int] = {}  # partitions whose end a fetch must confirm
        for topic in topics:
            metadata = consumer.list_topics(topic, timeout=timeout).topics[topic]
            if metadata.error is not None:
                raise LookupError(f"topic {topic!r}: {metadata.error.str()}")
            ends[topic] = {}
            for partition in sorted(metadata.partitions):
                low, latest = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
                ends[topic][partition] = latest
                if latest > low:
                    listed[(topic, partition)] = latest
        for (topic, partition), high in _fetched_watermarks(consumer, listed, timeout).items():
            ends[topic][partition] = max(high, listed[(topic, partition)])
        return ends
    finally:
        consumer.close()


def _fetched_watermarks(
    consumer: Consumer, listed: dict[tuple[str, int], int], timeout: float
) -> dict[tuple[str, int], int]:
    """The high watermark of the first fetch response for each partition, read from its listed end - 1."""
    if not listed:
        return {}
    consumer.assign([TopicPartition(topic, partition, end - 1) for (topic, partition), end in listed.items()])
    found: dict[tuple[str, int], int] = {}
    deadline = time.monotonic() + timeout  # for the next partition: a broker may answer them one by one
    while len(found) < len(listed):
        remaining = deadline - time.monotonic()
        message = consumer.poll(remaining) if remaining > 0 else None
        if message is None:
            missing = sorted(f"{topic}[{partition}]" for topic, partition in listed.keys() - found.keys())
            raise TimeoutError(f"no fetch response from {', '.join(missing)} within {timeout} s")
        tp = (message.topic(), message.partition())
        if tp in listed and tp not in found:
            found[tp] = consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)[1]
            consumer.pause([TopicPartition(*tp)])
            deadline = time.monotonic() + timeout
    return found


def committed_offsets(bootstrap_servers: str, group: str, topic: str, timeout: float = 10.0) -> dict[int, int]:
    """`group`'s committed offset per partition of `topic`; partitions without a commit are left out."""
    consumer = Consumer(consumer_config(bootstrap_servers, group, enable_auto_commit=False) | PROBE_LOGGING)
    try:
        metadata = consumer.list_topics(topic, timeout=timeout).topics[topic]
        if metadata.error is not None:
            raise LookupError(f"topic {topic!r}: {metadata.error.str()}")
        found = consumer.committed([TopicPartition(topic, p) for p in sorted(metadata.partitions)], timeout=timeout)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found if tp.offset >= 0}


def read_topic(bootstrap_servers: str, topic: str, timeout: float = 300.0) -> list[Message]:
    """Every record of `topic` from its start to its end now, partition by partition in offset order."""
    ends = {p: end for p, end in end_offsets(bootstrap_servers, topic, timeout=60.0).items() if end > 0}
    read: dict[int, list[Message]] = {p: [] for p in ends}
    consumer = Consumer(
        consumer_config(
            bootstrap_servers,
            f"fraudstream-read-{topic}",
            enable_auto_commit=False,
            fetch_wait_max_ms=READ_FETCH_WAIT_MS,
        )
    )
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        deadline = time.monotonic() + timeout
        while any(not records or records[-1].offset() < ends[p] - 1 for p, records in read.items()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} not read to its end within {timeout:.0f} s")
            for message in consumer.consume(num_messages=10_000, timeout=1.0):
                if message.error() is not None:
                    raise KafkaException(message.error())
                if message.offset() < ends[message.partition()]:
                    read[message.partition()].append(message)
    finally:
        consumer.close()
    return [message for p in sorted(read) for message in read[p]]
