"""Drift: the population stability index against a model's training reference, offline and in a worker."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from models.drift import Bins, DriftWindow, Reference, drift_report, drifted, psi, verdict
from streams import metrics
from streams.drift import DriftMonitor
from streams.modelsource import ScoringModel


def test_psi_of_known_shares():
    assert psi([0.5, 0.5], [50, 50]) == 0.0
    expected = 0.25 * math.log(0.5 / 0.25) + 0.25 * math.log(0.75 / 0.5)  # (a-e) ln(a/e), summed
    assert psi([0.5, 0.5], [25, 75]) == pytest.approx(expected)
    assert math.isnan(psi([0.5, 0.5], [0, 0]))
    assert math.isfinite(psi([0.5, 0.5], [0, 10]))  # an empty bin is floored, not infinite


def test_bins_are_training_deciles():
    bins = Bins.of(np.arange(1000.0))
    assert len(bins.edges) == 9 and bins.shares == pytest.approx([0.1] * 10)
    constant = Bins.of(np.full(100, 3.0))
    assert constant.edges == (3.0,) and sum(constant.shares) == pytest.approx(1.0)
    assert Bins.of(np.array([np.nan, np.inf])) == Bins((), (1.0,))


def _reference(rng: np.random.Generator, n: int = 20_000) -> tuple[Reference, np.ndarray, np.ndarray]:
    matrix = np.column_stack([rng.normal(size=n), rng.exponential(size=n), rng.integers(0, 24, n)])
    scores = rng.gamma(2.0, size=n)
    return Reference.fit(matrix, ("A", "B", "HOUR"), scores), matrix, scores


def test_the_same_population_is_stable_and_a_shift_is_flagged(tmp_path):
    rng = np.random.default_rng(0)
    reference, _, _ = _reference(rng)
    reference.save(tmp_path)
    assert Reference.load(tmp_path) == reference
    assert Reference.load(tmp_path / "missing") is None

    _, fresh, fresh_scores = _reference(np.random.default_rng(1), 5_000)
    same = drift_report(reference, fresh, ("A", "B", "HOUR"), fresh_scores)
    assert set(same) == {"A", "B", "HOUR", "score"}
    assert max(same.values()) < 0.05 and drifted(same) == []

    shifted = fresh.copy()
    shifted[:, 1] *= 3  # B's scale triples
    report = drift_report(reference, shifted, ("A", "B", "HOUR"), fresh_scores + 2)
    assert drifted(report) == sorted(["B", "score"], key=lambda n: -report[n])
    assert report["A"] < 0.05 and verdict(report["B"]) == "significant" and verdict(report["A"]) == "stable"


def test_a_window_reports_when_full_then_starts_again():
    rng = np.random.default_rng(2)
    reference, matrix, scores = _reference(rng)
    window = DriftWindow(reference, ("A", "B", "HOUR"), size=1000)
    assert window.add(matrix[:600], scores[:600]) is None
    report = window.add(matrix[600:1200], scores[600:1200])
    assert report is not None and window.rows == 0
    with pytest.raises(ValueError, match="no bins for C"):
        DriftWindow(reference, ("A", "C"), size=10)


def _model(reference: Reference | None, version: int = 1) -> ScoringModel:
    return ScoringModel(
        "drift-test", version, 1.0, 1, "test", None, lambda x: x[:, 0], ("A", "B", "HOUR"), None, reference
    )


def test_a_worker_exports_psi_per_input_and_warns_on_a_shift(caplog):
    rng = np.random.default_rng(3)
    reference, matrix, scores = _reference(rng)
    monitor = DriftMonitor(size=2000)
    model = _model(reference, version=7)
    shifted = matrix[:2000].copy()
    shifted[:, 0] += 2
    with caplog.at_level(logging.WARNING, logger="streams.drift"):
        assert monitor.observe(model, shifted[:1000], scores[:1000]) is None
        report = monitor.observe(model, shifted[1000:], scores[1000:2000])
    assert report is not None
    assert metrics.FEATURE_PSI.labels("drift-test", "7", "A")._value.get() == pytest.approx(report["A"])
    assert metrics.SCORE_PSI.labels("drift-test", "7")._value.get() == pytest.approx(report["score"])
    assert "A PSI" in caplog.text and "B PSI" not in caplog.text
    # A model without a reference scores as ever, with no drift metrics (and the old version's are gone).
    assert monitor.observe(_model(None, version=8), matrix[:2000], scores[:2000]) is None
    assert not [s for m in metrics.FEATURE_PSI.collect() for s in m.samples]
