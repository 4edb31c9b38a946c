"""The alert threshold as its own versioned artifact, chosen on validation scores.

The threshold is a business decision (how many alerts can analysts handle, how many may be false), not
part of the network: keeping it separate lets it be recalibrated on fresh scores without retraining, and
every version records how it was chosen. One rule everywhere: a payment is an alert when its score is
strictly greater than the threshold (:func:`is_alert`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

THRESHOLD_FILE = "threshold.json"
ALERT_RATE = "alert_rate"
PRECISION = "precision"
METHODS = (ALERT_RATE, PRECISION)


def is_alert(scores: np.ndarray, threshold: float) -> np.ndarray:
    """The single alerting rule shared by evaluation, calibration and the stream workers."""
    return np.asarray(scores) > threshold


@dataclass(frozen=True)
class Threshold:
    value: float
    method: str
    target: float
    version: int = 1
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    model_version: str | None = None
    achieved: dict[str, float] = field(default_factory=dict)
    """What the value gave on the calibration scores: alert_rate, and precision/recall when labelled."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Threshold:
        if data.get("method") not in METHODS:
            raise ValueError(f"threshold method must be one of {METHODS}, got {data.get('method')!r}")
        return cls(**data)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / THRESHOLD_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path: str | Path) -> Threshold:
        """From ``threshold.json`` or a directory holding it."""
        path = Path(path)
        if path.is_dir():
            path = path / THRESHOLD_FILE
        return cls.from_dict(json.loads(path.read_text()))


def _achieved(scores: np.ndarray, value: float, y: np.ndarray | None) -> dict[str, float]:
    alerts = is_alert(scores, value)
    result = {"alert_rate": float(alerts.mean()) if len(scores) else 0.0, "rows": int(len(scores))}
    if y is not None:
        tp = int((alerts & (y == 1)).sum())
        result["precision"] = tp / int(alerts.sum()) if alerts.any() else 0.0
        result["recall"] = tp / int((y == 1).sum()) if (y == 1).any() else 0.0
    return result


def _validated(scores: np.ndarray) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or len(s) == 0:
        raise ValueError("calibration needs a non-empty 1-D array of validation scores")
    if not np.isfinite(s).all():
        raise ValueError("validation scores contain NaN or infinity")
    return s


def for_alert_rate(
    scores: np.ndarray, rate: float, y: np.ndarray | None = None, *, model_version: str | None = None, version: int = 1
) -> Threshold:
    """The value above which a fraction ``rate`` of the validation rows fall (fewer if scores tie)."""
    if not 0.0 < rate < 1.0:
        raise ValueError(f"target alert rate must be between 0 and 1 (exclusive), got {rate}")
    s = _validated(scores)
    k = max(1, math.ceil(rate * len(s)))  # rows to flag
    ordered = np.sort(s)[::-1]
    value = float(ordered[k]) if k < len(ordered) else float(np.nextafter(ordered[-1], -np.inf))
    y_arr = None if y is None else np.asarray(y)
    return Threshold(value, ALERT_RATE, rate, version, model_version=model_version, achieved=_achieved(s, value, y_arr))


def for_precision(
    scores: np.ndarray, y: np.ndarray, precision: float, *, model_version: str | None = None, version: int = 1
) -> Threshold:
    """The lowest value whose alerts on validation reach ``precision``: the most recall at that precision.

    Raises ValueError when no threshold reaches it (the model cannot deliver that precision on this data).
    """
    if not 0.0 < precision <= 1.0:
        raise ValueError(f"target precision must be in (0, 1], got {precision}")
    s = _validated(scores)
    y_arr = np.asarray(y).astype(np.int64)
    if y_arr.shape != s.shape:
        raise ValueError(f"labels have shape {y_arr.shape}, scores {s.shape}")
    if not (y_arr == 1).any():
        raise ValueError("validation data has no frauds: cannot calibrate for precision")
    order = np.argsort(-s, kind="stable")
    ordered, hits = s[order], y_arr[order]
    tp = np.cumsum(hits)
    flagged = np.arange(1, len(s) + 1)
    # A cut after position k-1 is only realisable where the next score is strictly lower (ties alert together).
    distinct = np.r_[ordered[:-1] > ordered[1:], True]
    ok = distinct & (tp / flagged >= precision)
    if not ok.any():
        best = float((tp / flagged)[distinct].max())
        raise ValueError(f"no threshold reaches precision {precision} on the validation data (best {best:.3f})")
    k = int(np.flatnonzero(ok)[-1]) + 1
    value = float(ordered[k]) if k < len(ordered) else float(np.nextafter(ordered[-1], -np.inf))
    return Threshold(
        value, PRECISION, precision, version, model_version=model_version, achieved=_achieved(s, value, y_arr)
    )


def calibrate(
    scores: np.ndarray,
    method: str,
    target: float,
    y: np.ndarray | None = None,
    *,
    model_version: str | None = None,
    version: int = 1,
) -> Threshold:
    if method == ALERT_RATE:
        return for_alert_rate(scores, target, y, model_version=model_version, version=version)
    if method == PRECISION:
        if y is None:
            raise ValueError("calibrating for precision needs labels")
        return for_precision(scores, y, target, model_version=model_version, version=version)
    raise ValueError(f"threshold method must be one of {METHODS}, got {method!r}")


def recalibrate(
    previous: Threshold,
    scores: np.ndarray,
    y: np.ndarray | None = None,
    *,
    target: float | None = None,
    method: str | None = None,
) -> Threshold:
    """A new version of ``previous`` for the same model, from fresh scores; the model is untouched."""
    return calibrate(
        scores,
        method or previous.method,
        previous.target if target is None else target,
        y,
        model_version=previous.model_version,
        version=previous.version + 1,
    )
