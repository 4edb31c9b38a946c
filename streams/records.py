"""Decode, validate and encode records in whole batches.

Input values are Confluent-framed Avro (magic byte 0, 4-byte schema id, body) as ksqlDB writes the
features stream. Which fields are read is the production model's business: its feature names, matched
case-insensitively against the writer schema's fields wherever they sit (a :class:`WriterLayout` per
schema id and model). fastavro decodes ~70k such records/s in Python, so when every field up to the last
feature is fixed-width when non-null (``double``, ``float``, ``boolean``, each optionally a union with
null), a batch is decoded with NumPy in one pass (~2M records/s): the leading bytes of every record are
joined, the union branches checked and the values viewed in place. The rest of each record is checked
against a set of tails already proven valid by fastavro. Varint fields (``int``, ``long``) before a
feature, a null in the fixed part, or any record the fast path does not accept, is decoded by fastavro,
which gives the precise error for the dead letter.
"""

from __future__ import annotations

import io
import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import fastavro
import numpy as np

from fraudstream import wire

HEADER = wire.HEADER_SIZE

# Dead-letter reasons (the `reason` label of fraudstream_dead_letters_total).
DECODE = "decode"
SCHEMA = "schema"
VALIDATION = "validation"
SCORING = "scoring"
REASONS = (DECODE, SCHEMA, VALIDATION, SCORING)

NUMERIC_TYPES = frozenset({"double", "float", "int", "long", "boolean"})
"""Avro types a feature may have: fastavro decodes any of them into a number."""
_FIXED = {"double": "<f8", "float": "<f4", "boolean": "u1"}
"""Avro types of a fixed width (what the NumPy fast path can view in place), as NumPy formats."""


