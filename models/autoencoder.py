"""The dense Keras autoencoder, trained on legitimate payments only; its score is the reconstruction error.

A payment unlike the legitimate ones the network learnt to compress reconstructs badly, so a high error
means "suspicious". It implements :class:`models.kinds.FraudModel` (scikit-learn's estimator conventions
plus saving and a matrix scorer) and is registered there as kind ``autoencoder``, so evaluation,
calibration, the registry and the workers treat it like any other kind.

Saved form (a directory, so that a registry can store it as plain files in S3; no pickles):
``model.keras`` (loaded with ``safe_mode=True``) and ``model.json`` (kind, feature names and types, the hash
of the statements that made them, scaler, parameters, training summary).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Quiet TensorFlow's C++ log, and keep oneDNN's reordered float sums off so that results are reproducible
# and match the NumPy scorer. Both must be set before TensorFlow is imported. Level 3 (not 2) because
# TensorFlow 2.21 logs a harmless `E0000 ... NodeDef mentions attribute use_unbounded_threadpool` at ERROR
# level on every fit (its tf.data graph is newer than its C++ op registry); a real failure still raises.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from models.artifacts import META_FILE, read_metadata  # noqa: E402
from models.features import (  # noqa: E402
    Batch,
    FeatureSet,
    LearntInputs,
    current_statements_hash,
    feature_matrix,
    has_label,
    labels,
)
from models.kinds import EpochCallback  # noqa: E402
from models.scaling import Standardiser  # noqa: E402
from models.scorer import DenseLayer, NumpyScorer  # noqa: E402

logger = logging.getLogger(__name__)

KIND = "autoencoder"
MODEL_FILE = "model.keras"

_tf_configured = False


def configure_tensorflow(threads: int | None = None) -> None:
    """Limit TensorFlow's thread pools (the machines are shared) and make its ops deterministic.

    ``threads`` defaults to ``FRAUDSTREAM_TF_THREADS`` or 1: the network is so small that a second thread
    gains little (~10% here), while spinning thread pools slow to a crawl on an oversubscribed machine.
    Thread pools can only be sized before TensorFlow runs its first op, so this is applied once.
    """
    global _tf_configured
    if _tf_configured:
        return
    import tensorflow as tf

    n = threads or int(os.environ.get("FRAUDSTREAM_TF_THREADS", "1"))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already initialised by someone else: keep its pools
        logger.debug("TensorFlow already initialised; thread limits not applied")
    tf.config.experimental.enable_op_determinism()
    _tf_configured = True


class EpochLogger(keras.callbacks.Callback):
    """Logs one line per epoch and forwards the numbers to ``on_epoch`` (the CLI draws progress from it)."""

    def __init__(self, epochs: int, on_epoch: EpochCallback | None = None) -> None:
        super().__init__()
        self.epochs = epochs
        self.on_epoch = on_epoch
        self.history: list[dict[str, float]] = []
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        numbers = {k: float(v) for k, v in (logs or {}).items()}
        numbers["seconds"] = time.perf_counter() - self._started
        self.history.append(numbers)
        logger.info("epoch %d/%d %s", epoch + 1, self.epochs, " ".join(f"{k}={v:.4g}" for k, v in numbers.items()))
        if self.on_epoch is not None:
            self.on_epoch(epoch + 1, self.epochs, numbers)


def build_network(
    n_features: int, hidden: Sequence[int], activations: Sequence[str], l1: float, learning_rate: float
) -> keras.Model:
    """Dense encoder/decoder; the output layer is linear so it can reproduce any standardised value."""
    if len(hidden) != len(activations):
        raise ValueError(f"hidden {list(hidden)} and activations {list(activations)} differ in length")
    inputs = keras.Input(shape=(n_features,), name="features")
    x = inputs
    for i, (units, activation) in enumerate(zip(hidden, activations)):
        regulariser = keras.regularizers.L1(l1) if i == 0 and l1 > 0 else None
        x = keras.layers.Dense(units, activation=activation, activity_regularizer=regulariser, name=f"dense_{i}")(x)
    outputs = keras.layers.Dense(n_features, activation="linear", name="reconstruction")(x)
    model = keras.Model(inputs, outputs, name="fraud_autoencoder")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss="mse")
    return model


class Autoencoder(LearntInputs):
    """Reconstruction-error anomaly detector over the feature columns of the frame it is fitted on.

    ``score_samples`` returns the per-row mean squared reconstruction error: higher is more suspicious
    (the opposite sign of scikit-learn's outlier detectors, and the same direction as every kind's score,
    such as the baseline's fraud log-odds, so one threshold rule serves all).
    """

    kind = KIND
    score_label = "reconstruction error"

    def __init__(
        self,
        hidden: Sequence[int] = (14, 7, 7),
        activations: Sequence[str] = ("tanh", "relu", "tanh"),
        l1: float = 1e-5,
        epochs: int = 20,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        validation_fraction: float = 0.1,
        seed: int = 0,
    ) -> None:
        self.hidden = tuple(hidden)
        self.activations = tuple(activations)
        self.l1 = l1
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.validation_fraction = validation_fraction
        self.seed = seed
        self.features_: FeatureSet | None = None
        self.model_: keras.Model | None = None
        self.scaler_: Standardiser | None = None
        self.history_: list[dict[str, float]] = []
        self.training_seconds_: float | None = None
        self.training_rows_: int | None = None
        self._scorer: NumpyScorer | None = None

    # scikit-learn conventions -------------------------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {
            "hidden": list(self.hidden),
            "activations": list(self.activations),
            "l1": self.l1,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "validation_fraction": self.validation_fraction,
            "seed": self.seed,
        }

    def set_params(self, **params: Any) -> Autoencoder:
        unknown = set(params) - set(self.get_params())
        if unknown:
            raise ValueError(f"unknown parameters {sorted(unknown)}; valid: {sorted(self.get_params())}")
        for name, value in params.items():
            setattr(self, name, tuple(value) if name in ("hidden", "activations") else value)
        return self

    def fit(
        self,
        X: Batch,
        y: Sequence[int] | np.ndarray | None = None,
        *,
        on_epoch: EpochCallback | None = None,
        verbose: int = 0,
    ) -> Autoencoder:
        """Train on the legitimate rows of ``X``; its feature columns, in order, become the model's inputs.

        Labels come from ``y`` or, for a table, from its ``Class`` column; without labels every row is
        taken as legitimate. Same data + same ``seed`` -> same weights (seeded, deterministic ops).
        """
        configure_tensorflow()
        features = FeatureSet.learn(X, current_statements_hash())
        x = feature_matrix(X, features.names, np.float64)
        if y is None and has_label(X):
            y = labels(X)
        if y is not None:
            y_arr = np.asarray(y)
            if y_arr.shape != (len(x),):
                raise ValueError(f"y has shape {y_arr.shape}, expected ({len(x)},)")
            x = x[y_arr == 0]
        if len(x) < 2:
            raise ValueError(f"need at least 2 legitimate rows to train, got {len(x)}")
        keras.utils.set_random_seed(self.seed)
        self.features_ = features
        self.scaler_ = Standardiser.fit(x, self.feature_names)
        scaled = self.scaler_.transform(x, np.float32)
        self.model_ = build_network(len(self.feature_names), self.hidden, self.activations, self.l1, self.learning_rate)
        progress = EpochLogger(self.epochs, on_epoch)
        started = time.perf_counter()
        self.model_.fit(
            scaled,
            scaled,
            epochs=self.epochs,
            batch_size=self.batch_size,
            shuffle=True,
            validation_split=self.validation_fraction if len(scaled) * self.validation_fraction >= 1 else 0.0,
            callbacks=[progress],
            verbose=verbose,
        )
        self.training_seconds_ = time.perf_counter() - started
        self.training_rows_ = int(len(scaled))
        self.history_ = progress.history
        self._scorer = None
        return self

    def _check_fitted(self) -> None:
        if self.model_ is None or self.scaler_ is None or self.features_ is None:
            raise RuntimeError("the autoencoder is not trained yet: call fit() or Autoencoder.load()")

    def keras_scores(self, X: Batch) -> np.ndarray:
        """Reconstruction MSE through Keras itself: the reference the NumPy scorer is tested against."""
        self._check_fitted()
        scaled = self.scaler_.transform(feature_matrix(X, self.feature_names, np.float64), np.float32)
        recon = np.asarray(self.model_.predict(scaled, batch_size=4096, verbose=0), dtype=np.float64)
        return np.mean(np.square(recon - scaled.astype(np.float64)), axis=1)

    def scorer(self, dtype: type = np.float32) -> NumpyScorer:
        """The fast NumPy scorer built from the current weights."""
        self._check_fitted()
        if self._scorer is None or self._scorer.dtype != np.dtype(dtype):
            layers = []
            for layer in self.model_.layers:
                if isinstance(layer, keras.layers.Dense):
                    kernel, bias = layer.get_weights()
                    layers.append(DenseLayer(kernel, bias, keras.activations.serialize(layer.activation)))
            self._scorer = NumpyScorer(layers, self.scaler_, self.feature_names, dtype)
        return self._scorer

    def score_samples(self, X: Batch) -> np.ndarray:
        """Per-row reconstruction MSE (higher = more suspicious)."""
        return self.scorer()(X)

    def matrix_scorer(self) -> Callable[[np.ndarray], np.ndarray]:
        """The NumPy forward pass on a matrix in model column order: no Keras call per batch."""
        return self.scorer().score_matrix

    # persistence ---------------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "kind": KIND,
            "format": 1,
            **self.features_.to_metadata(),
            "scaler": self.scaler_.to_dict(),
            "params": self.get_params(),
            "training": {"seconds": self.training_seconds_, "rows": self.training_rows_, "history": self.history_},
            "keras_version": keras.__version__,
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``model.keras`` and ``model.json`` into ``directory`` (created if needed)."""
        self._check_fitted()
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self.model_.save(path / MODEL_FILE)
        (path / META_FILE).write_text(json.dumps(self.metadata(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Autoencoder:
        configure_tensorflow()
        path = Path(directory)
        meta = read_metadata(path, KIND)
        self = cls(**{k: v for k, v in meta["params"].items() if k != "feature_names"})  # older files had it
        self.features_ = FeatureSet.from_metadata(meta)
        self.model_ = keras.saving.load_model(path / MODEL_FILE, safe_mode=True)
        self.scaler_ = Standardiser.from_dict(meta["scaler"], self.feature_names)
        training = meta.get("training", {})
        self.training_seconds_ = training.get("seconds")
        self.training_rows_ = training.get("rows")
        self.history_ = training.get("history", [])
        n_in = self.model_.inputs[0].shape[-1]
        if n_in != len(self.feature_names):
            raise ValueError(f"{path}: network takes {n_in} inputs but model.json names {len(self.feature_names)}")
        return self
