"""One training run end to end: load, split, fit, calibrate on validation, evaluate on test, write artifacts.

This is the sequence ``fraudstream train`` and the training notebook run; keeping it in one function
means both produce the same artifacts from the same dataset description and seed.

Output directory (flat files, ready to be copied to a registry): the model's own files (``model.json`` +
``model.keras`` or ``model.skops``), ``threshold.json``, ``drift_reference.json`` (the training distribution of each input and of the score,
models/drift.py), ``model_card.json``, ``model_card.md`` and the
PNG plots.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.calibrate import ALERT_RATE, Threshold, calibrate
from models.datasets import Dataset, DatasetSource, load_dataset
from models.drift import Reference
from models.evaluate import DEFAULT_ALERT_BUDGET, Metrics, ModelCard, evaluate, plot_all
from models.features import feature_matrix, labels, model_inputs
from models.kinds import EpochCallback, FraudModel
from models.split import DEFAULT_FRACTIONS, DEFAULT_MIN_FRAUDS, Split, chronological_split, random_split

logger = logging.getLogger(__name__)


@dataclass
class TrainingResult:
    model: FraudModel
    threshold: Threshold
    metrics: Metrics
    card: ModelCard
    reference: Reference
    split: Split
    dataset: Dataset
    output_dir: Path | None


def train(
    source: DatasetSource | Dataset,
    model: FraudModel,
    *,
    split: str = "chronological",
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    min_frauds: int = DEFAULT_MIN_FRAUDS,
    threshold_method: str = ALERT_RATE,
    threshold_target: float = DEFAULT_ALERT_BUDGET,
    alert_budget: float = DEFAULT_ALERT_BUDGET,
    output_dir: str | Path | None = None,
    progress: bool = False,
    on_epoch: EpochCallback | None = None,
    model_version: str | None = None,
) -> TrainingResult:
    """Train ``model`` on ``source`` and measure it on data it never saw. ``split`` is chronological or random."""
    dataset = source if isinstance(source, Dataset) else load_dataset(source, progress=progress)
    if split == "chronological":
        parts = chronological_split(dataset.frame, fractions, min_frauds=min_frauds)
    elif split == "random":
        parts = random_split(dataset.frame, fractions, seed=seed, min_frauds=min_frauds)
    else:
        raise ValueError(f"split must be 'chronological' or 'random', got {split!r}")
    if len(parts.validation) == 0 or len(parts.test) == 0:
        raise ValueError("training needs non-empty validation (to calibrate) and test (to evaluate) parts")

    model.fit(parts.train, on_epoch=on_epoch)
    names = model.feature_names
    reference = Reference.fit(feature_matrix(parts.train, names), names, model.score_samples(parts.train))
    validation_scores = model.score_samples(parts.validation)
    threshold = calibrate(
        validation_scores, threshold_method, threshold_target, labels(parts.validation), model_version=model_version
    )
    test_y = labels(parts.test)
    test_scores = model.score_samples(parts.test)
    metrics = evaluate(test_y, test_scores, threshold.value, alert_budget)
    logger.info(
        "test: ROC-AUC %s, average precision %s, recall at %.2f%% budget %s",
        metrics.roc_auc,
        metrics.average_precision,
        100 * alert_budget,
        metrics.recall_at_budget,
    )

    card = ModelCard(
        model={
            "kind": model.kind,
            "version": model_version,
            "params": model.get_params(),
            "features": model_inputs(model),
        },
        dataset={**dataset.description, "split": parts.describe()},
        metrics=metrics.to_dict(),
        threshold=threshold.to_dict(),
        training_seconds=model.training_seconds_,
    )
    out = None
    if output_dir is not None:
        out = Path(output_dir)
        model.save(out)
        threshold.save(out)
        reference.save(out)
        plots = plot_all(test_y, np.asarray(test_scores), threshold.value, out, score_label=model.score_label)
        card.plots = [p.name for p in plots.values()]
        card.save(out)
    return TrainingResult(model, threshold, metrics, card, reference, parts, dataset, out)