class RecordError(ValueError):
    """A record that cannot be scored, with the dead-letter reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def schema_id(value: bytes | None) -> int:
    """The schema id of a Confluent-framed value, or a RecordError."""
    try:
        return wire.schema_id(value)
    except wire.WireFormatError:
        raise RecordError(DECODE, "not Confluent Avro: expected magic byte 0 and a 4-byte schema id") from None


def _non_null(branches: Any) -> tuple[list[Any], int | None]:
    """The non-null types of a field and the index of the null branch (None if not a union)."""
    if isinstance(branches, list):
        return [b for b in branches if b != "null"], (branches.index("null") if "null" in branches else None)
    return [branches], None


def _fixed_cell(branches: Any) -> tuple[str, int | None] | None:
    """(NumPy format, zigzag union branch or None) of a field that is fixed-width when non-null, else None."""
    if isinstance(branches, str):
        return (_FIXED[branches], None) if branches in _FIXED else None
    if isinstance(branches, list) and len(branches) == 2 and "null" in branches:
        (kind,) = [b for b in branches if b != "null"]
        if isinstance(kind, str) and kind in _FIXED:
            return _FIXED[kind], 2 * branches.index(kind)  # the branch index, zigzag-encoded
    return None


_CELL = np.dtype([("tag", "u1"), ("x", "<f8")])
"""A nullable double as ksqlDB writes it: the union branch (zigzag) and a little-endian double, 9 bytes."""


@dataclass
class WriterLayout:
    """What one writer schema means for one model: where its features are and whether the fast path applies.

    The fast path reads the fixed-width prefix of a record (every field up to the model's last feature).
    ``uniform_tag`` is set when that prefix is nothing but nullable doubles with the same union branch (what
    ksqlDB writes for DOUBLE columns): one strided view then covers it. Otherwise ``cells`` is the prefix as
    a structured dtype, with the union branches and booleans checked at their byte offsets.
    """

    schema_id: int
    schema: Any
    feature_fields: tuple[str, ...] = ()
    error: str | None = None
    fast: bool = False
    prefix_size: int = 0
    uniform_tag: int | None = None
    positions: np.ndarray | None = None
    """Uniform prefix: each feature's cell, in model order (None: the prefix is the features in order)."""
    cells: np.dtype | None = None
    columns: tuple[str, ...] = ()
    tag_offsets: np.ndarray = field(default_factory=lambda: np.empty(0, np.intp))
    tags: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint8))
    bool_offsets: np.ndarray = field(default_factory=lambda: np.empty(0, np.intp))
    tail_schema: Any = None
    good_tails: set[bytes] = field(default_factory=set)

    @property
    def n_features(self) -> int:
        return len(self.feature_fields)

    @classmethod
    def from_schema(cls, schema_id: int, schema_json: dict[str, Any], feature_names: Sequence[str]) -> WriterLayout:
        schema = fastavro.parse_schema(schema_json)
        layout = cls(schema_id, schema, tuple(feature_names))
        if schema_json.get("type") != "record":
            layout.error = f"schema {schema_id} is a {schema_json.get('type')!r}, not a record"
            return layout
        fields = schema_json["fields"]
        by_lower: dict[str, int] = {}
        for i, f in enumerate(fields):
            if f["name"].lower() in by_lower:
                layout.error = f"schema {schema_id} has fields that differ only in case: {f['name']!r}"
                return layout
            by_lower[f["name"].lower()] = i
        missing = [c for c in feature_names if c.lower() not in by_lower]
        if missing:
            layout.error = f"schema {schema_id} lacks the model's input fields {missing}"
            return layout
        index = [by_lower[c.lower()] for c in feature_names]
        wrong = [
            c
            for c, i in zip(feature_names, index)
            if not _non_null(fields[i]["type"])[0]
            or not set(map(str, _non_null(fields[i]["type"])[0])) <= NUMERIC_TYPES
        ]
        if wrong:
            layout.error = f"schema {schema_id} has non-numeric input fields {wrong}"
            return layout
        layout.feature_fields = tuple(fields[i]["name"] for i in index)
        k = max(index) + 1 if index else 0
        cells = [_fixed_cell(f["type"]) for f in fields[:k]]
        if any(c is None for c in cells):
            return layout  # a varint or a variable-width field before a feature: fastavro decodes
        layout.fast = True
        layout.tail_schema = fastavro.parse_schema({**schema_json, "fields": fields[k:]}) if fields[k:] else None
        tags = {tag for _, tag in cells}  # type: ignore[misc]
        if {fmt for fmt, _ in cells} == {"<f8"} and len(tags) == 1 and None not in tags:  # type: ignore[misc]
            layout.uniform_tag = tags.pop()
            layout.prefix_size = _CELL.itemsize * k
            if index != list(range(k)):
                layout.positions = np.asarray(index, np.intp)
            return layout
        names, formats, offsets, tag_offsets, tag_values, bool_offsets = [], [], [], [], [], []
        offset = 0
        for i, (fmt, tag) in enumerate(cells):  # type: ignore[misc]
            if tag is not None:
                tag_offsets.append(offset)
                tag_values.append(tag)
                offset += 1
            if fmt == "u1":
                bool_offsets.append(offset)
            names.append(f"f{i}")
            formats.append(fmt)
            offsets.append(offset)
            offset += np.dtype(fmt).itemsize
        layout.prefix_size = offset
        layout.cells = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": offset})
        layout.columns = tuple(f"f{i}" for i in index)
        layout.tag_offsets = np.asarray(tag_offsets, np.intp)
        layout.tags = np.asarray(tag_values, np.uint8)
        layout.bool_offsets = np.asarray(bool_offsets, np.intp)
        return layout


def _slow_row(layout: WriterLayout, value: bytes) -> list[float]:
    """Decode one record with fastavro and return its features, or raise a RecordError."""
    body = io.BytesIO(value[HEADER:])
    try:
        record = fastavro.schemaless_reader(body, layout.schema, None)
    except Exception as error:  # fastavro raises several types for truncated or corrupt bodies
        raise RecordError(DECODE, f"Avro body does not match schema {layout.schema_id}: {error!r}") from None
    if body.tell() != len(value) - HEADER:
        raise RecordError(
            DECODE, f"{len(value) - HEADER - body.tell()} bytes left over after a record of schema {layout.schema_id}"
        )
    row = []
    for name in layout.feature_fields:
        x = record.get(name)
        if x is None:
            raise RecordError(VALIDATION, f"feature {name} is missing (null)")
        x = float(x)
        if not math.isfinite(x):
            raise RecordError(VALIDATION, f"feature {name} is {x} (must be finite)")
        row.append(x)
    return row


