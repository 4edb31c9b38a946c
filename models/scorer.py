"""A NumPy forward pass of the trained autoencoder: what the stream workers call per micro-batch.

Keras' own call costs ~2 ms of framework overhead per batch; the arithmetic for 1,000 rows of a 30-14-7-7-30
network is a few microseconds of matrix products. This scorer holds only the weights, the scaler and the
activation names, so a worker needs no TensorFlow to score (only to load a ``.keras`` file).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from models.features import Batch, feature_matrix
from models.scaling import Standardiser


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0, out=x)


def _tanh(x: np.ndarray) -> np.ndarray:
    return np.tanh(x, out=x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    np.negative(x, out=x)
    np.exp(x, out=x)
    x += 1
    return np.reciprocal(x, out=x)


def _linear(x: np.ndarray) -> np.ndarray:
    return x


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": _relu,
    "tanh": _tanh,
    "sigmoid": _sigmoid,
    "linear": _linear,
}


@dataclass(frozen=True)
class DenseLayer:
    kernel: np.ndarray
    bias: np.ndarray
    activation: str


class NumpyScorer:
    """Reconstruction MSE per row, computed with NumPy from a trained autoencoder's dense layers."""

    def __init__(
        self,
        layers: Sequence[DenseLayer],
        scaler: Standardiser,
        feature_names: Sequence[str] | None = None,
        dtype: type = np.float32,
    ) -> None:
        unknown = [layer.activation for layer in layers if layer.activation not in ACTIVATIONS]
        if unknown:
            raise ValueError(f"activations not supported by the NumPy scorer: {unknown}")
        self.feature_names = tuple(scaler.feature_names if feature_names is None else feature_names)
        self.dtype = np.dtype(dtype)
        if scaler.feature_names != self.feature_names:
            raise ValueError("scaler and scorer disagree on the feature names")
        mean, scale = scaler.arrays(np.float64)
        self._mean = mean.astype(self.dtype)
        self._inv_scale = (1.0 / scale).astype(self.dtype)
        self._layers = [
            (
                np.ascontiguousarray(layer.kernel, dtype=self.dtype),
                np.asarray(layer.bias, dtype=self.dtype),
                ACTIVATIONS[layer.activation],
            )
            for layer in layers
        ]
        widths = (self._layers[0][0].shape[0], self._layers[-1][0].shape[1])
        if widths != (len(self.feature_names),) * 2:
            raise ValueError(
                f"network maps {widths[0]} -> {widths[1]} columns, "
                f"but the model has {len(self.feature_names)} feature names"
            )

    def score_matrix(self, x: np.ndarray) -> np.ndarray:
        """Scores for a matrix already in model column order (the hot path)."""
        scaled = np.asarray(x, dtype=self.dtype) - self._mean
        scaled *= self._inv_scale
        h = scaled
        for kernel, bias, activation in self._layers:
            h = h @ kernel
            h += bias
            h = activation(h)
        h -= scaled
        np.square(h, out=h)
        return h.mean(axis=1)

    def __call__(self, batch: Batch) -> np.ndarray:
        """Scores for a NumPy array, pandas DataFrame or pyarrow Table/RecordBatch."""
        return self.score_matrix(feature_matrix(batch, self.feature_names, self.dtype))

    score_samples = __call__

    @classmethod
    def random(
        cls,
        n_features: int = 30,
        hidden: Sequence[int] = (14, 7, 7),
        activations: Sequence[str] = ("tanh", "relu", "tanh"),
        seed: int = 0,
        dtype: type = np.float32,
    ) -> NumpyScorer:
        """A scorer of the default shape (inputs named ``x0``...) with random weights: as fast as a trained
        one, for benchmarks that should not need TensorFlow or a registry."""
        rng = np.random.default_rng(seed)
        names = tuple(f"x{i}" for i in range(n_features))
        widths = [n_features, *hidden, n_features]
        layers = [
            DenseLayer(rng.normal(scale=0.3, size=(a, b)), rng.normal(scale=0.1, size=b), act)
            for a, b, act in zip(widths, widths[1:], [*activations, "linear"])
        ]
        scaler = Standardiser(names, (0.0,) * n_features, (1.0,) * n_features)
        return cls(layers, scaler, names, dtype)


def benchmark(
    scorer: NumpyScorer | None = None,
    rows: int = 1_000_000,
    batch_size: int = 1_000,
    kind: str = "numpy",
    seed: int = 0,
    reference: Callable[[np.ndarray], object] | None = None,
) -> dict[str, float | str]:
    """Rows per second of ``scorer`` on batches of ``batch_size`` (for ``fraudstream bench``, not for tests).

    ``kind`` is the batch type handed in: "numpy", "pandas" or "arrow" (conversion time included).
    Without a scorer, a random one of the default shape is measured. ``reference`` (for example
    ``lambda x: autoencoder.model_(x, training=False)``) is timed on the same NumPy batches, and the
    result then includes its rows/s and the speed-up over it: a ratio, which a shared machine keeps honest.
    """
    import pandas as pd
    import pyarrow as pa

    scorer = scorer or NumpyScorer.random()

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch_size, len(scorer.feature_names))).astype(scorer.dtype)
    batch: Batch
    if kind == "numpy":
        batch = x
    elif kind == "pandas":
        batch = pd.DataFrame(x, columns=list(scorer.feature_names))
    elif kind == "arrow":
        batch = pa.RecordBatch.from_arrays(
            [pa.array(x[:, j]) for j in range(x.shape[1])], names=list(scorer.feature_names)
        )
    else:
        raise ValueError(f"kind must be numpy, pandas or arrow, not {kind!r}")
    scorer(batch)  # warm up
    batches = max(1, rows // batch_size)
    start = time.perf_counter()
    for _ in range(batches):
        scorer(batch)
    seconds = time.perf_counter() - start
    result: dict[str, float | str] = {
        "kind": kind,
        "rows": batches * batch_size,
        "batch_size": batch_size,
        "seconds": seconds,
        "rows_per_second": batches * batch_size / seconds,
    }
    if reference is not None:
        reference(x)  # warm up (graph tracing)
        start = time.perf_counter()
        for _ in range(batches):
            reference(x)
        reference_rate = batches * batch_size / (time.perf_counter() - start)
        result["reference_rows_per_second"] = reference_rate
        result["speedup"] = result["rows_per_second"] / reference_rate
    return result
