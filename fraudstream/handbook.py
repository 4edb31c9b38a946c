"""`fraudstream handbook evaluate` and `fraudstream bench handbook`: the handbook pipeline measured on a real stack.

The transactions go through the statements of `ksql/handbook/` on a ksqlDB (a throwaway embedded stack, or
the environment's), the served features come back as training sets do (features ⋈ labels known at a
cutoff), and the Handbook's protocol measures each model kind on them, on the offline reference's features
and on the raw fields alone. The rate of the features, from the first transaction sent to the last feature
served, is printed beside a raw confluent-kafka passthrough of the same records in the same run.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import pandas as pd
from rich.table import Table

from fraudstream.bench.passthrough import Rate, bench_stack, console, passthrough, print_ratios
from fraudstream.config import Addresses
from fraudstream.kafka import end_offsets
from fraudstream.statements import statements_hash
from models.datasets import KafkaSource, ServedSource, load_dataset
from models.handbook_evaluation import Period, evaluate_feature_sets, only, table
from models.handbook_reference import (
    CUSTOMER_COLUMNS,
    FEATURE_COLUMNS,
    OWN_COLUMNS,
    RAW_COLUMNS,
    TERMINAL_COLUMNS,
    raw_fields,
    served_features,
)
from models.protocol import DAY_MS
from producers.handbook import Transaction, frame_transactions, generate_transactions
from producers.payments import Rejected
from producers.replay import replay

logger = logging.getLogger(__name__)

STATEMENTS = Path(__file__).resolve().parent.parent / "ksql" / "handbook"
SERVICES = ("objectstore", "broker", "schema-registry", "ksqldb")
#: The statements over the scores (live quality) need a worker's scores schema first; the features do not.
SCORES_STATEMENTS = ("090-live-quality.sql",)


def feature_statements(directory: Path = STATEMENTS) -> list[Path]:
    """The statement files that compute the features, in the order they are applied."""
    return [p for p in sorted(directory.glob("*.sql")) if p.name not in SCORES_STATEMENTS]


@dataclass
class Streamed:
    """The served features of one run through the statements, and how fast they came."""

    features: str
    labels: str
    rates: list[Rate]


def stream_features(
    addresses: Addresses, items: Sequence[Transaction | Rejected], statements: Path = STATEMENTS, timeout: float = 7200
) -> Streamed:
    """Apply the statements under a fresh prefix, replay ``items`` (labels a week later), wait for every feature."""
    from stack.ksqldb.apply import KsqlRest

    prefix = f"run{uuid.uuid4().hex[:6]}_"
    client = KsqlRest(addresses.ksqldb_url)
    for path in feature_statements(statements):
        answer = client.ksql(
            path.read_text().replace("handbook_", f"{prefix}handbook_"), {"auto.offset.reset": "earliest"}
        )
        errors = [a for a in answer if "errorMessage" in a]
        if errors:
            raise click.ClickException(f"{path.name}: {errors[0]['message']}")
    source, labels, features = (f"{prefix}handbook_{name}" for name in ("transactions", "labels", "features"))
    count = sum(isinstance(item, Transaction) for item in items)
    started = time.perf_counter()
    summary = replay(items, bootstrap_servers=addresses.bootstrap_servers, topic=source, labels_topic=labels)
    if not summary.ok:
        raise click.ClickException(f"the replay failed: {summary.errors}")
    deadline = time.monotonic() + timeout
    while _size(addresses.bootstrap_servers, features) < count:
        if time.monotonic() > deadline:
            raise click.ClickException(f"{features} has not served every transaction after {timeout:.0f} s")
        time.sleep(0.5)
    served = Rate("replay -> ksql/handbook features", count, time.perf_counter() - started)
    raw = passthrough(addresses.bootstrap_servers, source, f"{prefix}passthrough", count)
    return Streamed(features, labels, [raw, served])


def _size(bootstrap: str, topic: str) -> int:
    try:
        return sum(end_offsets(bootstrap, topic).values())
    except LookupError:
        return 0


def served_at(addresses: Addresses, streamed: Streamed, cutoff_ms: int) -> pd.DataFrame:
    """The point-in-time set: the features as served, with the labels known at ``cutoff_ms``."""
    features = KafkaSource(streamed.features, None, addresses.bootstrap_servers, addresses.schema_registry_url)
    labels = KafkaSource(streamed.labels, None, addresses.bootstrap_servers, value_format="json")
    cutoff = pd.Timestamp(cutoff_ms, unit="ms", tz="UTC").isoformat()
    return load_dataset(ServedSource(features, labels, cutoff, statements_hash(STATEMENTS))).frame


def agreement(streamed: pd.DataFrame, offline: pd.DataFrame) -> dict[str, float]:
    """The share of transactions whose streamed features equal the offline ones, per group of features."""
    merged = offline.merge(streamed, on="ID", suffixes=("", "_streamed"))
    shares = {"transactions matched": len(merged) / max(len(offline), 1)}
    for name, columns in (("own", OWN_COLUMNS), ("customer", CUSTOMER_COLUMNS), ("terminal", TERMINAL_COLUMNS)):
        equal = np.ones(len(merged), bool)
        for c in columns:
            equal &= np.isclose(
                merged[c].to_numpy(float), merged[f"{c}_streamed"].to_numpy(float), rtol=1e-9, atol=1e-9
            )
        shares[name] = float(equal.mean()) if len(merged) else 0.0
    return shares


@click.command("evaluate")
@click.option("--customers", type=click.IntRange(min=64), default=1000, show_default=True)
@click.option("--days", type=click.IntRange(min=1), default=90, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--warmup-days", type=click.IntRange(min=0), default=37, show_default=True,
              help="Days before training starts (the 30-day windows, a week behind, fill up).")  # fmt: skip
@click.option("--train-days", type=click.IntRange(min=1), default=25, show_default=True)
@click.option("--test-days", type=click.IntRange(min=1), default=21, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True, help="Autoencoder epochs.")
@click.option("--use-env", is_flag=True, help="Use the stack at the environment's addresses, not a throwaway one.")
def evaluate_command(
    customers: int, days: int, seed: int, warmup_days: int, train_days: int, test_days: int, epochs: int, use_env: bool
) -> None:
    """Measure the handbook pipeline by the Handbook's protocol: each model on the streamed, offline and raw features."""
    period = Period(warmup_days, train_days, test_days)
    if warmup_days + train_days + period.delay_days + test_days > days:
        raise click.ClickException(f"warm-up, training, a {period.delay_days}-day gap and test exceed {days} days")
    console.print(f"simulating {customers:,} customers over {days} days (seed {seed})...")
    items = list(frame_transactions(generate_transactions(customers, days, seed)))
    offline = served_features(items)
    start_ms = int(offline["EVENT_TIME"].min() // DAY_MS * DAY_MS)
    test_start = start_ms + (warmup_days + train_days + period.delay_days) * DAY_MS
    console.print(
        f"{len(offline):,} transactions, {int(offline['Class'].sum()):,} frauds; streaming them through ksql/handbook..."
    )
    with bench_stack(use_env, SERVICES) as addresses:
        streamed = stream_features(addresses, items)
        print_ratios(streamed.rates)
        known = served_at(addresses, streamed, test_start)  # what training would see: labels known when testing starts
        complete = served_at(addresses, streamed, int(offline["EVENT_TIME"].max()) + 8 * DAY_MS)
    shares = agreement(complete, offline)
    console.print(
        "streamed features equal to the offline reference: " + ", ".join(f"{k} {v:.1%}" for k, v in shares.items())
    )
    sets = {
        "ksql/handbook (streamed)": (only(known, FEATURE_COLUMNS), only(complete, FEATURE_COLUMNS)),
        "offline reference": (only(offline, FEATURE_COLUMNS),) * 2,
        "raw fields": (only(raw_fields(offline), RAW_COLUMNS),) * 2,
    }
    rows = evaluate_feature_sets(sets, start_ms, period, params={"autoencoder": {"epochs": epochs}})
    result = Table("features", "model", "ROC-AUC", "AP", "CP@100", "test rows", "test frauds")
    for cells in table(rows):
        result.add_row(*cells)
    console.print(result)