@dataclass
class Decoded:
    """A batch's feature matrix (rows in the order of `index`) and the records that failed, by position."""

    features: np.ndarray
    index: np.ndarray
    errors: dict[int, RecordError]


def _fast(layout: WriterLayout, blob: bytes, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Features of `m` joined prefixes and whether each record's prefix is valid (branches, booleans, finite)."""
    if layout.uniform_tag is not None:
        cells = np.frombuffer(blob, _CELL).reshape(m, -1)
        ok = (cells["tag"] == layout.uniform_tag).all(axis=1)
        x = np.array(cells["x"]) if layout.positions is None else cells["x"][:, layout.positions]
    else:
        raw = np.frombuffer(blob, np.uint8).reshape(m, layout.prefix_size)
        ok = np.ones(m, bool)
        if len(layout.tag_offsets):
            ok &= (raw[:, layout.tag_offsets] == layout.tags).all(axis=1)
        if len(layout.bool_offsets):
            ok &= (raw[:, layout.bool_offsets] <= 1).all(axis=1)
        cells = np.frombuffer(blob, layout.cells)
        x = np.empty((m, layout.n_features))
        for j, name in enumerate(layout.columns):
            x[:, j] = cells[name]
    return x, ok & np.isfinite(x).all(axis=1)


def decode_batch(values: Sequence[bytes], layout: WriterLayout) -> Decoded:
    """Features of records that share `layout`'s schema id; rows that fail go to `errors` with the reason."""
    n_features = layout.n_features
    errors: dict[int, RecordError] = {}
    if layout.error is not None:
        return Decoded(
            np.empty((0, n_features)),
            np.empty(0, np.int64),
            {i: RecordError(SCHEMA, layout.error) for i in range(len(values))},
        )
    rows: list[list[float]] = []
    slow_index: list[int] = []
    fast_features = np.empty((0, n_features))
    fast_index = np.empty(0, np.int64)
    if layout.fast:
        end = HEADER + layout.prefix_size
        n = len(values)
        candidates = np.flatnonzero(np.fromiter(map(len, values), np.int64, n) >= end)
        chosen = values if len(candidates) == n else [values[i] for i in candidates.tolist()]
        x, ok = _fast(layout, b"".join([v[HEADER:end] for v in chosen]), len(chosen))
        ok &= _tails_ok(layout, [v[end:] for v in chosen])
        fast_index, fast_features = (candidates, x) if ok.all() else (candidates[ok], x[ok])
        rest = np.ones(n, bool)
        rest[fast_index] = False
        slow = np.flatnonzero(rest).tolist()
    else:
        slow = list(range(len(values)))
    for i in slow:
        try:
            rows.append(_slow_row(layout, values[i]))
            slow_index.append(i)
        except RecordError as error:
            errors[i] = error
    if slow_index:
        features = np.vstack([fast_features, np.asarray(rows, np.float64).reshape(len(rows), n_features)])
        index = np.concatenate([fast_index, np.asarray(slow_index, np.int64)])
    else:
        features, index = fast_features, fast_index
    return Decoded(features, index, errors)


def _tails_ok(layout: WriterLayout, tails: list[bytes]) -> np.ndarray:
    """`_tail_ok` of each tail, checking each distinct tail once (a batch holds a handful)."""
    verdicts = {tail: _tail_ok(layout, tail) for tail in set(tails)}
    if all(verdicts.values()):
        return np.ones(len(tails), bool)
    return np.fromiter(map(verdicts.__getitem__, tails), bool, len(tails))


def _tail_ok(layout: WriterLayout, tail: bytes) -> bool:
    """Whether the bytes after the features are exactly one valid encoding of the remaining fields."""
    if tail in layout.good_tails:
        return True
    if layout.tail_schema is None:
        return tail == b""
    stream = io.BytesIO(tail)
    try:
        fastavro.schemaless_reader(stream, layout.tail_schema, None)
    except Exception:
        return False
    if stream.tell() != len(tail):
        return False
    if len(layout.good_tails) < 10_000:
        layout.good_tails.add(tail)
    return True


# output ------------------------------------------------------------------------------------------------

SCORE_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "FraudScore",
    "namespace": "fraudstream",
    "doc": "One model score of one payment, with the lineage to reproduce it.",
    "fields": [
        {"name": "payment_id", "type": ["null", "string"], "default": None},
        {"name": "source_partition", "type": "int"},
        {"name": "source_offset", "type": "long"},
        {"name": "event_timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "score", "type": "double"},
        {"name": "threshold", "type": "double"},
        {"name": "is_fraud", "type": "boolean"},
        {"name": "model_name", "type": "string"},
        {"name": "model_version", "type": "int"},
        {"name": "threshold_version", "type": "int"},
        {"name": "ksql_hash", "type": "string"},
        {"name": "scored_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}


def register_score_schema(registry: Any, topic: str) -> int:
    """Register SCORE_SCHEMA as `<topic>-value` with a confluent-kafka `SchemaRegistryClient`; its id.

    The workers do this when they start; `fraudstream up` does it first, because statements that read
    the scores (ksql/090-live-quality.sql) infer their columns from this schema.
    """
    from confluent_kafka.schema_registry import Schema

    return registry.register_schema(f"{topic}-value", Schema(json.dumps(SCORE_SCHEMA), "AVRO"))


def _zigzag(n: int) -> bytes:
    """Avro's int/long encoding: zigzag, then base-128 varint."""
    n = (n << 1) ^ (n >> 63)
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _string(value: str) -> bytes:
    data = value.encode()
    return _zigzag(len(data)) + data


_DOUBLE = struct.Struct("<d").pack


def _varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Avro int/long encodings of int64 values at once: a byte matrix (one row each, left-aligned) and lengths."""
    v = np.asarray(values, np.int64)
    z = ((v << 1) ^ (v >> 63)).view(np.uint64)  # zigzag
    width = max(1, (int(z.max(initial=0)).bit_length() + 6) // 7)
    shifts = np.arange(0, 7 * width, 7, dtype=np.uint64)
    groups = ((z[:, None] >> shifts) & np.uint64(0x7F)).astype(np.uint8)
    more = np.zeros(groups.shape, bool)
    more[:, :-1] = (z[:, None] >> shifts[1:]) != 0  # a continuation bit where higher groups follow
    groups |= more.view(np.uint8) << 7
    return groups, 1 + more.sum(axis=1)


def _join_rows(columns: Sequence[tuple[np.ndarray, np.ndarray | None]], n: int) -> list[bytes]:
    """One bytes object per row from byte-matrix columns; a column's row is cut to its length (None: whole)."""
    keep = np.hstack(
        [
            np.ones(matrix.shape, bool) if lengths is None else np.arange(matrix.shape[1]) < lengths[:, None]
            for matrix, lengths in columns
        ]
    )
    blob = np.hstack([matrix for matrix, _ in columns])[keep].tobytes()
    sizes = sum(np.full(n, matrix.shape[1]) if lengths is None else lengths for matrix, lengths in columns)
    ends = np.cumsum(sizes)
    return [blob[a:b] for a, b in zip((ends - sizes).tolist(), ends.tolist())]


class ScoreEncoder:
    """Confluent-framed Avro of SCORE_SCHEMA for one batch, every record at once with NumPy.

    fastavro takes ~5 µs per record here (with the dict it needs), joining pre-encoded parts per record
    ~1.5 µs; encoding the batch's columns as byte matrices ~0.5 µs per record. What is the same for the
    batch is encoded once. tests/test_streams_records.py checks the bytes against fastavro.
    """

    def __init__(
        self,
        schema_id: int,
        threshold: float,
        model_name: str,
        model_version: int,
        threshold_version: int,
        ksql_hash: str,
        scored_at_ms: int,
    ) -> None:
        self.head = wire.header(schema_id)
        self.threshold = _DOUBLE(threshold)
        self.tail = b"".join(
            (
                _string(model_name),
                _zigzag(model_version),
                _zigzag(threshold_version),
                _string(ksql_hash),
                _zigzag(scored_at_ms),
            )
        )

    def encode(
        self,
        payment_ids: Sequence[bytes | None],
        partitions: np.ndarray,
        offsets: np.ndarray,
        event_timestamps_ms: np.ndarray,
        scores: np.ndarray,
        is_fraud: np.ndarray,
    ) -> list[bytes]:
        """The values of one score per row (payment ids are the records' keys, None for no key)."""
        n = len(payment_ids)
        if not n:
            return []
        try:
            lengths = np.fromiter(map(len, payment_ids), np.int64, n)  # type: ignore[arg-type]
        except TypeError:  # a record without a key
            lengths = np.fromiter((-1 if k is None else len(k) for k in payment_ids), np.int64, n)
        present = lengths >= 0
        ids = np.array([k or b"" for k in payment_ids], dtype=f"S{max(int(lengths.max()), 1)}")
        id_bytes = ids.view(np.uint8).reshape(n, -1)
        id_lengths, id_length_sizes = _varints(np.maximum(lengths, 0))
        fixed = np.empty((n, 17), np.uint8)  # score, threshold, is_fraud
        fixed[:, :8] = np.asarray(scores, "<f8").view(np.uint8).reshape(n, 8)
        fixed[:, 8:16] = np.frombuffer(self.threshold, np.uint8)
        fixed[:, 16] = np.asarray(is_fraud, bool)
        return _join_rows(
            [
                (np.broadcast_to(np.frombuffer(self.head, np.uint8), (n, len(self.head))), None),
                ((present.astype(np.uint8) * 2)[:, None], None),  # the union branch: 0 null, 1 string
                (id_lengths, np.where(present, id_length_sizes, 0)),
                (id_bytes, np.maximum(lengths, 0)),
                _varints(partitions),
                _varints(offsets),
                _varints(event_timestamps_ms),
                (fixed, None),
                (np.broadcast_to(np.frombuffer(self.tail, np.uint8), (n, len(self.tail))), None),
            ],
            n,
        )


def parse_json_rows(
    body: Any, feature_names: Sequence[str], feature_types: Sequence[str] | None = None
) -> tuple[np.ndarray, list[str | None]]:
    """Feature matrix (in the order of the model's `feature_names`) and ids from POST /score's JSON (one
    object or a list), or a ValueError saying what is wrong. Field names match case-insensitively; JSON
    true/false is accepted for the features whose type is boolean (a number everywhere else)."""
    booleans = {c for c, t in zip(feature_names, feature_types or ()) if t == "boolean"}
    rows = body if isinstance(body, list) else [body]
    if not rows:
        raise ValueError("expected a JSON object or a non-empty list of objects with the model's input fields")
    matrix = np.empty((len(rows), len(feature_names)))
    ids: list[str | None] = []
    for r, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"record {r}: expected a JSON object, got {type(row).__name__}")
        by_lower = {str(k).lower(): v for k, v in row.items()}
        missing = [c for c in feature_names if c.lower() not in by_lower]
        if missing:
            raise ValueError(f"record {r}: missing fields {missing}")
        for j, c in enumerate(feature_names):
            x = by_lower[c.lower()]
            if isinstance(x, bool) and c in booleans:
                x = float(x)
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
                raise ValueError(f"record {r}: field {c} must be a finite number, got {x!r}")
            matrix[r, j] = x
        pid = by_lower.get("payment_id")
        ids.append(None if pid is None else str(pid))
    return matrix, ids
