"""Which columns are a model's inputs: every value column of the frame it is trained on, except a declared few.

The KSQL statements define the features: a model's inputs are the value columns of the stream it scores
(the frame it is trained on), minus the key, identity, event-time and label columns declared here in
:data:`NON_FEATURE_COLUMNS`. A model learns its inputs' names (and types) from its training frame, in column
order, as scikit-learn's ``fit`` learns ``feature_names_in_``; everything else asks the model, never a
constant. Names match case-insensitively because ksqlDB upper-cases unquoted identifiers (``AMOUNT``) while
CSV files use ``Amount``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

logger = logging.getLogger(__name__)

LABEL_COLUMN = "Class"
"""Ground truth (1 = fraud). Never an input."""

NON_FEATURE_COLUMNS: tuple[str, ...] = (
    "PAYMENT_ID",
    "TRANSACTION_ID",
    "CUSTOMER_ID",
    "Id",
    "Timestamp",
    "User",
    "EVENT_TIME",
    "ROWTIME",
    "ROWPARTITION",
    "ROWOFFSET",
    "WINDOWSTART",
    "WINDOWEND",
    LABEL_COLUMN,
)
"""Columns a frame may carry that are never inputs: the stream's key, identities, event times, the label.

The one place that says so: anything else a training frame carries is an input of the model trained on it.
"""

_NON_FEATURE = frozenset(c.lower() for c in NON_FEATURE_COLUMNS)

FEATURE_TYPES = ("double", "float", "long", "int", "boolean")
"""Avro primitive names of the types an input may have (what the workers can decode into a number)."""

Batch = np.ndarray | pd.DataFrame | pa.Table | pa.RecordBatch


class FeatureMismatchError(ValueError):
    """A batch's columns do not match the columns the model was trained on."""


def is_feature(name: str) -> bool:
    """Whether a column is an input when a frame carries it (not a key, identity, event time or label)."""
    return str(name).lower() not in _NON_FEATURE


def _names(batch: Batch) -> list[str]:
    if isinstance(batch, pd.DataFrame):
        return [str(c) for c in batch.columns]
    if isinstance(batch, (pa.Table, pa.RecordBatch)):
        return list(batch.schema.names)
    raise TypeError(f"expected a pandas DataFrame or pyarrow Table/RecordBatch, got {type(batch).__name__}")


def _pandas_type(dtype: Any) -> str | None:
    kind = np.dtype(dtype).kind if isinstance(dtype, np.dtype) else None
    if kind is None:  # pandas extension dtypes (nullable Float64, Int64, boolean)
        numpy_type = getattr(dtype, "numpy_dtype", None)
        kind = np.dtype(numpy_type).kind if numpy_type is not None else None
        dtype = numpy_type
    if kind == "b":
        return "boolean"
    if kind == "f":
        return "float" if np.dtype(dtype).itemsize <= 4 else "double"
    if kind is not None and kind in "iu":
        return "int" if np.dtype(dtype).itemsize <= 4 and kind == "i" else "long"
    return None


def _arrow_type(dtype: pa.DataType) -> str | None:
    if pa.types.is_boolean(dtype):
        return "boolean"
    if pa.types.is_floating(dtype):
        return "float" if dtype.bit_width <= 32 else "double"
    if pa.types.is_integer(dtype):
        return "int" if dtype.bit_width <= 32 and pa.types.is_signed_integer(dtype) else "long"
    return None


def column_types(batch: pd.DataFrame | pa.Table | pa.RecordBatch) -> dict[str, str | None]:
    """Each column's type as an Avro primitive name (None: not a number or a boolean)."""
    if isinstance(batch, pd.DataFrame):
        return {str(c): _pandas_type(t) for c, t in batch.dtypes.items()}
    if isinstance(batch, (pa.Table, pa.RecordBatch)):
        return {f.name: _arrow_type(f.type) for f in batch.schema}
    raise TypeError(f"expected a pandas DataFrame or pyarrow Table/RecordBatch, got {type(batch).__name__}")


