"""The Handbook's evaluation protocol: a gap of one label delay between training and test, card precision@k."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.protocol import DAY_MS, card_precision_at_k, delayed_split, protocol_metrics

START = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def frame(days: int = 30, per_day: int = 4) -> pd.DataFrame:
    times = [START + d * DAY_MS + h * 3_600_000 for d in range(days) for h in range(per_day)]
    return pd.DataFrame({"EVENT_TIME": times, "CUSTOMER_ID": [str(i % 3) for i in range(len(times))],
                         "Class": [int(i % 5 == 0) for i in range(len(times))]})  # fmt: skip


def test_the_test_period_starts_one_delay_after_training_ends_and_every_training_label_is_known_by_then() -> None:
    split = delayed_split(frame(), START + 2 * DAY_MS, train_days=10, test_days=5, delay_days=7)
    train_days = set(split.train["EVENT_TIME"] // DAY_MS - START // DAY_MS)
    test_days = set(split.test["EVENT_TIME"] // DAY_MS - START // DAY_MS)
    assert train_days == set(range(2, 12)) and test_days == set(range(19, 24))
    assert (split.train["EVENT_TIME"] + 7 * DAY_MS <= split.test_start_ms).all()  # labels known before testing
    assert split.describe()["gap_days"] == 7 and split.train_end_ms == START + 12 * DAY_MS


def test_an_empty_period_is_an_error() -> None:
    with pytest.raises(ValueError, match="test period has no rows"):
        delayed_split(frame(days=15), START, train_days=10, test_days=5, delay_days=7)


def test_card_precision_counts_cards_per_day_at_their_highest_score_out_of_k() -> None:
    test = pd.DataFrame(
        {
            "EVENT_TIME": [START, START + 1, START + 2, START + 3, START + DAY_MS, START + DAY_MS + 1],
            "CUSTOMER_ID": ["a", "a", "b", "c", "a", "b"],
            "Class": [0, 1, 0, 0, 0, 1],
        }
    )
    scores = np.array([0.9, 0.1, 0.8, 0.2, 0.3, 0.7])
    # day 1: top 2 cards are a (0.9, frauded that day) and b (0.8, not): 1/2; day 2: b (fraud) then a: 1/2
    assert card_precision_at_k(test, scores, k=2) == pytest.approx(0.5)
    # k = 1: day 1 a is frauded (1), day 2 b is frauded (1)
    assert card_precision_at_k(test, scores, k=1) == pytest.approx(1.0)
    # k larger than the cards of a day: still out of k, as the Handbook counts
    assert card_precision_at_k(test, scores, k=4) == pytest.approx((1 / 4 + 1 / 4) / 2)


def test_protocol_metrics_rank_a_perfect_score_perfectly() -> None:
    test = frame()
    metrics = protocol_metrics(test, test["Class"].to_numpy(dtype=float), k=1)
    assert metrics.roc_auc == 1.0 and metrics.average_precision == 1.0 and metrics.test_days == 30
    assert metrics.frauds == int(test["Class"].sum())
    only_genuine = test.assign(Class=0)
    assert protocol_metrics(only_genuine, np.zeros(len(test))).roc_auc is None
