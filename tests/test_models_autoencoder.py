"""The Keras autoencoder and its NumPy scorer, trained for real on small generated data."""

import json
import zipfile

import keras
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.metrics import roc_auc_score

from fraudstream.statements import statements_hash
from models.autoencoder import Autoencoder
from models.features import FeatureMismatchError
from models.scorer import NumpyScorer, benchmark
from producers.generate import generate_payments


@pytest.fixture(scope="module")
def trained() -> Autoencoder:
    data = generate_payments(50_000, seed=11, fraud_rate=0.01)
    return Autoencoder(epochs=4, seed=5).fit(data)


@pytest.fixture(scope="module")
def held_out() -> pd.DataFrame:
    return generate_payments(20_000, seed=12, fraud_rate=0.01)


def test_default_network_shape():
    ae = Autoencoder(epochs=1).fit(generate_payments(500, seed=1))
    dense = [layer for layer in ae.model_.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [14, 7, 7, 30]
    assert [keras.activations.serialize(layer.activation) for layer in dense] == ["tanh", "relu", "tanh", "linear"]
    assert isinstance(dense[0].activity_regularizer, keras.regularizers.L1)
    assert all(layer.activity_regularizer is None for layer in dense[1:])
    assert ae.model_.loss == "mse" and isinstance(ae.model_.optimizer, keras.optimizers.Adam)


def test_separates_fraud_on_held_out_generated_data(trained, held_out):
    scores = trained.score_samples(held_out)
    auc = roc_auc_score(held_out["Class"], scores)
    assert auc >= 0.95, auc
    assert scores[held_out["Class"] == 1].mean() > 2 * scores[held_out["Class"] == 0].mean()


def test_trains_on_legitimate_rows_only(trained):
    assert trained.training_rows_ == 50_000 - 500
    assert [set(epoch) for epoch in trained.history_] == [{"loss", "val_loss", "seconds"}] * 4


def test_inputs_are_learnt_from_the_training_frame_and_all_standardised_on_training_rows(trained):
    data = generate_payments(50_000, seed=11, fraud_rate=0.01)
    expected = tuple(c for c in data.columns if c not in ("Id", "Timestamp", "User", "Class"))
    assert trained.feature_names == expected and list(trained.feature_names_in_) == list(expected)
    legit = data[data["Class"] == 0]
    stats = trained.scaler_.to_dict()["standardised"]
    assert set(stats) == set(expected)
    assert stats["V3"]["mean"] == pytest.approx(legit["V3"].mean())
    assert stats["Amount"]["mean"] == pytest.approx(legit["Amount"].mean())
    assert stats["Time"]["scale"] == pytest.approx(legit["Time"].std(ddof=0))


def test_numpy_scorer_equals_keras_for_every_batch_type(trained, held_out):
    reference = trained.keras_scores(held_out)
    fast = trained.scorer()
    for batch in (
        held_out,
        held_out[list(trained.feature_names)].to_numpy(),
        pa.Table.from_pandas(held_out),
        pa.RecordBatch.from_pandas(held_out),
    ):
        np.testing.assert_allclose(fast(batch), reference, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(trained.scorer(np.float64)(held_out), reference, rtol=1e-5, atol=1e-5)


def test_mismatched_batch_is_refused(trained, held_out):
    with pytest.raises(FeatureMismatchError, match="missing \\['V3'\\]"):
        trained.score_samples(held_out.drop(columns=["V3"]))


def test_save_and_load_round_trip_without_pickles(trained, held_out, tmp_path):
    trained.save(tmp_path / "ae")
    assert sorted(p.name for p in (tmp_path / "ae").iterdir()) == ["model.json", "model.keras"]
    meta = json.loads((tmp_path / "ae" / "model.json").read_text())
    assert meta["kind"] == "autoencoder" and meta["feature_names"] == list(trained.feature_names)
    assert [f["name"] for f in meta["features"]] == list(trained.feature_names)
    assert {f["type"] for f in meta["features"]} == {"long", "double"}  # generated Time is an integer column
    assert meta["ksql_sha256"] == statements_hash()
    with zipfile.ZipFile(tmp_path / "ae" / "model.keras") as archive:
        assert not [n for n in archive.namelist() if n.endswith((".pkl", ".pickle"))]
    loaded = Autoencoder.load(tmp_path / "ae")
    np.testing.assert_array_equal(loaded.score_samples(held_out), trained.score_samples(held_out))
    assert loaded.get_params() == trained.get_params()
    assert loaded.features_ == trained.features_


def test_an_artifact_saved_before_feature_types_still_loads(trained, held_out, tmp_path):
    trained.save(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "model.json").read_text())
    del meta["features"], meta["ksql_sha256"]
    meta["params"]["feature_names"] = meta["feature_names"]  # where older files also had them
    (tmp_path / "old" / "model.json").write_text(json.dumps(meta))
    loaded = Autoencoder.load(tmp_path / "old")
    assert loaded.feature_names == trained.feature_names and loaded.features_.types is None
    np.testing.assert_array_equal(loaded.score_samples(held_out), trained.score_samples(held_out))


def test_other_columns_make_another_model():
    data = generate_payments(2_000, seed=3).drop(columns=["Time"]).assign(HOUR_OF_DAY=lambda d: d["V1"].abs() % 24)
    ae = Autoencoder(epochs=1).fit(data)
    assert ae.feature_names == (*(f"V{i}" for i in range(1, 29)), "Amount", "HOUR_OF_DAY")
    assert ae.model_.inputs[0].shape[-1] == 30 and ae.scorer()(data).shape == (2_000,)
    with pytest.raises(FeatureMismatchError, match="missing \\['HOUR_OF_DAY'\\]"):
        ae.score_samples(generate_payments(10, seed=4))


def test_loading_checks_the_kind(tmp_path):
    (tmp_path / "model.json").write_text(json.dumps({"kind": "logistic-baseline"}))
    with pytest.raises(ValueError, match="not an 'autoencoder'"):
        Autoencoder.load(tmp_path)


def test_epoch_progress_is_reported():
    seen = []
    Autoencoder(epochs=2).fit(generate_payments(400, seed=2), on_epoch=lambda e, n, logs: seen.append((e, n, logs)))
    assert [(e, n) for e, n, _ in seen] == [(1, 2), (2, 2)]
    assert all(logs["loss"] > 0 and logs["seconds"] > 0 for _, _, logs in seen)


def test_params_in_scikit_learn_style():
    ae = Autoencoder()
    assert ae.get_params()["hidden"] == [14, 7, 7] and ae.get_params()["l1"] == 1e-5
    ae.set_params(hidden=(8, 4), activations=("tanh", "relu"), l1=1e-4)
    assert ae.hidden == (8, 4) and ae.l1 == 1e-4
    with pytest.raises(ValueError, match="unknown parameters \\['depth'\\]"):
        ae.set_params(depth=3)


def test_untrained_model_says_so():
    with pytest.raises(RuntimeError, match="not trained"):
        Autoencoder().score_samples(np.zeros((1, 30)))


def test_scorer_rejects_unknown_activations(trained):
    layers = trained.scorer()._layers
    from models.scorer import DenseLayer

    with pytest.raises(ValueError, match="not supported.*'swish'"):
        NumpyScorer([DenseLayer(layers[0][0], layers[0][1], "swish")], trained.scaler_)


def test_benchmark_reports_rows_per_second(trained):
    for kind in ("numpy", "pandas", "arrow"):
        result = benchmark(trained.scorer(), rows=2_000, batch_size=1_000, kind=kind)
        assert result["rows"] == 2_000 and result["rows_per_second"] > 0
    calls = []
    result = benchmark(trained.scorer(), rows=2_000, reference=lambda x: calls.append(x.shape))
    assert calls == [(1_000, 30)] * 3  # warm-up + two batches
    assert result["speedup"] == result["rows_per_second"] / result["reference_rows_per_second"]


def test_random_scorer_for_benchmarks_has_the_default_shape():
    scorer = NumpyScorer.random(seed=1)
    scores = scorer(np.zeros((5, 30)))
    assert scores.shape == (5,) and (scores > 0).all()
    assert benchmark(rows=1_000, kind="numpy")["rows"] == 1_000
