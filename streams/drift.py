"""Drift as the workers see it: each scored batch counted against the production model's training reference.

The PSI of every input and of the score over the last `size` scored rows (models/drift.py) is exported as
gauges when a window fills, and a warning names what moved above the significance limit. A model
trained without a reference (before references were kept) is scored as ever, with no drift metrics.
"""

from __future__ import annotations

import logging

import numpy as np

from models.drift import DRIFT_WARNING, SCORE, DriftWindow, drifted
from streams import metrics
from streams.modelsource import ScoringModel

logger = logging.getLogger(__name__)


class DriftMonitor:
    def __init__(self, size: int, limit: float = DRIFT_WARNING) -> None:
        self.size = size
        self.limit = limit
        self._model: ScoringModel | None = None
        self._window: DriftWindow | None = None

    def observe(self, model: ScoringModel, features: np.ndarray, scores: np.ndarray) -> dict[str, float] | None:
        """Count a batch the production model scored; the PSI report when it completes a window."""
        if model is not self._model:
            self._start(model)
        if self._window is None or not len(scores):
            return None
        report = self._window.add(features, scores)
        if report is not None:
            self._publish(model, report)
        return report

    def _start(self, model: ScoringModel) -> None:
        self._model, self._window = model, None
        metrics.FEATURE_PSI.clear()
        metrics.SCORE_PSI.clear()
        if model.reference is None:
            logger.info("model %s has no drift reference: no drift metrics", model.label)
            return
        try:
            self._window = DriftWindow(model.reference, model.feature_names, self.size)
        except ValueError as error:
            logger.warning("model %s: no drift metrics: %s", model.label, error)

    def _publish(self, model: ScoringModel, report: dict[str, float]) -> None:
        version = str(model.version)
        for name, value in report.items():
            if name == SCORE:
                metrics.SCORE_PSI.labels(model.name, version).set(value)
            else:
                metrics.FEATURE_PSI.labels(model.name, version, name).set(value)
        moved = drifted(report, self.limit)
        if moved:
            logger.warning(
                "drift against %s's training data over the last %d scored: %s",
                model.label,
                self.size,
                ", ".join(f"{n} PSI {report[n]:.2f}" for n in moved),
            )