@dataclass(frozen=True)
class FeatureSet:
    """A model's inputs as learnt at ``fit``: names in order, their types, and the statements behind them.

    ``types`` is None for artifacts saved before types were recorded; ``ksql_sha256`` identifies the
    ``ksql/`` statements the training frame came out of (None when no statements were found).
    """

    names: tuple[str, ...]
    types: tuple[str, ...] | None = None
    ksql_sha256: str | None = None

    def __post_init__(self) -> None:
        if self.types is not None and len(self.types) != len(self.names):
            raise ValueError(f"{len(self.names)} feature names but {len(self.types)} types")
        seen: dict[str, str] = {}
        for name in self.names:
            if name.lower() in seen:
                raise FeatureMismatchError(f"features {seen[name.lower()]!r} and {name!r} differ only in case")
            seen[name.lower()] = name

    @classmethod
    def learn(cls, batch: Batch, ksql_sha256: str | None = None) -> FeatureSet:
        """The inputs a model fitted on ``batch`` has: every column but the non-feature ones, in column order.

        A NumPy array has no column names, so its columns are named ``x0``, ``x1``, ... (as scikit-learn's
        ``get_feature_names_out`` does); the workers, which pick inputs by name, need a model fitted on a table.
        """
        if isinstance(batch, np.ndarray):
            if batch.ndim != 2:
                raise FeatureMismatchError(f"expected a 2-D array, got shape {batch.shape}")
            kind = _pandas_type(batch.dtype)
            return cls(tuple(f"x{i}" for i in range(batch.shape[1])), (kind or "double",) * batch.shape[1], ksql_sha256)
        types = column_types(batch)
        names = [c for c in _names(batch) if is_feature(c)]
        if not names:
            raise FeatureMismatchError(f"no input columns: every column of {list(types)} is a key, identity or label")
        wrong = {c: str(_dtype_of(batch, c)) for c in names if types[c] is None}
        if wrong:
            raise FeatureMismatchError(
                f"input columns must be numbers or booleans: {wrong} (cast them in ksql/, or declare them in "
                "models.features.NON_FEATURE_COLUMNS if they are not inputs)"
            )
        return cls(tuple(names), tuple(types[c] for c in names), ksql_sha256)  # type: ignore[misc]

    def to_metadata(self) -> dict[str, Any]:
        """What ``model.json`` records (``feature_names`` stays for readers that know only the names)."""
        return {
            "feature_names": list(self.names),
            "features": [{"name": n, "type": t} for n, t in zip(self.names, self.types or (None,) * len(self.names))],
            "ksql_sha256": self.ksql_sha256,
        }

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> FeatureSet:
        """Read back :meth:`to_metadata`; an older ``model.json`` with names only gives ``types=None``."""
        features = meta.get("features")
        if features:
            names = tuple(str(f["name"]) for f in features)
            types = tuple(f.get("type") for f in features)
            return cls(names, None if None in types else types, meta.get("ksql_sha256"))
        names = meta.get("feature_names") or meta.get("params", {}).get("feature_names")
        if not names:
            raise ValueError("model.json names no input features")
        return cls(tuple(names), None, meta.get("ksql_sha256"))


def model_inputs(model: Any) -> list[dict[str, str | None]]:
    """A fitted model's inputs as ``[{"name", "type"}]`` for its card (type None where the kind does not say)."""
    features = getattr(model, "features_", None)
    if isinstance(features, FeatureSet):
        return features.to_metadata()["features"]
    return [{"name": name, "type": None} for name in model.feature_names]


def _dtype_of(batch: Batch, column: str) -> Any:
    if isinstance(batch, pd.DataFrame):
        return batch[column].dtype
    return batch.schema.field(column).type


def current_statements_hash() -> str | None:
    """The hash of the ``ksql/`` statements in use, or None where there are none (a model trained elsewhere)."""
    from fraudstream.statements import StatementsNotFound, statements_hash

    try:
        return statements_hash()
    except StatementsNotFound:
        logger.warning("no ksql/ statements found: the model will not record which statements made its inputs")
        return None


def _resolve(columns: Sequence[str], wanted: Sequence[str]) -> tuple[list[str], list[str]]:
    """Map ``wanted`` names onto ``columns`` case-insensitively: (actual names in wanted order, missing names)."""
    by_lower: dict[str, str] = {}
    for name in columns:
        key = str(name).lower()
        if key in by_lower:
            raise FeatureMismatchError(f"batch has columns that differ only in case: {by_lower[key]!r} and {name!r}")
        by_lower[key] = str(name)
    found = [by_lower[w.lower()] for w in wanted if w.lower() in by_lower]
    missing = [w for w in wanted if w.lower() not in by_lower]
    return found, missing


def check_columns(columns: Sequence[str], feature_names: Sequence[str]) -> list[str]:
    """Return the batch's names for ``feature_names`` (in model order), or raise naming the missing ones.

    Columns the model does not use are ignored: a stream that gained a column must still be scorable by
    the models trained before it (the registry compares versions on the same rows).
    """
    found, missing = _resolve(columns, feature_names)
    if missing:
        raise FeatureMismatchError(
            f"batch columns do not match the model's {len(feature_names)} input columns: missing {missing}"
        )
    return found


def feature_matrix(batch: Batch, feature_names: Sequence[str], dtype: type = np.float32) -> np.ndarray:
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


class LearntInputs:
    """The inputs a model learnt at fit (``features_``, a FeatureSet), under the names callers use."""

    features_: FeatureSet | None = None

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The inputs learnt by ``fit``, in the order the model takes them (empty before fitting)."""
        return self.features_.names if self.features_ is not None else ()

    @property
    def feature_names_in_(self) -> np.ndarray:
        """scikit-learn's name for :attr:`feature_names`: defined once fitted."""
        if self.features_ is None:
            raise AttributeError("feature_names_in_ is set by fit()")
        return np.asarray(self.features_.names, dtype=object)
