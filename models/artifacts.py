"""One entry point for saved models of any kind, and the model protocol they share.

A saved model is a flat directory of files (``model.json`` naming its kind, plus the kind's own files),
so a registry can copy it to and from object storage file by file. Loading dispatches on ``kind`` and
imports TensorFlow only for kinds that need it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

META_FILE = "model.json"


@runtime_checkable
class FraudModel(Protocol):
    kind: str
    feature_names: tuple[str, ...]

    def fit(self, X: Any, y: Any = None) -> FraudModel: ...
    def score_samples(self, X: Any) -> np.ndarray: ...
    def get_params(self, deep: bool = True) -> dict[str, Any]: ...
    def save(self, directory: str | Path) -> Path: ...


def model_kind(directory: str | Path) -> str:
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a saved model: {META_FILE} is missing")
    return str(json.loads(path.read_text()).get("kind"))


def load_model(directory: str | Path) -> FraudModel:
    """Load whichever kind of model ``directory`` holds."""
    kind = model_kind(directory)
    if kind == "autoencoder":
        from models.autoencoder import Autoencoder

        return Autoencoder.load(directory)
    if kind == "logistic-baseline":
        from models.baseline import LogisticBaseline

        return LogisticBaseline.load(directory)
    raise ValueError(f"{directory}: unknown model kind {kind!r} (known: autoencoder, logistic-baseline)")


def artifact_files(directory: str | Path) -> list[Path]:
    """The files that make up a saved model (what a registry uploads), relative to ``directory``."""
    root = Path(directory)
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
