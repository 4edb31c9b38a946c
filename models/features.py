"""The model's input columns, in one place.

The inputs are exactly the value columns of the preprocessed stream (``creditcardfraud_preprocessed_avro``)
minus the label; a test parses ``ksql/020-preprocessed.sql`` with the engine's parser and fails if the
two ever differ. Everything else asks this module for columns and for feature matrices,
so a batch whose columns do not match the model's fails here, with the columns named.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

FEATURE_COLUMNS: tuple[str, ...] = ("Time", *(f"V{i}" for i in range(1, 29)), "Amount")
"""Model inputs, in the order the model sees them."""

LABEL_COLUMN = "Class"
"""Ground truth (1 = fraud). Never an input."""

STANDARDISED_COLUMNS: tuple[str, ...] = ("Time", "Amount")
"""Columns the model standardises (V1..V28 are PCA components, already centred and scaled)."""

NON_FEATURE_COLUMNS: tuple[str, ...] = ("PAYMENT_ID", "Id", "Timestamp", "User", LABEL_COLUMN)
"""Columns a batch may carry besides the features (the stream's key, identity, event time, label); ignored."""

Batch = np.ndarray | pd.DataFrame | pa.Table | pa.RecordBatch


class FeatureMismatchError(ValueError):
    """A batch's columns do not match the columns the model was trained on."""


def _resolve(columns: Sequence[str], wanted: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """Map ``wanted`` names onto ``columns``, case-insensitively.

    Case-insensitive because ksqlDB upper-cases unquoted identifiers (``TIME``, ``V1``, ``AMOUNT``) while
    the CSV files use ``Time``/``Amount``; both mean the same column. Returns (actual names in wanted
    order, missing wanted names, unexpected columns).
    """
    by_lower: dict[str, str] = {}
    for name in columns:
        key = str(name).lower()
        if key in by_lower:
            raise FeatureMismatchError(f"batch has columns that differ only in case: {by_lower[key]!r} and {name!r}")
        by_lower[key] = str(name)
    found = [by_lower[w.lower()] for w in wanted if w.lower() in by_lower]
    missing = [w for w in wanted if w.lower() not in by_lower]
    allowed = {w.lower() for w in wanted} | {c.lower() for c in NON_FEATURE_COLUMNS}
    unexpected = [str(c) for c in columns if str(c).lower() not in allowed]
    return found, missing, unexpected


def check_columns(columns: Sequence[str], feature_names: Sequence[str] = FEATURE_COLUMNS) -> list[str]:
    """Return the batch's names for ``feature_names`` (in model order), or raise naming the mismatch.

    Missing features and columns that are neither features nor known identity/label columns are both
    errors: an extra value column means the stream's schema changed under the model.
    """
    found, missing, unexpected = _resolve(columns, feature_names)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if unexpected:
            parts.append(f"unexpected {unexpected}")
        raise FeatureMismatchError(
            f"batch columns do not match the model's {len(feature_names)} input columns: " + "; ".join(parts)
        )
    return found


def feature_matrix(
    batch: Batch, feature_names: Sequence[str] = FEATURE_COLUMNS, dtype: type = np.float32
) -> np.ndarray:
    """The batch's features as a C-contiguous 2-D array in model column order.

    A NumPy array is taken to be in model order already (only its width can be checked); tables are
    matched by column name.
    """
    if isinstance(batch, np.ndarray):
        if batch.ndim != 2 or batch.shape[1] != len(feature_names):
            raise FeatureMismatchError(
                f"array of shape {batch.shape} does not match the model's {len(feature_names)} input "
                f"columns {list(feature_names)}"
            )
        return np.ascontiguousarray(batch, dtype=dtype)
    if isinstance(batch, pd.DataFrame):
        names = check_columns(list(batch.columns), feature_names)
        return np.ascontiguousarray(batch[names].to_numpy(dtype=dtype))
    if isinstance(batch, (pa.Table, pa.RecordBatch)):
        names = check_columns(batch.schema.names, feature_names)
        out = np.empty((batch.num_rows, len(names)), dtype=dtype)
        for j, name in enumerate(names):
            column = batch.column(name)
            if column.null_count:
                raise FeatureMismatchError(f"column {name!r} has {column.null_count} null values")
            out[:, j] = column.to_numpy(zero_copy_only=False)
        return out
    raise TypeError(
        f"expected a NumPy array, pandas DataFrame or pyarrow Table/RecordBatch, got {type(batch).__name__}"
    )


def has_label(batch: Batch) -> bool:
    """Whether a table carries the label column (arrays never do)."""
    if isinstance(batch, pd.DataFrame):
        names = batch.columns
    elif isinstance(batch, (pa.Table, pa.RecordBatch)):
        names = batch.schema.names
    else:
        return False
    return any(str(c).lower() == LABEL_COLUMN.lower() for c in names)


def labels(batch: pd.DataFrame | pa.Table | pa.RecordBatch) -> np.ndarray:
    """The label column as an int8 array (1 = fraud); the CSV sample quotes it as a string."""
    if isinstance(batch, (pa.Table, pa.RecordBatch)):
        batch = batch.select([c for c in batch.schema.names if c.lower() == LABEL_COLUMN.lower()]).to_pandas()
    matches = [c for c in batch.columns if str(c).lower() == LABEL_COLUMN.lower()]
    if not matches:
        raise FeatureMismatchError(f"batch has no label column {LABEL_COLUMN!r}; columns are {list(batch.columns)}")
    values = pd.to_numeric(batch[matches[0]], errors="raise")
    bad = ~values.isin([0, 1])
    if bad.any():
        raise ValueError(f"label column {LABEL_COLUMN!r} must be 0 or 1; found {sorted(values[bad].unique())[:5]}")
    return values.to_numpy(dtype=np.int8)
