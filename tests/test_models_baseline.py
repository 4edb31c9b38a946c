"""The scikit-learn baseline: same API as the autoencoder, persisted with skops against trusted types."""

import json

import numpy as np
import pytest
import skops.io
from sklearn.metrics import roc_auc_score
from sklearn.tree import DecisionTreeClassifier

from models.artifacts import artifact_files, load_model
from models.baseline import LogisticBaseline
from models.calibrate import ALERT_RATE, calibrate, is_alert
from producers.generate import generate_payments


@pytest.fixture(scope="module")
def data():
    return generate_payments(8_000, seed=21, fraud_rate=0.02), generate_payments(4_000, seed=22, fraud_rate=0.02)


def test_learns_fraud_from_labels(data):
    train, test = data
    model = LogisticBaseline().fit(train)
    scores = model.score_samples(test)
    assert roc_auc_score(test["Class"], scores) >= 0.95


def test_scores_are_log_odds_so_a_calibrated_threshold_raises_alerts(data):
    train, test = data
    model = LogisticBaseline().fit(train)
    scores = model.score_samples(test)
    probabilities = model.pipeline_.predict_proba(test[list(model.feature_names)].to_numpy())[:, 1]
    np.testing.assert_allclose(1 / (1 + np.exp(-scores)), probabilities, rtol=1e-9, atol=1e-12)
    threshold = calibrate(scores, ALERT_RATE, 0.005)
    assert 0 < is_alert(scores, threshold.value).sum() <= int(0.005 * len(scores)) + 1


def test_needs_both_classes(data):
    train, _ = data
    with pytest.raises(ValueError, match="both legitimate and fraudulent"):
        LogisticBaseline().fit(train[train["Class"] == 0])


def test_save_load_round_trip_and_generic_loader(data, tmp_path):
    train, test = data
    model = LogisticBaseline(C=0.5).fit(train)
    model.save(tmp_path)
    assert [str(p) for p in artifact_files(tmp_path)] == ["model.json", "model.skops"]
    assert json.loads((tmp_path / "model.json").read_text())["kind"] == "logistic-baseline"
    loaded = load_model(tmp_path)
    assert isinstance(loaded, LogisticBaseline) and loaded.C == 0.5
    np.testing.assert_array_equal(loaded.score_samples(test), model.score_samples(test))


def test_refuses_types_outside_the_trusted_list(data, tmp_path):
    train, _ = data
    LogisticBaseline().fit(train).save(tmp_path)
    # Swap in a different estimator: skops must refuse it rather than build it.
    skops.io.dump(DecisionTreeClassifier().fit([[0.0], [1.0]], [0, 1]), tmp_path / "model.skops")
    with pytest.raises(skops.io.exceptions.UntrustedTypesFoundException):
        LogisticBaseline.load(tmp_path)


def test_unknown_kind_is_a_clear_error(tmp_path):
    (tmp_path / "model.json").write_text(json.dumps({"kind": "forest"}))
    with pytest.raises(ValueError, match="unknown model kind 'forest'"):
        load_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a saved model"):
        load_model(tmp_path / "nowhere")


def test_labels_taken_from_an_arrow_table(data):
    import pyarrow as pa

    train, test = data
    from_arrow = LogisticBaseline().fit(pa.Table.from_pandas(train))
    np.testing.assert_allclose(from_arrow.score_samples(test), LogisticBaseline().fit(train).score_samples(test))
    with pytest.raises(ValueError, match="supervised"):
        LogisticBaseline().fit(train.drop(columns=["Class"]))
