"""Train / validation / test segregation.

Chronological is the default because it is how the model is used: trained on the past, scoring the
future; a random split leaks tomorrow's patterns into training and flatters the metrics. Frauds are rare
(0.17%), so a part can easily end up with too few of them to measure anything: such a split still comes
back, with a warning that says which part and how many.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models.features import labels

DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)
DEFAULT_MIN_FRAUDS = 10
PARTS = ("train", "validation", "test")


class UnevenSplitWarning(UserWarning):
    """A part of a split has too few frauds (or rows) to train or measure on reliably."""


@dataclass
class Split:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    method: str
    details: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def parts(self) -> dict[str, pd.DataFrame]:
        return {"train": self.train, "validation": self.validation, "test": self.test}

    def describe(self) -> dict:
        """Rows and frauds per part, for the model card."""
        summary: dict = {"method": self.method, **self.details}
        for name, frame in self.parts().items():
            frauds = int(labels(frame).sum()) if len(frame) else 0
            summary[name] = {"rows": len(frame), "frauds": frauds}
        if self.warnings:
            summary["warnings"] = list(self.warnings)
        return summary


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(
            f"fractions must be three non-negative numbers (train, validation, test) summing to 1, "
            f"got {list(fractions)}"
        )
    return tuple(float(f) for f in fractions)  # type: ignore[return-value]


def _cut(frame: pd.DataFrame, fractions: tuple[float, float, float]) -> list[pd.DataFrame]:
    n = len(frame)
    first = int(round(n * fractions[0]))
    second = first + int(round(n * fractions[1]))
    return [frame.iloc[:first], frame.iloc[first:second], frame.iloc[second:]]


def _finish(parts: Sequence[pd.DataFrame], method: str, details: dict, min_frauds: int) -> Split:
    split = Split(*parts, method=method, details=details)
    for name, frame in split.parts().items():
        if name == "validation" and len(frame) == 0:
            continue  # an empty validation part is a choice (no calibration), not an accident
        frauds = int(labels(frame).sum()) if len(frame) else 0
        if frauds < min_frauds:
            message = (
                f"uneven {method} split: the {name} part has {frauds} frauds in {len(frame)} rows "
                f"(fewer than {min_frauds}); its metrics will be unreliable"
            )
            split.warnings.append(message)
            warnings.warn(message, UnevenSplitWarning, stacklevel=3)
    return split


def time_column(frame: pd.DataFrame) -> str:
    """The event time: EVENT_TIME as the features stream serves it (ms), else Timestamp, else Time."""
    for name in ("EVENT_TIME", "Timestamp", "Time"):
        matches = [c for c in frame.columns if str(c).lower() == name.lower()]
        if matches:
            return matches[0]
    raise ValueError(f"no EVENT_TIME, Timestamp or Time column to order by; columns are {list(frame.columns)}")


def chronological_split(
    frame: pd.DataFrame,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    by: str | None = None,
    min_frauds: int = DEFAULT_MIN_FRAUDS,
) -> Split:
    """Oldest rows train, the next validate, the newest test. Ties keep file order (stable sort)."""
    fractions = _check_fractions(fractions)
    column = by or time_column(frame)
    key = frame[column]
    if column.lower() == "timestamp":
        key = pd.to_datetime(key, utc=True, format="ISO8601")
    ordered = frame.iloc[np.argsort(key.to_numpy(), kind="stable")]
    parts = _cut(ordered, fractions)
    details = {"by": column, "fractions": list(fractions)}
    for name, part in zip(PARTS, parts):
        if len(part):
            first, last = part[column].iloc[0], part[column].iloc[-1]
            if column.lower() == "event_time":  # milliseconds: shown as times
                first, last = (pd.Timestamp(int(v), unit="ms", tz="UTC").isoformat() for v in (first, last))
            details[f"{name}_range"] = [str(first), str(last)]
    return _finish(parts, "chronological", details, min_frauds)


def random_split(
    frame: pd.DataFrame,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    min_frauds: int = DEFAULT_MIN_FRAUDS,
) -> Split:
    """A seeded shuffle, then cut: the same seed gives the same parts."""
    fractions = _check_fractions(fractions)
    order = np.random.default_rng(seed).permutation(len(frame))
    parts = _cut(frame.iloc[order], fractions)
    return _finish(parts, "random", {"seed": seed, "fractions": list(fractions)}, min_frauds)


def explicit_split(
    frame: pd.DataFrame,
    train: Sequence,
    test: Sequence,
    validation: Sequence = (),
    by: str | None = None,
    min_frauds: int = DEFAULT_MIN_FRAUDS,
) -> Split:
    """Parts chosen by the caller: index labels of ``frame``, or values of column ``by`` (for example Id).

    Overlapping parts or unknown keys are errors: a row in two parts would leak, an unknown key means
    the selection was made on different data.
    """
    keys = frame.index if by is None else pd.Index(frame[by])
    if not keys.is_unique:
        raise ValueError(f"{'the index' if by is None else repr(by)} has duplicate values; cannot select by it")
    chosen = {"train": list(train), "validation": list(validation), "test": list(test)}
    seen: set = set()
    parts = []
    for name in PARTS:
        wanted = chosen[name]
        overlap = seen.intersection(wanted)
        if overlap:
            raise ValueError(f"{len(overlap)} keys are in more than one part, e.g. {sorted(map(str, overlap))[:3]}")
        seen.update(wanted)
        positions = keys.get_indexer(wanted)
        if (positions < 0).any():
            unknown = [k for k, p in zip(wanted, positions) if p < 0]
            raise ValueError(f"{len(unknown)} {name} keys are not in the data, e.g. {unknown[:3]}")
        parts.append(frame.iloc[positions])
    return _finish(parts, "explicit", {"by": by or "index", **{f"{n}_keys": len(chosen[n]) for n in PARTS}}, min_frauds)
