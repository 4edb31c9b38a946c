"""Metrics, plots and the model card.

Fraud is rare, so accuracy says nothing: the card leads with ranking quality (ROC-AUC, average precision)
and with what an analyst team sees (precision/recall at the calibrated threshold, recall when only a
fixed share of events can be alerted). The card also pins what the model was trained behind (the hash of
the ``ksql/`` statements) so a change of preprocessing is visible next to the numbers.
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
from sklearn import metrics as skm

from fraudstream.statements import statements_hash
from models.calibrate import is_alert

DEFAULT_ALERT_BUDGET = 0.005
CARD_JSON = "model_card.json"
CARD_MARKDOWN = "model_card.md"
LIBRARIES = ("keras", "tensorflow-cpu", "numpy", "pandas", "scikit-learn", "skops", "pyarrow", "matplotlib")


@dataclass(frozen=True)
class Metrics:
    rows: int
    frauds: int
    roc_auc: float | None
    average_precision: float | None
    threshold: float
    precision: float
    recall: float
    f1: float
    alert_rate: float
    confusion: dict[str, int]
    alert_budget: float
    recall_at_budget: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ranking_metric(fn, y: np.ndarray, scores: np.ndarray) -> float | None:
    """None when undefined (only one class present), rather than a misleading number or an exception."""
    if len(np.unique(y)) < 2:
        return None
    return float(fn(y, scores))


def recall_at_budget(y: np.ndarray, scores: np.ndarray, budget: float = DEFAULT_ALERT_BUDGET) -> float | None:
    """Share of frauds among the top ``budget`` fraction of events by score (ties broken by order)."""
    if not 0.0 < budget <= 1.0:
        raise ValueError(f"alert budget must be in (0, 1], got {budget}")
    positives = int((y == 1).sum())
    if positives == 0:
        return None
    k = max(1, math.ceil(budget * len(scores)))
    top = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:k]
    return int((y[top] == 1).sum()) / positives


def evaluate(
    y_true: np.ndarray, scores: np.ndarray, threshold: float, alert_budget: float = DEFAULT_ALERT_BUDGET
) -> Metrics:
    y = np.asarray(y_true).astype(np.int64)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"labels {y.shape} and scores {s.shape} must be 1-D and of equal length")
    if len(y) == 0:
        raise ValueError("nothing to evaluate: no rows")
    predicted = is_alert(s, threshold).astype(np.int64)
    tn, fp, fn, tp = (int(v) for v in skm.confusion_matrix(y, predicted, labels=[0, 1]).ravel())
    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        y, predicted, average="binary", pos_label=1, zero_division=0
    )
    return Metrics(
        rows=int(len(y)),
        frauds=int(y.sum()),
        roc_auc=_ranking_metric(skm.roc_auc_score, y, s),
        average_precision=_ranking_metric(skm.average_precision_score, y, s),
        threshold=float(threshold),
        precision=float(precision),
        recall=float(recall),
        f1=float(f1),
        alert_rate=float(predicted.mean()),
        confusion={"tn": tn, "fp": fp, "fn": fn, "tp": tp},
        alert_budget=alert_budget,
        recall_at_budget=recall_at_budget(y, s, alert_budget),
    )


# plots ------------------------------------------------------------------------------------------------


def plot_all(
    y_true: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    directory: str | Path,
    score_label: str = "reconstruction error",
) -> dict[str, Path]:
    """ROC, PR, score by class and precision/recall vs threshold as PNG files in ``directory``.

    Figures are drawn without pyplot, so the caller's backend (a notebook's inline plots) is left alone.
    """
    from matplotlib.figure import Figure

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    y = np.asarray(y_true).astype(np.int64)
    s = np.asarray(scores, dtype=np.float64)
    both_classes = len(np.unique(y)) == 2
    paths: dict[str, Path] = {}

    def save(fig, name: str) -> None:
        fig.tight_layout()
        paths[name] = out / f"{name}.png"
        fig.savefig(paths[name], dpi=100)

    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    if both_classes:
        fpr, tpr, _ = skm.roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"AUC = {skm.roc_auc_score(y, s):.4f}")
        ax.legend(loc="lower right")
    save(fig, "roc")

    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    if both_classes:
        prec, rec, _ = skm.precision_recall_curve(y, s)
        ax.plot(rec, prec, label=f"AP = {skm.average_precision_score(y, s):.4f}")
        ax.legend(loc="upper right")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall", xlim=(0, 1), ylim=(0, 1.02))
    save(fig, "pr")

    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    ax.scatter(np.flatnonzero(y == 0), s[y == 0], s=4, alpha=0.5, label="legitimate")
    ax.scatter(np.flatnonzero(y == 1), s[y == 1], s=12, color="red", label="fraud")
    ax.axhline(threshold, color="black", linewidth=0.8, label=f"threshold {threshold:.4g}")
    if (s > 0).all():
        ax.set_yscale("log")
    ax.set(xlabel="row", ylabel=score_label, title=f"{score_label} by class")
    ax.legend(loc="upper left")
    save(fig, "error_by_class")

    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    if both_classes:
        prec, rec, thr = skm.precision_recall_curve(y, s)
        ax.plot(thr, prec[:-1], label="precision")
        ax.plot(thr, rec[:-1], label="recall")
        if (thr > 0).all():
            ax.set_xscale("log")
    ax.axvline(threshold, color="black", linewidth=0.8, label="threshold")
    ax.set(xlabel="threshold", ylabel="value", title="Precision and recall vs threshold")
    ax.legend(loc="best")
    save(fig, "precision_recall_vs_threshold")
    return paths


# model card -------------------------------------------------------------------------------------------


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def _json_safe(value: Any) -> Any:
    """JSON has no NaN: undefined numbers become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


