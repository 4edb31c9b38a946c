"""The floor every benchmark is held to: a raw confluent-kafka consume -> produce on the same broker.

These machines are shared and noisy, so an absolute events/s figure says little; the same broker's
raw passthrough rate, measured in the same run, is the practical limit every stage is held to.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import click
from confluent_kafka import Consumer, Producer
from rich.table import Table

from fraudstream.config import Addresses
from fraudstream.kafka import consumer_config, ensure_topic, producer_config
from fraudstream.terminal import make_console
from stack.embedded import EmbeddedStack

console = make_console()

#: The shape of the peers' published figures: ~60-byte JSON records, 4 partitions.
PARTITIONS = 4


@dataclass(frozen=True)
class Rate:
    name: str
    events: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


def create_topics(bootstrap: str, *names: str, partitions: int = PARTITIONS) -> None:
    for name in names:
        if not ensure_topic(bootstrap, name, partitions):
            raise RuntimeError(f"benchmark topic {name} exists already")


def sample_value(i: int) -> bytes:
    """A ~60-byte JSON payment-like record."""
    return json.dumps({"id": f"p-{i:09d}", "amount": round(i % 997 * 1.37, 2), "v1": -1.359807}).encode()


def produce_records(bootstrap: str, topic: str, count: int) -> Rate:
    """Produce `count` records with fraudstream's producer defaults (acks=all, idempotent); all acknowledged."""
    producer = Producer(producer_config(bootstrap, linger_ms=20, batch_num_messages=10_000))
    records = [(str(i).encode(), sample_value(i)) for i in range(count)]  # made before the clock starts
    started = time.perf_counter()
    for i, (key, value) in enumerate(records):
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 1000 == 0:  # serve delivery callbacks now and then, as the passthrough does once per batch
            producer.poll(0)
    if producer.flush(120) != 0:
        raise click.ClickException(f"not every record to {topic} was acknowledged")
    return Rate("produce", count, time.perf_counter() - started)


def consume_records(bootstrap: str, topic: str, count: int, on_batch: Callable[[list], None] | None = None) -> Rate:
    """Consume `count` records from the start of `topic` in a fresh group, timing from the first record."""
    consumer = Consumer(consumer_config(bootstrap, f"bench-{uuid.uuid4().hex[:8]}", enable_auto_commit=False))
    consumer.subscribe([topic])
    seen, started = 0, None
    deadline = time.monotonic() + 300
    try:
        while seen < count:
            if time.monotonic() > deadline:
                raise click.ClickException(f"only {seen:,} of {count:,} records arrived from {topic}")
            batch = [m for m in consumer.consume(10_000, timeout=0.5) if m.error() is None]
            if batch and started is None:
                started = time.perf_counter()
            if on_batch is not None and batch:
                on_batch(batch)
            seen += len(batch)
    finally:
        consumer.close()
    return Rate("consume", seen, time.perf_counter() - (started or time.perf_counter()))


def passthrough(bootstrap: str, source: str, sink: str, count: int) -> Rate:
    """The baseline: raw confluent-kafka consume -> produce of `count` records, all acknowledged."""
    producer = Producer(producer_config(bootstrap, linger_ms=20, batch_num_messages=10_000))

    def forward(batch: list) -> None:
        for message in batch:
            while True:
                try:
                    producer.produce(sink, key=message.key(), value=message.value())
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)

    rate = consume_records(bootstrap, source, count, on_batch=forward)
    started = time.perf_counter()
    if producer.flush(120) != 0:
        raise click.ClickException(f"not every record to {sink} was acknowledged")
    return Rate("passthrough", count, rate.seconds + time.perf_counter() - started)


def broker_rates(bootstrap: str, count: int) -> list[Rate]:
    """Raw produce, consume and consume -> produce rates of one broker, on fresh topics."""
    source, sink = (f"bench-{uuid.uuid4().hex[:8]}-{kind}" for kind in ("in", "out"))
    create_topics(bootstrap, source, sink)
    return [
        produce_records(bootstrap, source, count),
        consume_records(bootstrap, source, count),
        passthrough(bootstrap, source, sink, count),
    ]


@contextmanager
def bench_stack(use_env: bool, services: tuple[str, ...]) -> Iterator[Addresses]:
    """The stack a benchmark measures: the environment's (`--use-env`), or a throwaway embedded one with an
    in-memory broker, so that runs compare the code and not whatever else the user's stack holds."""
    if use_env:
        yield Addresses.from_env()
        return
    with tempfile.TemporaryDirectory(prefix="fraudstream-bench-") as data_dir:
        with EmbeddedStack.on_free_ports(data_dir, ephemeral=True, services=services) as stack:
            yield stack.addresses


def print_ratios(rates: list[Rate]) -> None:
    """A table of rates, each as a ratio to the first (the baseline)."""
    baseline = rates[0].per_second
    table = Table("path", "events", "seconds", "events/s", f"ratio to {rates[0].name}")
    for rate in rates:
        table.add_row(
            rate.name,
            f"{rate.events:,}",
            f"{rate.seconds:.2f}",
            f"{rate.per_second:,.0f}",
            f"{rate.per_second / baseline:.2f}",
        )
    console.print(table)
