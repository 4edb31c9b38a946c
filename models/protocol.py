"""The Fraud Detection Handbook's evaluation protocol: train on a period, skip one label delay, test on the next.

A model in production is trained on what was known when it was trained: the labels of the last week are not
known yet, so the test period starts one label delay after the training period ends, and every training
label was known by then. Beside ROC-AUC and average precision, the Handbook's card precision@k says what an
investigation team sees: each day, the k cards (customers) with the highest scores are checked, and the
share of them with a fraud that day is averaged over the test days.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from models.features import labels

DAY_MS = 86_400_000
DEFAULT_DELAY_DAYS = 7
DEFAULT_TOP_K = 100


@dataclass(frozen=True)
class DelayedSplit:
    """Rows of the training period and of the test period, the test period starting one delay after training ends."""

    train: pd.DataFrame
    test: pd.DataFrame
    train_start_ms: int
    test_start_ms: int
    test_end_ms: int
    delay_days: int

    @property
    def train_end_ms(self) -> int:
        return self.test_start_ms - self.delay_days * DAY_MS

    def describe(self) -> dict[str, Any]:
        def day(ms: int) -> str:
            return pd.Timestamp(ms, unit="ms", tz="UTC").isoformat()

        return {
            "method": "chronological with a gap of one label delay",
            "train": [day(self.train_start_ms), day(self.train_end_ms)],
            "gap_days": self.delay_days,
            "test": [day(self.test_start_ms), day(self.test_end_ms)],
            "train_rows": len(self.train),
            "test_rows": len(self.test),
        }


def delayed_split(
    frame: pd.DataFrame,
    train_start_ms: int,
    train_days: int,
    test_days: int,
    delay_days: int = DEFAULT_DELAY_DAYS,
    by: str = "EVENT_TIME",
) -> DelayedSplit:
    """Training rows in [start, start + train_days), test rows in [that + delay_days, + test_days); the gap is dropped.

    Times are milliseconds since the epoch (``by``, the served EVENT_TIME). A period with no rows is an error.
    """
    if min(train_days, test_days) <= 0 or delay_days < 0:
        raise ValueError(
            f"periods must be positive and the delay not negative: {train_days}, {test_days}, {delay_days}"
        )
    train_end = train_start_ms + train_days * DAY_MS
    test_start = train_end + delay_days * DAY_MS
    test_end = test_start + test_days * DAY_MS
    train = rows_between(frame, train_start_ms, train_end, by)
    test = rows_between(frame, test_start, test_end, by)
    for name, part in (("training", train), ("test", test)):
        if part.empty:
            raise ValueError(f"the {name} period has no rows")
    return DelayedSplit(train, test, train_start_ms, test_start, test_end, delay_days)


def rows_between(frame: pd.DataFrame, start_ms: int, end_ms: int, by: str = "EVENT_TIME") -> pd.DataFrame:
    """The rows whose time ``by`` (ms) is in [start_ms, end_ms)."""
    times = frame[by].to_numpy(dtype=np.int64)
    return frame[(times >= start_ms) & (times < end_ms)].reset_index(drop=True)


def card_precision_at_k(
    test: pd.DataFrame, scores: np.ndarray, k: int = DEFAULT_TOP_K, card: str = "CUSTOMER_ID", by: str = "EVENT_TIME"
) -> float:
    """Mean over test days of the share of frauded cards among the k cards with the highest scores that day.

    A card's score on a day is its highest transaction score, and it counts as frauded when any of its
    transactions that day is a fraud. The share is of k, as in the Handbook, even on a day with fewer cards.
    """
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    frame = pd.DataFrame(
        {
            "day": test[by].to_numpy(dtype=np.int64) // DAY_MS,
            "card": test[card].to_numpy(),
            "score": np.asarray(scores, dtype=np.float64),
            "fraud": labels(test),
        }
    )
    cards = frame.groupby(["day", "card"], sort=True).agg(score=("score", "max"), fraud=("fraud", "max")).reset_index()
    top = cards.sort_values(["day", "score"], ascending=[True, False], kind="stable").groupby("day").head(k)
    per_day = top.groupby("day")["fraud"].sum() / k
    return float(per_day.reindex(np.unique(frame["day"]), fill_value=0).mean())


@dataclass(frozen=True)
class ProtocolMetrics:
    rows: int
    frauds: int
    test_days: int
    roc_auc: float | None
    average_precision: float | None
    card_precision_at_k: float
    k: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def protocol_metrics(
    test: pd.DataFrame, scores: np.ndarray, k: int = DEFAULT_TOP_K, card: str = "CUSTOMER_ID", by: str = "EVENT_TIME"
) -> ProtocolMetrics:
    """ROC-AUC and average precision over the test period (None with one class only), and card precision@k."""
    y = labels(test)
    s = np.asarray(scores, dtype=np.float64)
    both = len(np.unique(y)) == 2
    return ProtocolMetrics(
        rows=len(y),
        frauds=int(y.sum()),
        test_days=int(len(np.unique(test[by].to_numpy(dtype=np.int64) // DAY_MS))),
        roc_auc=float(skm.roc_auc_score(y, s)) if both else None,
        average_precision=float(skm.average_precision_score(y, s)) if both else None,
        card_precision_at_k=card_precision_at_k(test, s, k, card, by),
        k=k,
    )
