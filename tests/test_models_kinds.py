"""The registry of model kinds (models/kinds.py): one registration makes a kind known to training, loading,
the model registry, the CLI's --kind and the workers; unknown names are clear errors. Pure logic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from models import kinds
from models.artifacts import META_FILE, load_model, read_metadata
from models.calibrate import Threshold
from models.cli import train_command
from models.datasets import GeneratedSource
from models.features import FeatureSet, feature_matrix
from models.kinds import (
    FraudModel,
    UnknownKindError,
    canonical_kind,
    create_model,
    kind_class,
    kind_names,
    kind_parameters,
    register_kind,
)
from models.registry import ModelRegistry, RegistryError
from models.training import train
from streams.modelsource import scoring_model


class AmountModel:
    """The smallest kind that keeps the protocol: a payment's score is its amount."""

    kind = "amount"
    score_label = "amount"

    def __init__(self, scale: float = 1.0, seed: int = 0) -> None:
        self.scale = scale
        self.seed = seed
        self.feature_names: tuple[str, ...] = ()
        self.training_seconds_: float | None = None

    def fit(self, X: Any, y: Any = None, *, on_epoch: Any = None) -> AmountModel:
        self.feature_names = FeatureSet.learn(X).names  # learnt from the frame, as every kind does
        self.training_seconds_ = 0.0
        return self

    def score_samples(self, X: Any) -> np.ndarray:
        return self.matrix_scorer()(feature_matrix(X, self.feature_names, np.float64))

    def matrix_scorer(self):
        amount = [n.lower() for n in self.feature_names].index("amount")
        return lambda x: np.asarray(x, dtype=np.float64)[:, amount] * self.scale

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"scale": self.scale, "seed": self.seed}

    def set_params(self, **params: Any) -> AmountModel:
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def save(self, directory: str | Path) -> Path:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        meta = {"kind": self.kind, "params": self.get_params(), "feature_names": list(self.feature_names)}
        (path / META_FILE).write_text(json.dumps(meta))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> AmountModel:
        meta = read_metadata(directory, cls.kind)
        model = cls(**meta["params"])
        model.feature_names = tuple(meta.get("feature_names", ()))
        return model


@pytest.fixture
def amount_kind(monkeypatch):
    """AmountModel registered as kind "amount" (formerly "by-amount") for one test."""
    monkeypatch.setattr(kinds, "_KINDS", dict(kinds._KINDS))
    monkeypatch.setattr(kinds, "_ALIASES", dict(kinds._ALIASES))
    register_kind("amount", AmountModel, aliases=("by-amount",))
    return "amount"


def test_the_built_in_kinds_keep_the_protocol_under_their_one_name():
    assert kind_names() == ("autoencoder", "logistic-baseline")
    for name in kind_names():
        cls = kind_class(name)
        assert cls.kind == name and cls.score_label and "seed" in kind_parameters(name)
        assert isinstance(create_model(name), FraudModel)
    assert kind_class("logistic-baseline").score_label == "fraud log-odds"  # decision_function, not a probability
    assert canonical_kind("baseline") == "logistic-baseline"  # the CLI's old spelling still resolves
    assert "epochs" in kind_parameters("autoencoder") and "epochs" not in kind_parameters("logistic-baseline")


def test_unknown_kinds_are_clear_errors(tmp_path):
    with pytest.raises(
        UnknownKindError, match=r"unknown model kind 'forest' \(known: autoencoder, logistic-baseline\)"
    ):
        create_model("forest")
    (tmp_path / META_FILE).write_text(json.dumps({"kind": "forest"}))
    with pytest.raises(UnknownKindError, match=f"{tmp_path}: unknown model kind 'forest'"):
        load_model(tmp_path)
    Threshold(1.0, "alert_rate", 0.01).save(tmp_path)
    with pytest.raises(RegistryError, match="unknown model kind 'forest'"):  # refused before any upload
        ModelRegistry("bucket", "http://127.0.0.1:1").register("m", tmp_path)


def test_a_registered_kind_is_offered_by_the_cli_and_found_by_load(amount_kind, tmp_path):
    assert kind_names()[-1] == "amount"
    runner = CliRunner()
    for spelling in ("amount", "by-amount"):  # accepted by --kind: the usage error is about --no-register
        result = runner.invoke(train_command, ["--generated", "10", "--kind", spelling, "--no-register"])
        assert result.exit_code == 2 and "--no-register needs --output-dir" in result.output
    result = runner.invoke(train_command, ["--generated", "10", "--kind", "forest"])
    assert "'forest' is not one of 'autoencoder', 'logistic-baseline', 'amount'" in result.output

    model = create_model("by-amount", scale=2.0)
    assert isinstance(model, AmountModel) and isinstance(model, FraudModel)
    model.save(tmp_path / "new")
    assert isinstance(load_model(tmp_path / "new"), AmountModel)
    (tmp_path / "old").mkdir()  # an artifact written under the kind's former name still loads
    (tmp_path / "old" / META_FILE).write_text(json.dumps({"kind": "by-amount", "params": {"scale": 3.0, "seed": 0}}))
    assert load_model(tmp_path / "old").scale == 3.0


def test_training_and_the_workers_use_a_kind_through_the_protocol(amount_kind, tmp_path):
    result = train(GeneratedSource(3000, seed=1, fraud_rate=0.03), create_model(amount_kind), output_dir=tmp_path)
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert card["model"]["kind"] == "amount" and card["training_seconds"] == 0.0
    scoring = scoring_model("m", 1, load_model(tmp_path), result.threshold)
    assert scoring.feature_names == result.model.feature_names and "AMOUNT" in scoring.feature_names
    x = np.zeros((2, len(scoring.feature_names)))
    x[:, scoring.feature_names.index("AMOUNT")] = [1.0, 1e9]
    scores, alerts = scoring.score(x)
    assert scoring.kind == "amount" and scores.tolist() == [1.0, 1e9] and alerts.tolist() == [False, True]


def test_registrations_are_checked(amount_kind):
    with pytest.raises(ValueError, match="'by-amount' is already registered"):
        register_kind("other", AmountModel, aliases=("by-amount",))
    register_kind("mislabelled", AmountModel)
    with pytest.raises(TypeError, match="registered as model kind 'mislabelled' but its kind attribute says 'amount'"):
        kind_class("mislabelled")
