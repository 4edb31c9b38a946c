"""Where a worker gets its models: the registry in production, a local folder for a quick start.

A worker only needs "the production version now", "this version" and "the newest candidate"; both
sources answer those with a :class:`ScoringModel`, ready to score a feature matrix in model column order
through the kind's ``matrix_scorer`` (the autoencoder's is a NumPy forward pass: no Keras call per batch).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from models.artifacts import load_model
from models.calibrate import Threshold, is_alert
from models.drift import Reference
from models.kinds import FraudModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoringModel:
    """A fully loaded model and its threshold; immutable, so swapping the reference is atomic."""

    name: str
    version: int
    threshold: float
    threshold_version: int
    kind: str
    model: Any
    score_matrix: Any
    feature_names: tuple[str, ...] = ()
    """The model's inputs, in the order `score_matrix` takes them (what the decoder picks out of records)."""
    feature_types: tuple[str, ...] | None = None
    reference: Reference | None = None
    """The training distribution of the inputs and the score (drift); None for models trained without one."""

    def score(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores = np.asarray(self.score_matrix(features), dtype=np.float64)
        return scores, is_alert(scores, self.threshold)

    @property
    def label(self) -> str:
        return f"{self.name}:{self.version} (threshold v{self.threshold_version})"


def scoring_model(
    name: str, version: int, model: FraudModel, threshold: Threshold, directory: Path | None = None
) -> ScoringModel:
    features = getattr(model, "features_", None)  # the built-in kinds record their inputs' types too
    return ScoringModel(
        name,
        int(version),
        float(threshold.value),
        int(threshold.version),
        model.kind,
        model,
        model.matrix_scorer(),
        tuple(model.feature_names),
        getattr(features, "types", None),
        Reference.load(directory) if directory is not None else None,
    )


class ModelSource(Protocol):
    name: str

    def production(self) -> tuple[int, int]:
        """(version, threshold version) of production now."""

    def load(self, version: int | None = None) -> ScoringModel:
        """Load `version` (None: production) fully; raises on any failure."""

    def newest_candidate(self) -> int | None: ...


class RegistrySource:
    """Models from the registry in object storage (models/registry.py)."""

    def __init__(self, registry: Any, name: str) -> None:
        self.registry = registry
        self.name = name

    def production(self) -> tuple[int, int]:
        entry = self.registry.version(self.name)
        return int(entry["version"]), int(entry["threshold_version"])

    def load(self, version: int | None = None) -> ScoringModel:
        loaded = self.registry.load(self.name, version)
        return scoring_model(self.name, loaded.version, loaded.model, loaded.threshold, loaded.directory)

    def newest_candidate(self) -> int | None:
        candidates = [int(v["version"]) for v in self.registry.versions(self.name) if v["stage"] == "candidate"]
        return max(candidates) if candidates else None


class DirectorySource:
    """One trained model folder (model.json + threshold.json) as version 1: no registry needed."""

    def __init__(self, directory: str | Path, name: str | None = None) -> None:
        self.directory = Path(directory)
        self.name = name or self.directory.name

    def production(self) -> tuple[int, int]:
        return 1, Threshold.load(self.directory).version

    def load(self, version: int | None = None) -> ScoringModel:
        if version not in (None, 1):
            raise LookupError(f"{self.directory} holds one model (version 1), not version {version}")
        model, threshold = load_model(self.directory), Threshold.load(self.directory)
        return scoring_model(self.name, 1, model, threshold, self.directory)

    def newest_candidate(self) -> int | None:
        return None
