"""The S3 sink's formats in one table: the ``format.class`` a connector names, the extension its objects
carry, and how an object is read back into records.

The Connect worker's sink (``stack/connect``) takes its format classes and extensions from this table and
the lake readers (:mod:`connectors.lake`, ``models.datasets.LakeSource``) take their readers from it, so a
format is added in one place and what is written can always be read. It lives in ``connectors`` rather than
beside the writer because the lake readers sit below the embedded stack and may not import it.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

AVRO_FORMAT = "io.confluent.connect.s3.format.avro.AvroFormat"
PARQUET_FORMAT = "io.confluent.connect.s3.format.parquet.ParquetFormat"
JSON_FORMAT = "io.confluent.connect.s3.format.json.JsonFormat"

#: Records per Arrow batch when a Parquet object is read (bounds the memory of one decoded batch).
DEFAULT_BATCH_ROWS = 50_000

Reader = Callable[[bytes, int], Iterator[dict[str, Any]]]
"""(object body, batch rows) -> the object's records, in offset order."""


class UnsupportedFormatError(ValueError):
    """A format class or object extension the table has no row for."""


@dataclass(frozen=True)
class SinkFormat:
    """One format the sink writes and the lake reads."""

    name: str
    """As people call it, for messages ("Avro")."""
    format_class: str
    """The connector's ``format.class`` (Confluent's class name, so configs stay portable)."""
    extension: str
    """Object names end in ``.<extension>``."""
    carries_schema: bool
    """The object holds its schema, so field types survive the round trip (JSON lines do not: a timestamp
    comes back as epoch millis, a decimal as a float)."""
    read: Reader


def _read_avro(body: bytes, batch_rows: int) -> Iterator[dict[str, Any]]:
    import fastavro

    return iter(fastavro.reader(io.BytesIO(body)))


def _read_parquet(body: bytes, batch_rows: int) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    file = pq.ParquetFile(io.BytesIO(body))
    return (record for batch in file.iter_batches(batch_size=batch_rows) for record in batch.to_pylist())


def _read_json_lines(body: bytes, batch_rows: int) -> Iterator[dict[str, Any]]:
    return (json.loads(line) for line in body.decode().splitlines() if line)


SINK_FORMATS: tuple[SinkFormat, ...] = (
    SinkFormat("Avro", AVRO_FORMAT, "avro", True, _read_avro),
    SinkFormat("Parquet", PARQUET_FORMAT, "parquet", True, _read_parquet),
    SinkFormat("JSON", JSON_FORMAT, "json", False, _read_json_lines),
)
FORMAT_CLASSES: tuple[str, ...] = tuple(f.format_class for f in SINK_FORMATS)

_BY_CLASS = {f.format_class: f for f in SINK_FORMATS}
_BY_EXTENSION = {f.extension: f for f in SINK_FORMATS}


def format_of_class(format_class: str) -> SinkFormat:
    """The row of a connector's ``format.class``."""
    try:
        return _BY_CLASS[format_class]
    except KeyError:
        raise UnsupportedFormatError(
            f"unsupported format.class {format_class}; supported: {', '.join(FORMAT_CLASSES)}"
        ) from None


def format_of_extension(extension: str) -> SinkFormat:
    """The row of an object's extension (``avro``, not ``.avro``)."""
    try:
        return _BY_EXTENSION[extension]
    except KeyError:
        known = ", ".join(f".{f.extension} ({f.name})" for f in SINK_FORMATS)
        raise UnsupportedFormatError(
            f"no reader for .{extension} objects: the lake reads {known}, as the S3 sink writes them"
        ) from None


def format_names(formats: Sequence[SinkFormat]) -> str:
    """``Avro or Parquet``: format names for a message."""
    spelled = [f.name for f in formats]
    return spelled[0] if len(spelled) == 1 else f"{', '.join(spelled[:-1])} or {spelled[-1]}"
