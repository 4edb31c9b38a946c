"""Saved models on disk: one entry point that loads any kind, and what a saved model's folder holds.

A saved model is a flat directory of files (``model.json`` naming its kind, plus the kind's own files),
so a registry can copy it to and from object storage file by file. Loading looks the kind up in
:mod:`models.kinds` and imports TensorFlow only for kinds that need it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from models.kinds import FraudModel, UnknownKindError, kind_class, same_kind

META_FILE = "model.json"


def model_kind(directory: str | Path) -> str:
    """The kind ``model.json`` names, as written (possibly a former name of the kind)."""
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a saved model: {META_FILE} is missing")
    return str(json.loads(path.read_text()).get("kind"))


def read_metadata(directory: str | Path, kind: str) -> dict[str, Any]:
    """``model.json`` of a model saved by kind ``kind``; a model of another kind is a ValueError."""
    path = Path(directory)
    meta = json.loads((path / META_FILE).read_text())
    if not same_kind(meta.get("kind"), kind):
        article = "an" if kind[:1] in "aeiou" else "a"
        raise ValueError(f"{path} holds a {meta.get('kind')!r} model, not {article} {kind!r}")
    return meta


def load_model(directory: str | Path) -> FraudModel:
    """Load whichever kind of model ``directory`` holds."""
    try:
        cls = kind_class(model_kind(directory))
    except UnknownKindError as error:
        raise UnknownKindError(f"{directory}: {error}") from None
    return cls.load(directory)


def artifact_files(directory: str | Path) -> list[Path]:
    """The files that make up a saved model (what a registry uploads), relative to ``directory``."""
    root = Path(directory)
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
