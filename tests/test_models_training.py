"""Whole training runs: dataset description -> split -> fit -> calibrate -> evaluate -> artifacts."""

import json
import warnings

import numpy as np
import pytest

from models.artifacts import artifact_files, load_model
from models.autoencoder import Autoencoder
from models.baseline import LogisticBaseline
from models.calibrate import Threshold
from models.datasets import CsvSource, GeneratedSource
from models.drift import Reference
from models.split import UnevenSplitWarning
from models.training import train

ARTIFACTS = {
    "model.json",
    "threshold.json",
    "drift_reference.json",
    "model_card.json",
    "model_card.md",
    "roc.png",
    "pr.png",
    "error_by_class.png",
    "precision_recall_vs_threshold.png",
}


def test_same_description_and_seed_reproduce_the_metrics(tmp_path):
    source = GeneratedSource(12_000, seed=31, fraud_rate=0.02)
    runs = [train(source, Autoencoder(epochs=2, seed=4), output_dir=tmp_path / str(i)) for i in range(2)]
    first, second = (json.loads((tmp_path / str(i) / "model_card.json").read_text()) for i in range(2))
    assert first["metrics"] == second["metrics"] and first["threshold"]["value"] == second["threshold"]["value"]
    assert first["metrics"]["roc_auc"] >= 0.95

    def losses(result):
        return [(epoch["loss"], epoch["val_loss"]) for epoch in result.model.history_]

    assert losses(runs[0]) == losses(runs[1])
    other_seed = train(source, Autoencoder(epochs=2, seed=5))
    assert losses(other_seed) != losses(runs[0])


def test_autoencoder_end_to_end_on_the_real_sample(shared_data, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(
            CsvSource(str(shared_data / "creditcard_small.csv")),
            Autoencoder(epochs=3),
            output_dir=tmp_path,
            model_version="sample-1",
        )
    # 15 frauds in 999 rows cannot give 10 frauds to every part: the split says so.
    assert any(issubclass(w.category, UnevenSplitWarning) for w in caught)
    assert {str(p) for p in artifact_files(tmp_path)} == ARTIFACTS | {"model.keras"}
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert card["dataset"]["rows"] == 999 and card["dataset"]["frauds"] == 15
    assert card["dataset"]["split"]["method"] == "chronological" and card["dataset"]["split"]["warnings"]
    assert card["metrics"]["rows"] == 200 and card["training_seconds"] > 0
    assert card["threshold"]["model_version"] == "sample-1" and len(card["ksql_sha256"]) == 64
    assert card["metrics"] == result.metrics.to_dict()
    threshold = Threshold.load(tmp_path)
    assert threshold == result.threshold and threshold.method == "alert_rate" and threshold.target == 0.005
    reloaded = load_model(tmp_path)
    test = result.split.test
    np.testing.assert_allclose(reloaded.score_samples(test), result.model.score_samples(test))


def test_baseline_through_the_same_run(shared_data, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnevenSplitWarning)
        result = train(
            CsvSource(str(shared_data / "creditcard_small.csv")),
            LogisticBaseline(),
            split="random",
            seed=3,
            output_dir=tmp_path,
        )
    assert {str(p) for p in artifact_files(tmp_path)} == ARTIFACTS | {"model.skops"}
    assert result.card.model["kind"] == "logistic-baseline"
    assert result.card.dataset["split"]["seed"] == 3
    reference = Reference.load(tmp_path)
    assert reference == result.reference and list(reference.features) == list(result.model.feature_names)
    assert abs(sum(reference.score.shares) - 1) < 1e-9


def test_precision_calibration_and_bad_split_name():
    source = GeneratedSource(6_000, seed=32, fraud_rate=0.03)
    result = train(source, LogisticBaseline(), threshold_method="precision", threshold_target=0.5)
    assert result.threshold.method == "precision" and result.threshold.achieved["precision"] >= 0.5
    with pytest.raises(ValueError, match="split must be"):
        train(source, LogisticBaseline(), split="by-moon-phase")
