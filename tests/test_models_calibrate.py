"""Threshold calibration as a versioned artifact."""

import json

import numpy as np
import pytest

from models.calibrate import Threshold, calibrate, for_alert_rate, for_precision, is_alert, recalibrate


@pytest.fixture
def validation():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(990, dtype=int), np.ones(10, dtype=int)]
    scores = np.r_[rng.normal(1.0, 0.3, 990), rng.normal(4.0, 1.0, 10)]
    return scores, y


def test_alert_rate_flags_that_share_of_validation_rows(validation):
    scores, y = validation
    t = for_alert_rate(scores, 0.005, y, model_version="v3")
    assert is_alert(scores, t.value).sum() == 5
    assert t.method == "alert_rate" and t.target == 0.005 and t.model_version == "v3" and t.version == 1
    assert t.achieved["alert_rate"] == 0.005 and t.achieved["precision"] == 1.0 and t.achieved["recall"] == 0.5


def test_precision_target_gives_the_most_recall_at_that_precision(validation):
    scores, y = validation
    t = for_precision(scores, y, 0.5)
    alerts = is_alert(scores, t.value)
    precision = (alerts & (y == 1)).sum() / alerts.sum()
    assert precision >= 0.5 and t.achieved["precision"] == precision
    # Brute force over every possible cut: none reaching the target has more recall.
    best_recall = 0.0
    for cut in np.r_[scores, -np.inf]:
        flagged = scores > cut
        if flagged.any() and (flagged & (y == 1)).sum() / flagged.sum() >= 0.5:
            best_recall = max(best_recall, (flagged & (y == 1)).sum() / 10)
    assert t.achieved["recall"] == best_recall > 0


def test_precision_that_cannot_be_reached_is_an_error():
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    y = np.array([0, 1, 0, 0])
    with pytest.raises(ValueError, match="no threshold reaches precision 0.9 .*best 0.500"):
        for_precision(scores, y, 0.9)
    with pytest.raises(ValueError, match="no frauds"):
        for_precision(scores, np.zeros(4), 0.5)


def test_ties_alert_together():
    scores = np.array([5.0, 5.0, 5.0, 1.0])
    t = for_alert_rate(scores, 0.25)  # one row wanted, but three tie: none can be told apart, none alert
    assert is_alert(scores, t.value).sum() == 0 and t.achieved["alert_rate"] == 0.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="between 0 and 1"):
        for_alert_rate(np.ones(3), 1.5)
    with pytest.raises(ValueError, match="NaN"):
        for_alert_rate(np.array([1.0, np.nan]), 0.5)
    with pytest.raises(ValueError, match="needs labels"):
        calibrate(np.ones(3), "precision", 0.5)
    with pytest.raises(ValueError, match="method must be one of"):
        calibrate(np.ones(3), "gut-feeling", 0.5)


def test_json_round_trip(validation, tmp_path):
    scores, y = validation
    t = for_alert_rate(scores, 0.01, y, model_version="v1")
    path = t.save(tmp_path)
    assert json.loads(path.read_text())["value"] == t.value
    assert Threshold.load(tmp_path) == t == Threshold.load(path)


def test_recalibration_bumps_the_version_and_keeps_the_model(validation):
    scores, y = validation
    first = for_alert_rate(scores, 0.005, y, model_version="v7")
    second = recalibrate(first, scores * 2, y)
    assert second.version == 2 and second.model_version == "v7" and second.method == "alert_rate"
    assert second.value == pytest.approx(2 * first.value)
    third = recalibrate(second, scores, y, method="precision", target=0.8)
    assert third.version == 3 and third.method == "precision" and third.achieved["precision"] >= 0.8
