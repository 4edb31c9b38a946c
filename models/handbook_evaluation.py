"""The handbook pipeline's measurement: each model kind on each feature set, by the Handbook's protocol.

Feature sets are frames with the served columns (or the raw fields alone), CUSTOMER_ID, EVENT_TIME and the
label; each is split the same way (`models.protocol.delayed_split`), each kind is fitted on the training
period and scored on the test period, and the table says ROC-AUC, average precision and card precision@k.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from models.features import LABEL_COLUMN
from models.kinds import create_model
from models.protocol import (
    DEFAULT_DELAY_DAYS,
    DEFAULT_TOP_K,
    ProtocolMetrics,
    delayed_split,
    protocol_metrics,
    rows_between,
)
from models.reference import EVENT_TIME_COLUMN, ID_COLUMN

logger = logging.getLogger(__name__)

KINDS = ("logistic-baseline", "autoencoder")
IDENTITY_COLUMNS = ("CUSTOMER_ID", ID_COLUMN, EVENT_TIME_COLUMN, LABEL_COLUMN)


@dataclass(frozen=True)
class Period:
    """Where the protocol's periods lie: training starts ``warmup_days`` after the first transaction."""

    warmup_days: int
    train_days: int
    test_days: int
    delay_days: int = DEFAULT_DELAY_DAYS


@dataclass(frozen=True)
class Row:
    features: str
    kind: str
    metrics: ProtocolMetrics


def evaluate_feature_sets(
    sets: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]],
    start_ms: int,
    period: Period,
    kinds: Sequence[str] = KINDS,
    k: int = DEFAULT_TOP_K,
    params: Mapping[str, dict] | None = None,
) -> list[Row]:
    """Every kind on every feature set; ``sets`` maps a name to (the rows trained on, the rows tested on).

    The two frames of a set may differ (the training rows carry only the labels known when training would
    run); each is cut to its own period, so a training row never lies in the gap or the test period.
    """
    rows = []
    train_start = start_ms + period.warmup_days * 86_400_000
    for name, (known, complete) in sets.items():
        split = delayed_split(complete, train_start, period.train_days, period.test_days, period.delay_days)
        train, test = rows_between(known, split.train_start_ms, split.train_end_ms), split.test
        if len(train) != len(split.train):
            logger.warning("%s: %d training rows have labels at the cutoff, of %d", name, len(train), len(split.train))
        for kind in kinds:
            model = create_model(kind, **(params or {}).get(kind, {}))
            model.fit(train)
            metrics = protocol_metrics(test, model.score_samples(test), k)
            logger.info("%s on %s: %s", kind, name, metrics)
            rows.append(Row(name, kind, metrics))
    return rows


def only(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``frame`` with the given inputs and its identity columns only (what a model is fitted on)."""
    return frame[[*columns, *(c for c in IDENTITY_COLUMNS if c in frame.columns)]]


def table(rows: Sequence[Row]) -> list[list[str]]:
    """The rows as text cells: features, model, ROC-AUC, AP, card precision@k, test rows and frauds."""

    def number(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    return [
        [r.features, r.kind, number(r.metrics.roc_auc), number(r.metrics.average_precision),
         number(r.metrics.card_precision_at_k), f"{r.metrics.rows:,}", f"{r.metrics.frauds:,}"]
        for r in rows
    ]  # fmt: skip