@dataclass
class ModelCard:
    model: dict[str, Any]
    """kind, params, version (when registered)."""
    dataset: dict[str, Any]
    """The dataset's description: source, offsets or files, rows, fraud rate, split."""
    metrics: dict[str, Any]
    threshold: dict[str, Any]
    training_seconds: float | None
    ksql_sha256: str = field(default_factory=statements_hash)
    libraries: dict[str, str] = field(default_factory=library_versions)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    plots: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))

    def to_markdown(self) -> str:
        m, t = self.metrics, self.threshold

        def num(v: Any) -> str:
            return "n/a" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

        lines = [
            f"# Model card: {self.model.get('kind', 'model')} {self.model.get('version') or ''}".rstrip(),
            "",
            f"Created {self.created_at}; training took {num(self.training_seconds)} s.",
            "",
            "## Dataset",
            "",
            "```json",
            json.dumps(_json_safe(self.dataset), indent=2),
            "```",
            "",
            "## Metrics (test part)",
            "",
            "| metric | value |",
            "|---|---|",
            f"| rows / frauds | {m.get('rows')} / {m.get('frauds')} |",
            f"| ROC-AUC | {num(m.get('roc_auc'))} |",
            f"| average precision (PR-AUC) | {num(m.get('average_precision'))} |",
            f"| precision at threshold | {num(m.get('precision'))} |",
            f"| recall at threshold | {num(m.get('recall'))} |",
            f"| F1 at threshold | {num(m.get('f1'))} |",
            f"| alert rate at threshold | {num(m.get('alert_rate'))} |",
            f"| recall at {num(m.get('alert_budget'))} alert budget | {num(m.get('recall_at_budget'))} |",
            "",
            "Confusion matrix at the threshold:",
            "",
            "| | predicted legitimate | predicted fraud |",
            "|---|---|---|",
            f"| legitimate | {m.get('confusion', {}).get('tn')} | {m.get('confusion', {}).get('fp')} |",
            f"| fraud | {m.get('confusion', {}).get('fn')} | {m.get('confusion', {}).get('tp')} |",
            "",
            "## Threshold",
            "",
            f"{num(t.get('value'))} ({t.get('method')}, target {t.get('target')}, version {t.get('version')}).",
            "",
            "## Model",
            "",
            "```json",
            json.dumps(_json_safe(self.model), indent=2),
            "```",
            "",
            "## Provenance",
            "",
            f"- ksql/ statements SHA-256: `{self.ksql_sha256}`",
            *(f"- {name} {version}" for name, version in self.libraries.items()),
        ]
        if self.plots:
            lines += ["", "## Plots", "", *(f"![{Path(p).stem}]({Path(p).name})" for p in self.plots)]
        return "\n".join(lines) + "\n"

    def save(self, directory: str | Path) -> tuple[Path, Path]:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        (out / CARD_JSON).write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        (out / CARD_MARKDOWN).write_text(self.to_markdown())
        return out / CARD_JSON, out / CARD_MARKDOWN

    @classmethod
    def load(cls, directory: str | Path) -> ModelCard:
        return cls(**json.loads((Path(directory) / CARD_JSON).read_text()))
