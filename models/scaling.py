"""The input scaling the autoencoder needs, as plain numbers that are saved next to the model.

Time (seconds since the first event) and Amount (euros) are on scales far from V1..V28 (PCA components);
standardising just those two keeps the reconstruction error from being dominated by them. The statistics
are fitted on the training split only (fitting on everything would leak the test split into the model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.preprocessing import StandardScaler

from models.features import STANDARDISED_COLUMNS


@dataclass(frozen=True)
class Standardiser:
    """``(x - mean) / scale`` per column; columns not standardised have mean 0 and scale 1."""

    feature_names: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]

    @classmethod
    def fit(
        cls, x: np.ndarray, feature_names: Sequence[str], columns: Sequence[str] = STANDARDISED_COLUMNS
    ) -> Standardiser:
        """Fit on the training matrix ``x`` (columns in ``feature_names`` order)."""
        names = tuple(feature_names)
        index = [names.index(c) for c in columns if c in names]
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
