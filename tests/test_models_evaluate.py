"""Metrics, plots and the model card."""

import json

import numpy as np
import pytest

from fraudstream.statements import statements_hash
from models.evaluate import ModelCard, evaluate, library_versions, plot_all, recall_at_budget


def test_metrics_at_a_threshold():
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.05])
    m = evaluate(y, s, threshold=0.65, alert_budget=0.2)
    assert m.confusion == {"tn": 6, "fp": 1, "fn": 1, "tp": 2}
    assert m.precision == pytest.approx(2 / 3) and m.recall == pytest.approx(2 / 3) and m.f1 == pytest.approx(2 / 3)
    assert m.alert_rate == pytest.approx(0.3)
    # 3 frauds x 7 legitimate = 21 pairs: 0.7 and 0.8 each outrank 6 legitimate scores, 0.05 none.
    assert m.roc_auc == pytest.approx((6 + 6 + 0) / 21)
    assert m.recall_at_budget == pytest.approx(1 / 3)  # top 2 are 0.9 (legit) and 0.8 (fraud)


def test_one_class_leaves_ranking_metrics_undefined():
    m = evaluate(np.zeros(5), np.arange(5.0), threshold=2.5)
    assert m.roc_auc is None and m.average_precision is None and m.recall_at_budget is None


def test_recall_at_budget_rounds_up_to_one_alert():
    assert recall_at_budget(np.array([1, 0, 0]), np.array([3.0, 2.0, 1.0]), 0.005) == 1.0
    with pytest.raises(ValueError):
        recall_at_budget(np.array([1]), np.array([1.0]), 0.0)


def test_plots_are_png_files(tmp_path):
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(200, dtype=int), np.ones(5, dtype=int)]
    s = np.r_[rng.gamma(2, 0.5, 200), rng.gamma(9, 0.5, 5)]
    paths = plot_all(y, s, 3.0, tmp_path)
    assert set(paths) == {"roc", "pr", "error_by_class", "precision_recall_vs_threshold"}
    for path in paths.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_model_card_markdown_and_json(tmp_path):
    metrics = evaluate(np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.2, 0.8]), 0.5).to_dict()
    card = ModelCard(
        model={"kind": "autoencoder", "version": "v1", "params": {"epochs": 3}},
        dataset={"source": {"kind": "csv", "path": "x.csv"}, "rows": 4, "fraud_rate": 0.5},
        metrics=metrics,
        threshold={"value": 0.5, "method": "alert_rate", "target": 0.5, "version": 1},
        training_seconds=1.5,
        ksql_sha256=statements_hash(),
    )
    json_path, md_path = card.save(tmp_path)
    data = json.loads(json_path.read_text())
    assert data["metrics"]["roc_auc"] == 1.0 and data["dataset"]["rows"] == 4
    assert data["libraries"]["keras"] == library_versions()["keras"]
    assert ModelCard.load(tmp_path).to_dict() == data
    text = md_path.read_text()
    assert "| ROC-AUC | 1.0000 |" in text and card.ksql_sha256 in text and "x.csv" in text
