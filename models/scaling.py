"""The input scaling the autoencoder needs, as plain numbers that are saved next to the model.

Every input is standardised. The inputs are whatever columns the statements project (an hour of the day,
an amount in euros, PCA components...), on scales nobody declared; a reconstruction error summed over
unscaled columns would be dominated by the widest one. Standardising a column that is already centred
and scaled (a PCA component) is close to the identity, so it costs nothing where it is not needed. The
statistics are fitted on the training split only (fitting on everything would leak the test split into
the model). Models saved when only some columns were standardised load as they were saved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.preprocessing import StandardScaler


@dataclass(frozen=True)
class Standardiser:
    """``(x - mean) / scale`` per column; columns not standardised have mean 0 and scale 1."""

    feature_names: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]

    @classmethod
    def fit(cls, x: np.ndarray, feature_names: Sequence[str], columns: Sequence[str] | None = None) -> Standardiser:
        """Fit on the training matrix ``x`` (columns in ``feature_names`` order); ``columns`` None: all of them."""
        names = tuple(feature_names)
        index = list(range(len(names))) if columns is None else [names.index(c) for c in columns if c in names]
        mean = np.zeros(len(names))
        scale = np.ones(len(names))
        if index and len(x):
            fitted = StandardScaler().fit(np.asarray(x, dtype=np.float64)[:, index])
            mean[index] = fitted.mean_
            scale[index] = fitted.scale_  # StandardScaler already maps zero variance to 1
        return cls(names, tuple(float(v) for v in mean), tuple(float(v) for v in scale))

    def arrays(self, dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.mean, dtype=dtype), np.asarray(self.scale, dtype=dtype)

    def transform(self, x: np.ndarray, dtype: type = np.float32) -> np.ndarray:
        mean, scale = self.arrays(dtype)
        return ((np.asarray(x, dtype=dtype) - mean) / scale).astype(dtype, copy=False)

    def to_dict(self) -> dict[str, Any]:
        """Only the standardised columns are written; the rest pass through."""
        return {
            "standardised": {
                name: {"mean": m, "scale": s}
                for name, m, s in zip(self.feature_names, self.mean, self.scale)
                if (m, s) != (0.0, 1.0)
            }
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], feature_names: Sequence[str]) -> Standardiser:
        names = tuple(feature_names)
        unknown = set(data["standardised"]) - set(names)
        if unknown:
            raise ValueError(f"scaler names columns the model does not have: {sorted(unknown)}")
        stats = data["standardised"]
        mean = tuple(float(stats[n]["mean"]) if n in stats else 0.0 for n in names)
        scale = tuple(float(stats[n]["scale"]) if n in stats else 1.0 for n in names)
        return cls(names, mean, scale)
