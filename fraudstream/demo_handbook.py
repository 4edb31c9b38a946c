"""`fraudstream demo --pipeline handbook`: the demo on the Fraud Detection Handbook's pipeline instead of the flagship's.

What differs from the flagship's demo lives here: the transactions (the `synccfd` simulator's world, a first
stretch of days replayed at once, then the days after it without end), a first model when the registry has
none (the supervised baseline, on the offline reference's features of the month before the demo's first
day), and the pipeline's own worker (ksql/handbook/'s features in, handbook-scores out), started beside the
stack. The statements, the sinks, the replay with labels a week of event time later and the live view are
the flagship demo's, given this pipeline's topics.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from confluent_kafka import Consumer, TopicPartition
from rich.console import Console

from fraudstream.kafka import PROBE_LOGGING, consumer_config, end_offsets
from fraudstream.topics import (
    HANDBOOK_FEATURES_TOPIC,
    HANDBOOK_MODEL,
    HANDBOOK_SCORES_TOPIC,
    HANDBOOK_TRANSACTIONS_TOPIC,
)
from producers.handbook import DEFAULT_START, Transaction, frame_transactions, generate_transactions
from producers.payments import Rejected, new_run
from stack.embedded import WORKER, EmbeddedStack
from stack.supervisor import RunningService, free_port

if TYPE_CHECKING:
    from models.training import TrainingResult

logger = logging.getLogger(__name__)

#: The handbook worker's name beside the stack (`fraudstream status` lists it, `down` stops it).
HANDBOOK_WORKER = f"{WORKER}-handbook"
#: Its settings (streams/settings.py): this pipeline's features in, its scores out, its model and live quality.
WORKER_SETTINGS: dict[str, str] = {
    "INPUT_TOPIC": HANDBOOK_FEATURES_TOPIC,
    "SCORES_TOPIC": HANDBOOK_SCORES_TOPIC,
    "SHADOW_TOPIC": f"{HANDBOOK_SCORES_TOPIC}-shadow",
    "GROUP": "handbook-scoring",
    "MODEL": HANDBOOK_MODEL,
    "QUALITY_TABLE": "HANDBOOK_LIVE_QUALITY",
}
#: Days simulated at a time once the first stretch is replayed.
CHUNK_DAYS = 7
#: Days of the world before the demo's first one that a first model learns from (the 30-day windows fill up).
HISTORY_DAYS = 45

Item = Transaction | Rejected


class TransactionFeed:
    """The demo's transactions: ``days`` simulated days of ``customers`` (at most ``count`` of their transactions)
    replayed at once, then the following days, a week at a time, without end.

    The simulator seeds each customer's habits by the customer's id, so every stretch is the same world going
    on in time; its transaction ids restart at 0 in each, so ids are made unique to the run and the stretch.
    """

    noun = "transactions"

    def __init__(self, customers: int, days: int, count: int, start: date, seed: int = 0) -> None:
        self.customers = customers
        self.days = days
        self.count = count
        self.start = start
        self.seed = seed
        self.run = new_run()

    def first(self) -> tuple[Iterator[Item], str]:
        items = list(itertools.islice(self._simulate(self.start, self.days, self.seed, self.run), self.count))
        return items, (
            f"replaying up to {self.count:,} simulated transactions ({self.days} days of {self.customers:,} "
            f"customers from {self.start})"
        )

    def more(self) -> Iterator[Item]:
        for chunk in itertools.count(1):
            start = self.start + timedelta(days=self.days + (chunk - 1) * CHUNK_DAYS)
            yield from self._simulate(start, CHUNK_DAYS, self.seed + chunk, f"{self.run}-{chunk}")

    def _simulate(self, start: date, days: int, seed: int, tag: str) -> Iterator[Item]:
        frame = generate_transactions(self.customers, days, seed, start=start.isoformat())
        for item in frame_transactions(frame, f"synccfd(customers={self.customers}, days={days}, start={start})"):
            yield replace(item, id=f"{item.id}-{tag}") if isinstance(item, Transaction) else item


def resume_date(bootstrap_servers: str, topic: str = HANDBOOK_TRANSACTIONS_TOPIC) -> date:
    """The day after the newest transaction already in ``topic`` (DEFAULT_START when it is empty).

    A second demo on the same stack goes on in time: replaying the same days again would put two
    transactions of each customer at each moment in the customers' histories, and double their counts.
    """
    try:
        ends = end_offsets(bootstrap_servers, topic)
    except LookupError:
        ends = {}
    newest: datetime | None = None
    if any(ends.values()):
        consumer = Consumer(
            consumer_config(bootstrap_servers, "fraudstream-demo", enable_auto_commit=False) | PROBE_LOGGING
        )
        try:
            consumer.assign([TopicPartition(topic, p, end - 1) for p, end in ends.items() if end > 0])
            for _ in range(sum(end > 0 for end in ends.values())):
                message = consumer.poll(10)
                if message is None or message.error():
                    break
                stamp = datetime.fromtimestamp(message.timestamp()[1] / 1000, UTC)
                newest = stamp if newest is None else max(newest, stamp)
        finally:
            consumer.close()
    if newest is None:
        return date.fromisoformat(DEFAULT_START)
    return newest.date() + timedelta(days=1)


def train_first_model(customers: int, start: date, output_dir: Path) -> TrainingResult:
    """A first model for an empty registry: the supervised baseline (the Handbook's reference kind) on the offline
    reference's features of the HISTORY_DAYS before ``start``.

    No lake exists yet, and the offline features equal the statements' (the parity test holds them so).
    """
    from models.baseline import LogisticBaseline
    from models.datasets import Dataset
    from models.handbook_reference import served_features
    from models.training import train

    first_day = start - timedelta(days=HISTORY_DAYS)
    history = generate_transactions(customers, HISTORY_DAYS, seed=1, start=first_day.isoformat())
    frame = served_features(frame_transactions(history))
    description = {"source": {"kind": "handbook offline reference", "customers": customers, "days": HISTORY_DAYS,
                              "start": first_day.isoformat(), "seed": 1}}  # fmt: skip
    return train(Dataset(frame, description, []), LogisticBaseline(), output_dir=output_dir)


def ensure_worker(stack: EmbeddedStack, console: Console) -> RunningService:
    """The handbook's worker beside the stack: the one running, else a new one on the stack's worker port (or a
    free one, when the flagship's worker holds it)."""
    running = stack.attached.get(HANDBOOK_WORKER)
    if running is not None and running.healthy():
        return running
    if running is not None:
        stack.unregister(HANDBOOK_WORKER)
    flagship = stack.running.get(WORKER)
    port = free_port(stack.host) if flagship is not None and flagship.alive() else stack.ports[WORKER]
    console.print(
        f"starting the handbook's stream worker (Faust, {HANDBOOK_FEATURES_TOPIC} -> {HANDBOOK_SCORES_TOPIC})..."
    )
    settings = {**WORKER_SETTINGS, "DATA_DIR": str(stack.data_dir / "workers-handbook")}
    return stack.start_beside(stack.worker_spec(HANDBOOK_WORKER, port, settings))
