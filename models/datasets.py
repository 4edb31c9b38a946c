"""Training data described by where it came from, so that the same description loads the same rows.

A source is a small frozen dataclass whose ``describe()`` is a JSON-able dict from which
:func:`source_from_description` rebuilds it (the model card and the registry store that dict). Every
source yields pandas DataFrames in batches with the extended layout's columns (Id, Timestamp, User, Time,
V1..V28, Amount, Class), so training never cares where rows came from.

Sources implemented here: ``csv`` (either payment file layout) and ``generated`` (``stack.generate``).
Extension points for the next ones: add a dataclass with ``kind = "kafka"`` (a topic and an offset range
per partition, read through ``stack.kafka`` consumers; end offsets via ``stack.kafka.end_offsets``) or
``kind = "s3"`` (the S3 sink layout ``topics/<topic>/partition=<p>/...``, Avro or Parquet, listed files
pinned by key and ETag), implement ``describe``/``batches``, and register it with :func:`register_source`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from stack.payments import (
    EXTENDED_COLUMNS,
    KAGGLE_COLUMNS,
    KAGGLE_EPOCH,
    Layout,
    MalformedRow,
    Rejected,
    detect_layout,
    parse_row,
    source_stem,
)

log = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 50_000
NUMERIC_COLUMNS: tuple[str, ...] = KAGGLE_COLUMNS  # Time, V1..V28, Amount, Class


class DatasetSource(Protocol):
    kind: str

    def describe(self) -> dict[str, Any]:
        """Everything needed to load the same rows again (JSON-able; contains ``kind``)."""
        ...

    def batches(self, batch_rows: int = DEFAULT_BATCH_ROWS, progress: bool = False,
                rejected: list[Rejected] | None = None) -> Iterator[pd.DataFrame]:
        """DataFrames of at most ``batch_rows`` rows; rows that are not payments go to ``rejected``."""
        ...


_SOURCES: dict[str, Callable[[dict[str, Any]], DatasetSource]] = {}


def register_source(kind: str) -> Callable[[type], type]:
    """Class decorator: make ``source_from_description`` rebuild sources of ``kind`` with ``cls.from_description``."""
    def decorate(cls: type) -> type:
        _SOURCES[kind] = cls.from_description  # type: ignore[attr-defined]
        return cls
    return decorate


def source_from_description(description: dict[str, Any]) -> DatasetSource:
    kind = description.get("kind")
    if kind not in _SOURCES:
        raise ValueError(f"unknown dataset source kind {kind!r}; known: {sorted(_SOURCES)}")
    return _SOURCES[kind](description)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@register_source("csv")
@dataclass(frozen=True)
class CsvSource:
    """A payment CSV file in the Kaggle layout (with header) or the extended layout (without).

    ``sha256`` pins the content: loading a description whose file has changed is an error, because it
    would no longer be the same dataset. Kaggle-layout rows get the Id and Timestamp the producers give
    them (``<file stem>-<line>``, KAGGLE_EPOCH + Time) so both layouts yield the same columns.
    """

    path: str
    sha256: str | None = None
    kind: str = field(default="csv", init=False)

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> "CsvSource":
        return cls(path=description["path"], sha256=description.get("sha256"))

    def pinned(self) -> "CsvSource":
        """This source with its content hash filled in (what a description should carry)."""
        return self if self.sha256 else CsvSource(self.path, file_sha256(self.path))

    def layout(self) -> tuple[Layout, bool]:
        with open(self.path, newline="") as f:
            for text in f:
                if text.strip():
                    return detect_layout(next(csv.reader((text,))))
        raise ValueError(f"{self.path} is empty")

    def describe(self) -> dict[str, Any]:
        layout, _ = self.layout()
        path = Path(self.path)
        return {"kind": self.kind, "path": str(path.resolve()), "sha256": self.pinned().sha256,
                "bytes": path.stat().st_size, "layout": layout.value}

    def batches(self, batch_rows: int = DEFAULT_BATCH_ROWS, progress: bool = False,
                rejected: list[Rejected] | None = None) -> Iterator[pd.DataFrame]:
        if self.sha256 and file_sha256(self.path) != self.sha256:
            raise ValueError(f"{self.path} has changed since it was described (SHA-256 differs): "
                             "not the same dataset")
        layout, has_header = self.layout()
        with ExitStack() as stack:
            if progress:
                import rich.progress

                handle = stack.enter_context(
                    rich.progress.open(self.path, "rt", newline="", description=Path(self.path).name))
            else:
                handle = stack.enter_context(open(self.path, newline=""))
            texts: list[str] = []
            numbers: list[int] = []
            header_pending = has_header
            for number, text in enumerate(handle, start=1):
                if not text.strip():
                    continue  # blank lines carry no record (as for the producers)
                if header_pending:
                    header_pending = False
                    continue
                texts.append(text)
                numbers.append(number)
                if len(texts) == batch_rows:
                    yield self._parse(texts, np.asarray(numbers), layout, rejected)
                    texts, numbers = [], []
            if texts:
                yield self._parse(texts, np.asarray(numbers), layout, rejected)

    def _parse(self, texts: list[str], lines: np.ndarray, layout: Layout,
               rejected: list[Rejected] | None) -> pd.DataFrame:
        """A block of lines as a typed frame.

        Pandas' C parser converts the numbers when every line is well formed (the common case); when a
        line is not, the block is read as text (or, if a line has too many fields, split line by line)
        and each bad line is reported with the reason the producers would give.
        """
        columns = list(layout.columns)
        found: list[Rejected] = []
        frame = _read_block(texts, columns, numeric=True)
        if frame is None:
            frame = _read_block(texts, columns, numeric=False)
        if frame is None:  # a line with too many fields: split lines ourselves and set the misfits aside
            rows, kept = [], []
            for i, text in enumerate(texts):
                row = next(csv.reader((text.rstrip("\r\n"),)))
                if len(row) == len(columns):
                    rows.append(row)
                    kept.append(i)
                else:
                    self._reject(found, text, int(lines[i]), layout)
            frame = pd.DataFrame(rows, columns=columns, dtype=str)
            texts = [texts[i] for i in kept]
            lines = lines[kept]
        typed = self._convert(frame, texts, lines, layout, found)
        if rejected is not None:
            rejected.extend(sorted(found, key=lambda r: r.line))
        return typed

    def _reject(self, rejected: list[Rejected], text: str, line: int, layout: Layout) -> None:
        text = text.rstrip("\r\n")
        try:
            parse_row(next(csv.reader((text,))), layout, self.path, line)
            reason = "Class is empty: unlabelled rows cannot be trained or evaluated on"
        except MalformedRow as error:
            reason = str(error)
        rejected.append(Rejected(self.path, line, text, reason))

    def _convert(self, frame: pd.DataFrame, texts: list[str], lines: np.ndarray, layout: Layout,
                 rejected: list[Rejected]) -> pd.DataFrame:
        """Typed columns in the extended layout; rows that are not labelled payments are set aside."""
        for column in NUMERIC_COLUMNS:
            if frame[column].dtype != np.float64:
                frame[column] = pd.to_numeric(frame[column].str.strip(), errors="coerce")
        values = frame[list(NUMERIC_COLUMNS)].to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values).all(axis=1) | ~np.isin(frame["Class"].to_numpy(), (0, 1))
        if layout is Layout.EXTENDED:
            stamps = pd.to_datetime(frame["Timestamp"].str.strip(), utc=True, format="ISO8601", errors="coerce")
            bad |= stamps.isna().to_numpy() | (frame["Id"].fillna("").str.strip() == "").to_numpy()
        for i in np.flatnonzero(bad):
            self._reject(rejected, texts[i], int(lines[i]), layout)
        keep = ~bad
        frame = frame[keep]
        if layout is Layout.KAGGLE:
            stem = source_stem(self.path)
            frame.insert(0, "Id", [f"{stem}-{n}" for n in lines[keep]])
            stamps = pd.Timestamp(KAGGLE_EPOCH) + pd.to_timedelta(frame["Time"], unit="s")
            frame.insert(1, "Timestamp", stamps.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").str.replace(".000000Z", "Z"))
            frame.insert(2, "User", None)
        else:
            frame["Id"] = frame["Id"].str.strip()
            frame["User"] = frame["User"].str.strip().replace("", None)
        frame["Class"] = frame["Class"].astype(np.int8)
        frame["Time"] = frame["Time"].astype(np.float64)
        return frame[list(EXTENDED_COLUMNS)].reset_index(drop=True)


def _read_block(texts: list[str], columns: list[str], numeric: bool) -> pd.DataFrame | None:
    """The block parsed by pandas, or None when some line does not fit (wrong width, or not a number)."""
    dtype = {c: (np.float64 if numeric and c in NUMERIC_COLUMNS else str) for c in columns}
    try:
        frame = pd.read_csv(io.StringIO("".join(texts)), header=None, names=columns, dtype=dtype,
                            keep_default_na=False, na_values=[""], skip_blank_lines=False)
    except (ValueError, pd.errors.ParserError):
        return None
    if len(frame) != len(texts):
        return None
    return frame


@register_source("generated")
@dataclass(frozen=True)
class GeneratedSource:
    """Synthetic payments from ``stack.generate.generate_payments`` (same seed, same rows)."""

    rows: int
    seed: int = 0
    fraud_rate: float = 0.0017
    kind: str = field(default="generated", init=False)

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> "GeneratedSource":
        return cls(int(description["rows"]), int(description["seed"]), float(description["fraud_rate"]))

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "rows": self.rows, "seed": self.seed, "fraud_rate": self.fraud_rate}

    def batches(self, batch_rows: int = DEFAULT_BATCH_ROWS, progress: bool = False,
                rejected: list[Rejected] | None = None) -> Iterator[pd.DataFrame]:
        from stack.generate import generate_payments

        frame = generate_payments(self.rows, seed=self.seed, fraud_rate=self.fraud_rate)
        frame["Class"] = frame["Class"].astype(np.int8)
        starts = range(0, len(frame), batch_rows)
        if progress:
            import rich.progress

            starts = rich.progress.track(starts, description="generated payments", total=len(starts))
        for start in starts:
            yield frame.iloc[start:start + batch_rows].reset_index(drop=True)


@dataclass
class Dataset:
    frame: pd.DataFrame
    description: dict[str, Any]
    rejected: list[Rejected]


def load_dataset(source: DatasetSource, batch_rows: int = DEFAULT_BATCH_ROWS, progress: bool = False) -> Dataset:
    """All of a source's rows in one frame, described as ``{"source": <rebuildable>, "rows", "frauds", ...}``.

    Rows that are not payments are kept aside (``Dataset.rejected``), counted in the description and
    logged; they never silently disappear.
    """
    if isinstance(source, CsvSource):
        source = source.pinned()
    rejected: list[Rejected] = []
    parts = list(source.batches(batch_rows, progress=progress, rejected=rejected))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(EXTENDED_COLUMNS))
    frauds = int(frame["Class"].sum()) if len(frame) else 0
    description = {
        "source": source.describe(),
        "rows": int(len(frame)),
        "frauds": frauds,
        "fraud_rate": frauds / len(frame) if len(frame) else 0.0,
        "rejected_rows": len(rejected),
    }
    if rejected:
        description["rejected_examples"] = [str(r) for r in rejected[:5]]
        log.warning("%d rows of %s are not payments and were left out, e.g. %s", len(rejected),
                    source.kind, rejected[0])
    return Dataset(frame, description, rejected)
