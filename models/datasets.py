"""Training data described by where it came from, so that the same description loads the same rows.

A source is a small frozen dataclass whose ``describe()`` is a JSON-able dict from which
:func:`source_from_description` rebuilds it (the model card and the registry store that dict). Every
source yields pandas DataFrames in batches with the columns the features stream serves (its value columns
as written, ID and EVENT_TIME among them) and, for training, the label ``Class``.

Sources: ``served`` (the features as served, from a topic or the lake, joined with the labels known at a
cutoff: the point-in-time training set), ``kafka`` (a topic and an offset range per partition, Avro values
through a Schema Registry or JSON), ``lake`` (the objects Confluent's S3 sink writes,
``<topics.dir>/<topic>/partition=<p>/<topic>+<p>+<offset>.<avro|parquet>``), and, for payment files, ``csv``
(either labelled layout) and ``generated`` (``producers.generate``), which go through the statements'
offline reference (``models.reference``) so that they yield the same columns as the stream.
A source whose description needs resolving first (a file's hash, "to the end" of a topic, which objects
exist) has ``pinned()``, which :func:`load_dataset` calls so the stored description loads the same rows.
New kinds: a dataclass with ``describe``/``batches``/``from_description``, registered with
:func:`register_source`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from connectors.formats import SINK_FORMATS, SinkFormat, UnsupportedFormatError, format_names, format_of_extension
from fraudstream.credentials import schema_registry_conf
from models.features import LABEL_COLUMN, NON_FEATURE_COLUMNS
from models.reference import EVENT_TIME_COLUMN, ID_COLUMN, served_features
from producers.payments import (
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

logger = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 50_000
NUMERIC_COLUMNS: tuple[str, ...] = KAGGLE_COLUMNS  # of a payment file: Time, V1..V28, Amount, Class


class DatasetSource(Protocol):
    kind: str

    def describe(self) -> dict[str, Any]:
        """Everything needed to load the same rows again (JSON-able; contains ``kind``)."""
        ...

    def batches(
        self, batch_rows: int = DEFAULT_BATCH_ROWS, progress: bool = False, rejected: list[Rejected] | None = None
    ) -> Iterator[pd.DataFrame]:
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
    def from_description(cls, description: dict[str, Any]) -> CsvSource:
        return cls(path=description["path"], sha256=description.get("sha256"))

    def pinned(self) -> CsvSource:
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
        return {
            "kind": self.kind,
            "path": str(path.resolve()),
            "sha256": self.pinned().sha256,
            "bytes": path.stat().st_size,
            "layout": layout.value,
        }

    def batches(
        self, batch_rows: int = DEFAULT_BATCH_ROWS, progress: bool = False, rejected: list[Rejected] | None = None
    ) -> Iterator[pd.DataFrame]:
        """The file's payments through the statements' offline reference, in batches of ``batch_rows``.

        The holders' behaviour spans the whole file, so the payments are read (in blocks) before the
        served columns are computed over all of them.
        """
        payments = list(self._payments(batch_rows, progress, rejected))
        served = served_features(pd.concat(payments, ignore_index=True)) if payments else None
        for start in range(0, 0 if served is None else len(served), batch_rows):
            yield served.iloc[start : start + batch_rows].reset_index(drop=True)

    def _payments(self, batch_rows: int, progress: bool, rejected: list[Rejected] | None) -> Iterator[pd.DataFrame]:
        if self.sha256 and file_sha256(self.path) != self.sha256:
            raise ValueError(f"{self.path} has changed since it was described (SHA-256 differs): not the same dataset")
        layout, has_header = self.layout()
        if not layout.labelled:
            raise ValueError(f"{self.path} has no Class column: unlabelled payments cannot be trained or evaluated on")
        with ExitStack() as stack:
            if progress:
                import rich.progress

                handle = stack.enter_context(
                    rich.progress.open(self.path, "rt", newline="", description=Path(self.path).name)
                )
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

    def _parse(
        self, texts: list[str], lines: np.ndarray, layout: Layout, rejected: list[Rejected] | None
    ) -> pd.DataFrame:
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

    def _convert(
        self, frame: pd.DataFrame, texts: list[str], lines: np.ndarray, layout: Layout, rejected: list[Rejected]
    ) -> pd.DataFrame:
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
        frame = pd.read_csv(
            io.StringIO("".join(texts)),
            header=None,
            names=columns,
            dtype=dtype,
            keep_default_na=False,
            na_values=[""],
            skip_blank_lines=False,
        )
    except (ValueError, pd.errors.ParserError):
        return None
    if len(frame) != len(texts):
        return None
    return frame


@register_source("generated")
@dataclass(frozen=True)
class GeneratedSource:
    """Synthetic payments from ``producers.generate.generate_payments`` (same seed, same rows)."""

    rows: int
    seed: int = 0
    fraud_rate: float = 0.0017
    kind: str = field(default="generated", init=False)

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> GeneratedSource:
        return cls(int(description["rows"]), int(description["seed"]), float(description["fraud_rate"]))

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "rows": self.rows, "seed": self.seed, "fraud_rate": self.fraud_rate}

    def batches(
        self, batch_rows: int = DEFAULT_BATCH_ROWS, progress: bool = False, rejected: list[Rejected] | None = None
    ) -> Iterator[pd.DataFrame]:
        from producers.generate import generate_payments

        frame = generate_payments(self.rows, seed=self.seed, fraud_rate=self.fraud_rate)
        frame["Class"] = frame["Class"].astype(np.int8)
        frame = served_features(frame)  # over all of them: a holder's behaviour spans the batches
        starts = range(0, len(frame), batch_rows)
        if progress:
            import rich.progress

            starts = rich.progress.track(starts, description="generated payments", total=len(starts))
        for start in starts:
            yield frame.iloc[start : start + batch_rows].reset_index(drop=True)


# records from the pipeline (Kafka topics and the lake) ------------------------------------------------


def _served_frame(
    raw: pd.DataFrame,
    fallback_ids: Sequence[str],
    where: str,
    positions: Sequence[int],
    rejected: list[Rejected] | None,
) -> pd.DataFrame:
    """Records of a topic as served: every value column as written, and an ID for each.

    ID is the record's own ID (or PAYMENT_ID) field, else ``fallback_ids`` (the Kafka key, or the
    record's ``topic+partition+offset`` in the lake, where the S3 sink keeps no keys). A record whose
    numeric columns hold a null or a non-number cannot be a model input: it is set aside with the reason
    (``line`` is its offset).
    """
    by_lower = {str(c).lower(): c for c in raw.columns}
    frame = raw.reset_index(drop=True)
    ids = pd.Series(np.asarray(fallback_ids, dtype=object), dtype=object)
    for name in ("id", "payment_id"):
        if name in by_lower:
            ids = frame[by_lower[name]].astype(object).where(frame[by_lower[name]].notna(), ids)
            break
    frame = frame.drop(columns=[by_lower[n] for n in ("id", "payment_id") if n in by_lower])
    frame[ID_COLUMN] = ids.astype(str).to_numpy()
    identity = {c.lower() for c in NON_FEATURE_COLUMNS} | {ID_COLUMN.lower(), EVENT_TIME_COLUMN.lower()}
    numeric = [c for c in frame.columns if str(c).lower() not in identity and _is_numeric(frame[c])]
    if numeric:
        values = frame[numeric].to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            if rejected is not None:
                records = raw.to_dict("records")
                for i in np.flatnonzero(bad):
                    broken = [c for c, ok in zip(numeric, np.isfinite(values[i])) if not ok]
                    reason = f"{broken} missing or not a number"
                    rejected.append(Rejected(where, int(positions[i]), json.dumps(records[i], default=str), reason))
            frame = frame[~bad].reset_index(drop=True)
    return frame


def _is_numeric(column: pd.Series) -> bool:
    """A column of numbers or booleans (nulls allowed): a model input when not an identity column."""
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        return True
    present = column.dropna()
    return len(present) > 0 and all(isinstance(v, (int, float, bool, np.number)) for v in present.head(100))


class _Rows:
    """Accumulates decoded records and hands out frames of at most ``batch_rows`` rows (bounded memory)."""

    def __init__(self, batch_rows: int, rejected: list[Rejected] | None) -> None:
        self.batch_rows = batch_rows
        self.rejected = rejected
        self.records: list[dict[str, Any]] = []
        self.ids: list[str] = []
        self.where: list[str] = []
        self.positions: list[int] = []

    def add(self, record: dict[str, Any], fallback_id: str, where: str, position: int) -> pd.DataFrame | None:
        self.records.append(record)
        self.ids.append(fallback_id)
        self.where.append(where)
        self.positions.append(position)
        return self.flush() if len(self.records) >= self.batch_rows else None

    def flush(self) -> pd.DataFrame | None:
        if not self.records:
            return None
        raw = pd.DataFrame.from_records(self.records)
        parts = []
        # one frame per origin, so that a rejected record names its own partition
        for where in dict.fromkeys(self.where):
            rows = [i for i, w in enumerate(self.where) if w == where]
            part = raw.iloc[rows].reset_index(drop=True) if len(rows) < len(raw) else raw
            parts.append(
                _served_frame(
                    part, [self.ids[i] for i in rows], where, [self.positions[i] for i in rows], self.rejected
                )
            )
        self.records, self.ids, self.where, self.positions = [], [], [], []
        return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def _progress(total: float, description: str) -> tuple[Any, Callable[[float], None]]:
    """A rich progress bar to enter as a context, and the callback that advances it."""
    import rich.progress

    bar = rich.progress.Progress(
        *rich.progress.Progress.get_default_columns(), rich.progress.MofNCompleteColumn(), transient=False
    )
    task = bar.add_task(description, total=total)
    return bar, lambda n: bar.advance(task, n)


@register_source("kafka")
@dataclass(frozen=True)
class KafkaSource:
    """Records of ``topic`` between offsets, per partition: ``ranges`` holds (partition, start, end), end exclusive.

    Without ``ranges`` it means "every partition, from the earliest offset to the end as it is now";
    :meth:`pinned` turns that into numbers (the end from ``fraudstream.kafka.end_offsets``, because the embedded
    broker's "latest" undercounts), and the description keeps them so the same records load again.
    Values are Avro through the Schema Registry (``AvroDeserializer``) or JSON.
    """

    topic: str
    ranges: tuple[tuple[int, int, int], ...] | None = None
    bootstrap_servers: str | None = None
    schema_registry_url: str | None = None
    value_format: str = "avro"
    timeout: float = 30.0
    kind: str = field(default="kafka", init=False)

    def __post_init__(self) -> None:
        if self.value_format not in ("avro", "json"):
            raise ValueError(f"value_format must be 'avro' or 'json', got {self.value_format!r}")
        for partition, start, end in self.ranges or ():
            if not 0 <= start <= end:
                raise ValueError(
                    f"{self.topic}[{partition}]: offsets must satisfy 0 <= start <= end, got {start}..{end}"
                )

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> KafkaSource:
        given = description.get("partitions")  # absent: every partition, up to the end when loaded
        ranges = (
            None
            if given is None
            else tuple(
                (int(p), int(r["start"]), int(r["end"]))
                for p, r in sorted(given.items(), key=lambda item: int(item[0]))
            )
        )
        return cls(
            description["topic"],
            ranges,
            description.get("bootstrap_servers"),
            description.get("schema_registry_url"),
            description.get("value_format", "avro"),
        )

    def _addresses(self) -> tuple[str, str]:
        from fraudstream.config import Addresses

        env = Addresses.from_env()
        return self.bootstrap_servers or env.bootstrap_servers, self.schema_registry_url or env.schema_registry_url

    def pinned(self) -> KafkaSource:
        """This source with addresses and every partition's start and end offsets filled in."""
        from confluent_kafka import Consumer, TopicPartition

        from fraudstream.kafka import consumer_config, end_offsets

        bootstrap, registry = self._addresses()
        if self.ranges is not None:
            return KafkaSource(self.topic, self.ranges, bootstrap, registry, self.value_format, self.timeout)
        ends = end_offsets(bootstrap, self.topic)
        consumer = Consumer(consumer_config(bootstrap, f"fraudstream-dataset-{self.topic}"))
        try:  # the earliest offset is reported correctly; only "latest" is not
            starts = {
                p: consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=self.timeout)[0] for p in ends
            }
        finally:
            consumer.close()
        ranges = tuple((p, starts[p], ends[p]) for p in sorted(ends))
        return KafkaSource(self.topic, ranges, bootstrap, registry, self.value_format, self.timeout)

    def newest(self, records: int) -> KafkaSource:
        """This source narrowed to about the newest `records` records, shared evenly among the partitions."""
        pinned = self.pinned()
        ranges = pinned.ranges or ()
        each = -(-records // max(len(ranges), 1))
        newest = tuple((p, max(start, end - each), end) for p, start, end in ranges)
        return KafkaSource(self.topic, newest, pinned.bootstrap_servers, pinned.schema_registry_url, self.value_format)

    def describe(self) -> dict[str, Any]:
        pinned = self if self.ranges is not None and self.bootstrap_servers else self.pinned()
        return {
            "kind": self.kind,
            "topic": self.topic,
            "value_format": self.value_format,
            "bootstrap_servers": pinned.bootstrap_servers,
            "schema_registry_url": pinned.schema_registry_url,
            "partitions": {str(p): {"start": s, "end": e} for p, s, e in pinned.ranges or ()},
            "end": "exclusive",
        }

    def batches(
        self, batch_rows: int = DEFAULT_BATCH_ROWS, progress: bool = False, rejected: list[Rejected] | None = None
    ) -> Iterator[pd.DataFrame]:
        import time

        from confluent_kafka import Consumer, KafkaError, TopicPartition

        from fraudstream.kafka import consumer_config

        source = self if self.ranges is not None and self.bootstrap_servers else self.pinned()
        bootstrap, registry = source._addresses()
        wanted = {p: (s, e) for p, s, e in source.ranges or () if e > s}
        decode = self._decoder(registry)
        consumer = Consumer(
            consumer_config(
                bootstrap, f"fraudstream-dataset-{self.topic}", enable_auto_commit=False, enable_partition_eof=True
            )
        )
        rows = _Rows(batch_rows, rejected)
        with ExitStack() as stack:
            stack.callback(consumer.close)
            advance = None
            if progress:
                bar, advance = _progress(sum(e - s for s, e in wanted.values()), f"{self.topic} records")
                stack.enter_context(bar)
            consumer.assign([TopicPartition(self.topic, p, s) for p, (s, _) in wanted.items()])
            pending = set(wanted)
            last_progress = time.monotonic()
            while pending:
                messages = consumer.consume(num_messages=min(batch_rows, 5_000), timeout=1.0)
                if not messages and time.monotonic() - last_progress > self.timeout:
                    raise TimeoutError(
                        f"no records from {self.topic} partitions {sorted(pending)} for "
                        f"{self.timeout:.0f} s; wanted offsets {wanted}"
                    )
                taken = 0
                for message in messages:
                    partition, offset = message.partition(), message.offset()
                    if partition not in pending:
                        continue
                    end = wanted[partition][1]
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            if offset < end:
                                raise ValueError(
                                    f"{self.topic}[{partition}] ends at offset {offset}, before "
                                    f"the described end {end}: not the same dataset"
                                )
                            pending.discard(partition)
                            continue
                        raise RuntimeError(f"reading {self.topic}[{partition}]: {error.str()}")
                    if offset >= end:
                        pending.discard(partition)
                        continue
                    taken += 1
                    where = f"{self.topic}[{partition}]"
                    key = message.key()
                    fallback = key.decode("utf-8", "replace") if key else f"{self.topic}+{partition}+{offset}"
                    try:
                        record = decode(message)
                    except Exception as error:  # noqa: BLE001 - any undecodable value is set aside with why
                        if rejected is not None:
                            rejected.append(
                                Rejected(
                                    where,
                                    offset,
                                    repr(message.value()[:200]),
                                    f"value is not {self.value_format}: {error}",
                                )
                            )
                        record = None
                    if record is not None:
                        frame = rows.add(record, fallback, where, offset)
                        if frame is not None:
                            yield frame
                    if offset >= end - 1:
                        pending.discard(partition)
                if taken:
                    last_progress = time.monotonic()
                    if advance is not None:
                        advance(taken)
            frame = rows.flush()
            if frame is not None:
                yield frame

    def _decoder(self, registry_url: str) -> Callable[[Any], dict[str, Any] | None]:
        if self.value_format == "json":
            return lambda message: json.loads(message.value()) if message.value() is not None else None
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.schema_registry.avro import AvroDeserializer
        from confluent_kafka.serialization import MessageField, SerializationContext

        deserializer = AvroDeserializer(SchemaRegistryClient(schema_registry_conf(registry_url)))
        context = SerializationContext(self.topic, MessageField.VALUE)
        return lambda message: deserializer(message.value(), context)


@dataclass(frozen=True)
class LakeObject:
    """One object the S3 sink wrote, pinned by ETag and size."""

    key: str
    etag: str
    size: int
    partition: int
    start_offset: int
    format: str


TRAINING_FORMATS: tuple[SinkFormat, ...] = tuple(f for f in SINK_FORMATS if f.carries_schema)
"""The lake formats training reads: those whose objects carry their schema, so field types come back as written."""


def _training_format(where: str, extension: str) -> SinkFormat:
    """The format of a lake object, if training can read it; otherwise a clear error naming the object."""
    try:
        sink_format = format_of_extension(extension)
    except UnsupportedFormatError as error:
        raise UnsupportedFormatError(f"{where}: {error}") from None
    if not sink_format.carries_schema:
        raise UnsupportedFormatError(
            f"{where} is a {sink_format.name} object, which carries no schema: training reads only "
            f"{format_names(TRAINING_FORMATS)} objects (write the topic with one of those format classes)"
        )
    return sink_format


@register_source("lake")
@dataclass(frozen=True)
class LakeSource:
    """A topic as Confluent's S3 sink lands it: ``<topics_dir>/<topic>/partition=<p>/<topic>+<p>+<offset>.<ext>``.

    :meth:`pinned` lists the objects (key, ETag, size) once; loading the description later reads exactly
    those and fails if one has changed. The offsets each object covers are its start offset (from the
    name) through start + records - 1 (the sink writes consecutive offsets of one partition per object);
    they appear in the description once the objects have been read. Objects are read with the readers of
    :mod:`connectors.formats`; only formats that carry their schema (Avro, Parquet) are training data, and an
    object of any other format under the topic is an error rather than rows quietly left out.
    """

    topic: str
    bucket: str | None = None
    topics_dir: str = "topics"
    endpoint_url: str | None = None
    partitions: tuple[int, ...] | None = None
    objects: tuple[LakeObject, ...] | None = None
    kind: str = field(default="lake", init=False)
    _records: dict[str, int] = field(default_factory=dict, init=False, compare=False, repr=False)

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> LakeSource:
        objects = tuple(
            LakeObject(o["key"], o["etag"], int(o["size"]), int(o["partition"]), int(o["start_offset"]), o["format"])
            for o in description["objects"]
        )
        partitions = description.get("partitions")
        return cls(
            description["topic"],
            description["bucket"],
            description.get("topics_dir", "topics"),
            description.get("endpoint_url"),
            tuple(partitions) if partitions is not None else None,
            objects,
        )

    def _where(self) -> tuple[str, str]:
        from fraudstream.config import Addresses

        env = Addresses.from_env()
        return self.bucket or env.bucket, self.endpoint_url or env.s3_endpoint_url

    def pinned(self) -> LakeSource:
        """This source with its bucket, endpoint and the list of objects filled in."""
        bucket, endpoint = self._where()
        if self.objects is not None:
            return LakeSource(self.topic, bucket, self.topics_dir, endpoint, self.partitions, self.objects)
        from connectors.lake import parse_key
        from fraudstream.s3 import s3_client

        prefix = f"{self.topics_dir.strip('/')}/{self.topic}/"
        found = []
        for page in s3_client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for entry in page.get("Contents", []):
                parsed = parse_key(entry["Key"])
                if parsed is None or parsed.topic != self.topic:
                    continue
                if self.partitions is not None and parsed.partition not in self.partitions:
                    continue
                _training_format(f"s3://{bucket}/{entry['Key']}", parsed.extension)
                found.append(
                    LakeObject(
                        entry["Key"],
                        entry["ETag"].strip('"'),
                        int(entry["Size"]),
                        parsed.partition,
                        parsed.start_offset,
                        parsed.extension,
                    )
                )
        found.sort(key=lambda o: (o.partition, o.start_offset))
        if not found:
            raise ValueError(
                f"no {format_names(TRAINING_FORMATS)} objects of topic {self.topic!r} under s3://{bucket}/{prefix}"
            )
        return LakeSource(self.topic, bucket, self.topics_dir, endpoint, self.partitions, tuple(found))

    def describe(self) -> dict[str, Any]:
        pinned = self if self.objects is not None and self.bucket else self.pinned()
        objects = []
        for o in pinned.objects or ():
            entry: dict[str, Any] = {
                "key": o.key,
                "etag": o.etag,
                "size": o.size,
                "partition": o.partition,
                "start_offset": o.start_offset,
                "format": o.format,
            }
            records = self._records.get(o.key)
            if records is not None:
                entry["records"] = records
                entry["end_offset"] = o.start_offset + records - 1
            objects.append(entry)
        return {
            "kind": self.kind,
            "topic": self.topic,
            "bucket": pinned.bucket,
            "topics_dir": self.topics_dir,
            "endpoint_url": pinned.endpoint_url,
            "partitions": list(self.partitions) if self.partitions is not None else None,
            "objects": objects,
        }

    def batches(
        self, batch_rows: int = DEFAULT_BATCH_ROWS, progress: bool = False, rejected: list[Rejected] | None = None
    ) -> Iterator[pd.DataFrame]:
        from fraudstream.s3 import s3_client

        source = self if self.objects is not None and self.bucket else self.pinned()
        client = s3_client(source.endpoint_url)
        rows = _Rows(batch_rows, rejected)
        with ExitStack() as stack:
            advance = None
            if progress:
                bar, advance = _progress(sum(o.size for o in source.objects or ()), f"{self.topic} objects (bytes)")
                stack.enter_context(bar)
            for obj in source.objects or ():
                sink_format = _training_format(f"s3://{source.bucket}/{obj.key}", obj.format)
                response = client.get_object(Bucket=source.bucket, Key=obj.key)
                if response["ETag"].strip('"') != obj.etag:
                    raise ValueError(
                        f"s3://{source.bucket}/{obj.key} has changed since it was described "
                        f"(ETag {response['ETag']} != {obj.etag}): not the same dataset"
                    )
                body = response["Body"].read()  # one object at a time: flush.size records
                where = f"{obj.key}"
                records = sink_format.read(body, batch_rows)
                count = 0
                for count, record in enumerate(records, start=1):
                    offset = obj.start_offset + count - 1
                    frame = rows.add(record, f"{self.topic}+{obj.partition}+{offset}", where, offset)
                    if frame is not None:
                        yield frame
                self._records[obj.key] = source._records[obj.key] = count
                if advance is not None:
                    advance(obj.size)
            frame = rows.flush()
            if frame is not None:
                yield frame


@dataclass(frozen=True)
class KnownLabel:
    """A payment's label as known at a cutoff; `offset` orders labels known at the same moment (read order)."""

    label: int
    labelled_at_ms: int
    offset: int


def _millis(text: Any) -> int | None:
    """An ISO-8601 time (a label's LABELLED_AT) in milliseconds since the epoch, or None if it is not one."""
    try:
        moment = pd.Timestamp(str(text))
    except ValueError:
        return None
    if pd.isna(moment):
        return None
    moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
    return int((moment - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1))


def _iso(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")


@register_source("served")
@dataclass(frozen=True)
class ServedSource:
    """The point-in-time training set: the features as the stream served them, with the labels known at ``cutoff``.

    ``features`` is the features stream (its topic, or the lake where the S3 sink landed it); ``labels``
    the labels topic (JSON: ID, LABEL, LABELLED_AT). A payment is a training example when its label was
    known at the cutoff (LABELLED_AT <= cutoff) and the payment itself happened by then. The rules for
    labels, each applied with its reason in ``rejected`` (nothing is dropped silently):

    - a label known after the cutoff does not exist yet: its payment is not an example;
    - of several labels of one payment known by the cutoff, the latest (by LABELLED_AT, then offset) counts:
      a later investigation revises an earlier verdict;
    - a label that is not JSON, not 0 or 1, or has no readable LABELLED_AT is rejected;
    - a label known before its own payment happened is impossible, and rejected;
    - a label whose payment is not among the features is counted (``labels_without_features``), not an error:
      the payment may lie outside the features' range.

    :meth:`pinned` fixes the offsets (or objects) of both and the cutoff (now, unless given), and records
    the statements' hash, so that the description loads the same examples again.
    """

    features: KafkaSource | LakeSource
    labels: KafkaSource
    cutoff: str | None = None
    statements: str | None = None
    kind: str = field(default="served", init=False)
    _stats: dict[str, int] = field(default_factory=dict, init=False, compare=False, repr=False)

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> ServedSource:
        return cls(
            source_from_description(description["features"]),  # type: ignore[arg-type]
            source_from_description(description["labels"]),  # type: ignore[arg-type]
            description.get("cutoff"),
            description.get("ksql_sha256"),
        )

    @classmethod
    def of_topic(
        cls,
        features: KafkaSource | LakeSource,
        labels_topic: str | None = None,
        cutoff: str | None = None,
        bootstrap_servers: str | None = None,
    ) -> ServedSource:
        """The features of ``features`` with the labels of the labels topic (JSON), as they stand at ``cutoff``.

        The labels are read from ``bootstrap_servers``, else the features' own broker, else the environment's.
        """
        from fraudstream.topics import LABELS_TOPIC

        bootstrap = bootstrap_servers or getattr(features, "bootstrap_servers", None)
        return cls(features, KafkaSource(labels_topic or LABELS_TOPIC, None, bootstrap, value_format="json"), cutoff)

    def pinned(self) -> ServedSource:
        if self.cutoff is not None and self.statements is not None and self._is_pinned():
            return self
        from fraudstream.statements import StatementsNotFound, statements_hash

        cutoff = self.cutoff or _iso(int(pd.Timestamp.now(tz="UTC").value // 1_000_000))
        statements = self.statements
        if statements is None:
            try:
                statements = statements_hash()
            except StatementsNotFound:
                statements = None
        return ServedSource(self.features.pinned(), self.labels.pinned(), cutoff, statements)

    def _is_pinned(self) -> bool:
        features_pinned = (
            self.features.objects is not None
            if isinstance(self.features, LakeSource)
            else self.features.ranges is not None
        )
        return features_pinned and self.labels.ranges is not None

    def cutoff_ms(self) -> int:
        ms = _millis(self.cutoff) if self.cutoff is not None else None
        if ms is None:
            raise ValueError(f"cutoff {self.cutoff!r} is not an ISO-8601 time")
        return ms

    def describe(self) -> dict[str, Any]:
        pinned = self.pinned()
        description = {
            "kind": self.kind,
            "features": pinned.features.describe(),
            "labels": pinned.labels.describe(),
            "cutoff": pinned.cutoff,
            "ksql_sha256": pinned.statements,
        }
        if self._stats:
            description["counts"] = dict(self._stats)
        return description

    def known_labels(self, rejected: list[Rejected] | None = None) -> dict[str, KnownLabel]:
        """Each payment's label as known at the cutoff, by the rules above."""
        cutoff = self.cutoff_ms()
        known: dict[str, KnownLabel] = {}
        later = 0
        sequence = 0  # read order: a payment's labels share its key, so one partition, in offset order
        for frame in self.labels.batches(rejected=rejected):
            by_lower = {str(c).lower(): c for c in frame.columns}
            for row in frame.to_dict("records"):
                where = f"{self.labels.topic}"
                label = row.get(by_lower.get("label", "LABEL"))
                labelled_at = _millis(row.get(by_lower.get("labelled_at", "LABELLED_AT")))
                sequence += 1
                offset = sequence
                reason = None
                if label not in (0, 1) or isinstance(label, bool):
                    reason = f"LABEL must be 0 or 1, got {label!r}"
                elif labelled_at is None:
                    reason = (
                        f"LABELLED_AT {row.get(by_lower.get('labelled_at', 'LABELLED_AT'))!r} is not an ISO-8601 time"
                    )
                if reason is not None:
                    if rejected is not None:
                        rejected.append(Rejected(where, offset, json.dumps(row, default=str), reason))
                    continue
                if labelled_at > cutoff:
                    later += 1
                    continue
                payment = str(row[ID_COLUMN])
                previous = known.get(payment)
                if previous is None or (labelled_at, offset) >= (previous.labelled_at_ms, previous.offset):
                    known[payment] = KnownLabel(int(label), labelled_at, offset)
        self._stats["labels_after_cutoff"] = later
        return known

    def batches(
        self, batch_rows: int = DEFAULT_BATCH_ROWS, progress: bool = False, rejected: list[Rejected] | None = None
    ) -> Iterator[pd.DataFrame]:
        source = self.pinned()
        known = source.known_labels(rejected)
        cutoff = source.cutoff_ms()
        matched: set[str] = set()
        impossible: set[str] = set()
        after_cutoff = 0
        for frame in source.features.batches(batch_rows, progress, rejected):
            if EVENT_TIME_COLUMN not in frame.columns:
                raise ValueError(
                    f"{source.features.topic}: records have no {EVENT_TIME_COLUMN} column (they have "
                    f"{list(frame.columns)}): the features stream must serve each payment's event time"
                )
            ids = frame[ID_COLUMN].astype(str)
            event = frame[EVENT_TIME_COLUMN].to_numpy(dtype=np.int64)
            labelled = ids.map(lambda pid: known.get(pid)).to_numpy()
            has = np.array([x is not None for x in labelled], bool)
            in_time = event <= cutoff
            after_cutoff += int((has & ~in_time).sum())
            keep = has & in_time
            known_at = np.array([x.labelled_at_ms if x is not None else 0 for x in labelled], np.int64)
            before_payment = keep & (known_at < event)
            if before_payment.any():
                impossible.update(ids[before_payment])
                if rejected is not None:
                    for i in np.flatnonzero(before_payment):
                        rejected.append(Rejected(
                            source.labels.topic, labelled[i].offset, ids.iloc[i],
                            f"label of payment {ids.iloc[i]} known at {_iso(known_at[i])}, before the payment "
                            f"itself ({_iso(int(event[i]))}): impossible, not used",
                        ))  # fmt: skip
                keep &= ~before_payment
            matched.update(ids[keep])
            out = frame[keep].reset_index(drop=True)
            out[LABEL_COLUMN] = np.array([x.label for x in labelled[keep]], np.int8)
            yield out
        self._stats.update(
            source._stats,
            labels_known=len(known),
            examples=len(matched),
            labels_without_features=len(set(known) - matched - impossible),
            payments_after_cutoff=after_cutoff,
            labels_before_payment=len(impossible),
        )


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
    pin = getattr(source, "pinned", None)
    if pin is not None:
        source = pin()
    rejected: list[Rejected] = []
    parts = list(source.batches(batch_rows, progress=progress, rejected=rejected))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[ID_COLUMN, LABEL_COLUMN])
    frauds = int(frame[LABEL_COLUMN].sum()) if len(frame) and LABEL_COLUMN in frame.columns else 0
    description = {
        "source": source.describe(),
        "rows": int(len(frame)),
        "frauds": frauds,
        "fraud_rate": frauds / len(frame) if len(frame) else 0.0,
        "rejected_rows": len(rejected),
    }
    if rejected:
        description["rejected_examples"] = [str(r) for r in rejected[:5]]
        logger.warning(
            "%d rows of %s are not payments and were left out, e.g. %s", len(rejected), source.kind, rejected[0]
        )
    return Dataset(frame, description, rejected)
