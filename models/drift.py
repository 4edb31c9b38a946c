"""Drift: how far what a model scores now has moved from what it was trained on (population stability index).

At training, :meth:`Reference.fit` bins each input and the model's score into deciles of the training
data and keeps each bin's share; the reference is saved beside the model (``drift_reference.json``) and
travels with it through the registry. Live, a :class:`DriftWindow` counts the scored rows into the same
bins and, once it holds ``size`` rows, gives each input's and the score's PSI:

    PSI = sum over bins of (actual - expected) * ln(actual / expected)

The usual reading (Siddiqi, "Credit Risk Scorecards", 2006): below 0.1 no shift, 0.1 to 0.25 a moderate
shift, above 0.25 a significant one (:data:`DRIFT_WARNING`). Shares are floored at :data:`SHARE_FLOOR` so
that an empty bin gives a large, finite PSI instead of infinity.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

REFERENCE_FILE = "drift_reference.json"
DEFAULT_BINS = 10
DRIFT_WARNING = 0.25
"""Above this PSI a shift is significant: the worker logs a warning and `fraudstream models drift` flags it."""
SHARE_FLOOR = 1e-4
SCORE = "score"
"""The name the score's own reference goes by in reports."""


@dataclass(frozen=True)
class Bins:
    """Inner bin edges (len k-1 for k bins) and the share of the reference data in each bin."""

    edges: tuple[float, ...]
    shares: tuple[float, ...]

    @classmethod
    def of(cls, values: np.ndarray, bins: int = DEFAULT_BINS) -> Bins:
        """Quantile bins of `values` (NaN ignored); a column with few distinct values gets fewer bins."""
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            return cls((), (1.0,))
        inner = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
        return cls(tuple(inner.tolist()), tuple((counts(values, inner) / values.size).tolist()))

    def to_dict(self) -> dict[str, list[float]]:
        return {"edges": list(self.edges), "shares": list(self.shares)}


def counts(values: np.ndarray, edges: Sequence[float] | np.ndarray) -> np.ndarray:
    """How many of `values` fall in each bin of `edges` (right-closed, as `np.quantile` cuts)."""
    edges = np.asarray(edges, dtype=np.float64)
    return np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)


def psi(expected: Sequence[float] | np.ndarray, actual_counts: Sequence[float] | np.ndarray) -> float:
    """The population stability index of counts against the reference shares `expected` (NaN with no counts)."""
    actual = np.asarray(actual_counts, dtype=np.float64)
    total = actual.sum()
    if total == 0:
        return math.nan
    e = np.maximum(np.asarray(expected, dtype=np.float64), SHARE_FLOOR)
    a = np.maximum(actual / total, SHARE_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class Reference:
    """The training distribution of each input (by name, in model order) and of the score."""

    features: Mapping[str, Bins]
    score: Bins

    @classmethod
    def fit(cls, matrix: np.ndarray, names: Sequence[str], scores: np.ndarray, bins: int = DEFAULT_BINS) -> Reference:
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.shape[1] != len(names):
            raise ValueError(f"{matrix.shape[1]} columns but {len(names)} names")
        return cls({name: Bins.of(matrix[:, i], bins) for i, name in enumerate(names)}, Bins.of(scores, bins))

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / REFERENCE_FILE
        body = {"features": {n: b.to_dict() for n, b in self.features.items()}, SCORE: self.score.to_dict()}
        path.write_text(json.dumps(body, indent=1))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Reference | None:
        """The reference saved with a model, or None for a model trained before references were kept."""
        path = Path(directory) / REFERENCE_FILE
        if not path.is_file():
            return None
        body = json.loads(path.read_text())

        def bins(d: Mapping[str, list[float]]) -> Bins:
            return Bins(tuple(map(float, d["edges"])), tuple(map(float, d["shares"])))

        return cls({n: bins(b) for n, b in body["features"].items()}, bins(body[SCORE]))


@dataclass
class DriftWindow:
    """Counts of scored rows in the reference's bins, `size` rows at a time (a tumbling window).

    `add` takes a batch as the worker has it (inputs in model order, scores); it returns the PSI of every
    input and of the score each time a window fills, else None.
    """

    reference: Reference
    names: tuple[str, ...]
    size: int = 10_000
    rows: int = 0
    _edges: list[np.ndarray] = field(init=False)
    _counts: list[np.ndarray] = field(init=False)
    _score_counts: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        missing = [n for n in self.names if n not in self.reference.features]
        if missing:
            raise ValueError(f"the drift reference has no bins for {', '.join(missing)}")
        self._edges = [np.asarray(self.reference.features[n].edges) for n in self.names]
        self._reset()

    def _reset(self) -> None:
        self.rows = 0
        self._counts = [np.zeros(len(e) + 1, np.int64) for e in self._edges]
        self._score_counts = np.zeros(len(self.reference.score.edges) + 1, np.int64)

    def add(self, matrix: np.ndarray, scores: np.ndarray) -> dict[str, float] | None:
        for i, edges in enumerate(self._edges):
            self._counts[i] += counts(matrix[:, i], edges)
        self._score_counts += counts(scores, self.reference.score.edges)
        self.rows += len(scores)
        if self.rows < self.size:
            return None
        report = {n: psi(self.reference.features[n].shares, c) for n, c in zip(self.names, self._counts)}
        report[SCORE] = psi(self.reference.score.shares, self._score_counts)
        self._reset()
        return report


def drift_report(
    reference: Reference, matrix: np.ndarray, names: Sequence[str], scores: np.ndarray
) -> dict[str, float]:
    """The PSI of every input and of the score of one sample against `reference` (one window of its size)."""
    report = DriftWindow(reference, tuple(names), max(len(scores), 1)).add(np.asarray(matrix), np.asarray(scores))
    return report or {}


def verdict(value: float) -> str:
    """The usual reading of a PSI."""
    if math.isnan(value):
        return "no data"
    return "significant" if value > DRIFT_WARNING else "moderate" if value > 0.1 else "stable"


def drifted(report: Mapping[str, float], limit: float = DRIFT_WARNING) -> list[str]:
    """The names whose PSI is above `limit`, largest first."""
    return sorted((n for n, v in report.items() if v > limit), key=lambda n: -report[n])
