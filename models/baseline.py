"""A lightweight supervised baseline: standardise every input, then logistic regression on ``Class``.

It answers "is the autoencoder worth its cost?" through the same protocol (:class:`models.kinds.FraudModel`,
registered there as kind ``logistic-baseline``), evaluation and registry. Persisted with skops and loaded
against an explicit list of trusted types: never a pickle.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import skops.io
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from models.artifacts import META_FILE, read_metadata
from models.features import (
    LABEL_COLUMN,
    Batch,
    FeatureSet,
    LearntInputs,
    current_statements_hash,
    feature_matrix,
    has_label,
    labels,
)
from models.kinds import EpochCallback

KIND = "logistic-baseline"
MODEL_FILE = "model.skops"

#: The only types a saved baseline may contain; skops refuses to load anything else.
TRUSTED_TYPES: list[str] = [
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.linear_model._logistic.LogisticRegression",
]


class LogisticBaseline(LearntInputs):
    """``score_samples`` is the fraud log-odds, the logistic regression's ``decision_function`` (higher =
    more suspicious; the fraud probability is its logistic function).

    Log-odds rather than probabilities: far from the boundary probabilities round to exactly 1.0, and a
    threshold calibrated on tied scores would then raise no alert at all (alerts are `score > threshold`).
    """

    kind = KIND
    score_label = "fraud log-odds"

    def __init__(
        self,
        C: float = 1.0,
        class_weight: str | None = "balanced",
        max_iter: int = 1000,
        seed: int = 0,
    ) -> None:
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.seed = seed
        self.features_: FeatureSet | None = None
        self.pipeline_: Pipeline | None = None
        self.training_seconds_: float | None = None
        self.training_rows_: int | None = None

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {
            "C": self.C,
            "class_weight": self.class_weight,
            "max_iter": self.max_iter,
            "seed": self.seed,
        }

    def set_params(self, **params: Any) -> LogisticBaseline:
        unknown = set(params) - set(self.get_params())
        if unknown:
            raise ValueError(f"unknown parameters {sorted(unknown)}; valid: {sorted(self.get_params())}")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def fit(
        self, X: Batch, y: Sequence[int] | np.ndarray | None = None, *, on_epoch: EpochCallback | None = None
    ) -> LogisticBaseline:
        """Supervised: labels come from ``y`` or from the table's ``Class`` column; both classes must occur.

        The table's feature columns, in order, become the model's inputs. ``on_epoch`` is never called:
        the solver does not train in epochs.
        """
        features = FeatureSet.learn(X, current_statements_hash())
        x = feature_matrix(X, features.names, np.float64)
        if y is None:
            if not has_label(X):
                raise ValueError(f"the baseline is supervised: pass y or a table with a {LABEL_COLUMN!r} column")
            y = labels(X)
        y_arr = np.asarray(y)
        if y_arr.shape != (len(x),):
            raise ValueError(f"y has shape {y_arr.shape}, expected ({len(x)},)")
        if len(np.unique(y_arr)) < 2:
            raise ValueError("the baseline needs both legitimate and fraudulent rows to train")
        self.pipeline_ = Pipeline(
            [
                ("scale", StandardScaler()),
                (
                    "classify",
                    LogisticRegression(
                        C=self.C, class_weight=self.class_weight, max_iter=self.max_iter, random_state=self.seed
                    ),
                ),
            ]
        )
        started = time.perf_counter()
        self.pipeline_.fit(x, y_arr)
        self.features_ = features
        self.training_seconds_ = time.perf_counter() - started
        self.training_rows_ = int(len(x))
        return self

    def _check_fitted(self) -> None:
        if self.pipeline_ is None or self.features_ is None:
            raise RuntimeError("the baseline is not trained yet: call fit() or LogisticBaseline.load()")

    def score_samples(self, X: Batch) -> np.ndarray:
        """Per-row fraud log-odds (higher = more suspicious)."""
        self._check_fitted()
        return self.pipeline_.decision_function(feature_matrix(X, self.feature_names, np.float64))

    def matrix_scorer(self) -> Callable[[np.ndarray], np.ndarray]:
        """``score_samples`` itself: scaling and one matrix product, with no framework cost to avoid."""
        return self.score_samples

    def metadata(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "kind": KIND,
            "format": 1,
            **self.features_.to_metadata(),
            "params": self.get_params(),
            "training": {"seconds": self.training_seconds_, "rows": self.training_rows_},
            "sklearn_version": sklearn.__version__,
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``model.skops`` and ``model.json`` into ``directory``."""
        self._check_fitted()
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        skops.io.dump(self.pipeline_, path / MODEL_FILE)
        (path / META_FILE).write_text(json.dumps(self.metadata(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> LogisticBaseline:
        path = Path(directory)
        meta = read_metadata(path, KIND)
        self = cls(**{k: v for k, v in meta["params"].items() if k != "feature_names"})  # older files had it
        self.features_ = FeatureSet.from_metadata(meta)
        self.pipeline_ = skops.io.load(path / MODEL_FILE, trusted=TRUSTED_TYPES)
        training = meta.get("training", {})
        self.training_seconds_ = training.get("seconds")
        self.training_rows_ = training.get("rows")
        return self
