"""Reading a topic's records up to its true end, for recovery: the Kafka runtime re-reads a sink's tail, and
the durable stores read their changelogs."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, Message, TopicPartition

from fraudstream.kafka import READ_FETCH_WAIT_MS, client_config, end_offsets


def read_window(bootstrap: str, topic: str, starts: dict[int, int], timeout: float = 60.0) -> list[Message]:
    """Every record of `topic` from `starts` (per partition) to the true end."""
    ends = end_offsets(bootstrap, topic)
    wanted = {p: (starts.get(p, 0), end) for p, end in ends.items() if starts.get(p, 0) < end}
    if not wanted:
        return []
    consumer = Consumer(
        client_config(
            bootstrap,
            **{
                "group.id": f"{topic}-window-reader",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": READ_FETCH_WAIT_MS,
            },
        )
    )
    out: list[Message] = []
    try:
        consumer.assign([TopicPartition(topic, p, s) for p, (s, _) in wanted.items()])
        remaining = dict(wanted)
        deadline = time.monotonic() + timeout
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"cannot read {topic} up to its end: {remaining}")
            for m in consumer.consume(10_000, 0.5):
                if m.error() is not None:
                    continue
                p = m.partition()
                if p in remaining and m.offset() < remaining[p][1]:
                    out.append(m)
                if p in remaining and m.offset() >= remaining[p][1] - 1:
                    del remaining[p]
    finally:
        consumer.close()
    return out
