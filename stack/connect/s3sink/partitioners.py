"""Partitioners (where in the lake a record goes) and timestamp extractors, as Confluent's storage-common.

The encoded partition is the directory between `<topics.dir>/<topic>/` and the file name:
`partition=<p>` by default, `<field>=<value>` for the FieldPartitioner, and the record's time bucket
formatted with a Joda-Time `path.format` for the time-based partitioners.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from stack.connect import definitions as d

HOURLY_PATH = "'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH"
DAILY_PATH = "'year'=YYYY/'month'=MM/'day'=dd"


class PartitionerError(ValueError):
    """A record the partitioner cannot place (no timestamp, missing field)."""


class RecordView(NamedTuple):
    """What a partitioner and an extractor may look at (a tuple: one is made per record)."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None  # Kafka record timestamp, ms
    value: Any


TimestampExtractor = Callable[[RecordView], int]


def wallclock(_record: RecordView) -> int:
    return time.time_ns() // 1_000_000


def record_time(record: RecordView) -> int:
    if record.timestamp is None or record.timestamp < 0:
        raise PartitionerError(f"record {record.topic}[{record.partition}]@{record.offset} has no timestamp")
    return record.timestamp


def field_extractor(field: str) -> TimestampExtractor:
    """Epoch millis, a datetime or an ISO-8601 string from a (dotted) field of the record's value."""

    def extract(record: RecordView) -> int:
        value = _field(record, field)
        if isinstance(value, dt.datetime):
            return int(value.timestamp() * 1000)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, str):
            try:
                parsed = dt.datetime.fromisoformat(value)
            except ValueError:
                raise PartitionerError(f"field {field}={value!r} is not an ISO-8601 timestamp") from None
            return int(parsed.replace(tzinfo=parsed.tzinfo or dt.UTC).timestamp() * 1000)
        raise PartitionerError(f"field {field} holds {type(value).__name__}, not a timestamp")

    return extract


def _field(record: RecordView, dotted: str) -> Any:
    value = record.value
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise PartitionerError(f"record {record.topic}[{record.partition}]@{record.offset} has no field {dotted}")
        value = value[part]
    return value


def make_extractor(name: str, field: str = "timestamp") -> TimestampExtractor:
    return {"Wallclock": wallclock, "Record": record_time}.get(name) or field_extractor(field)


# -- Joda-Time patterns ------------------------------------------------------------------------------

_TOKEN = re.compile(r"'(?:[^']|'')*'|([A-Za-z])\1*|[^A-Za-z']+")


def joda_format(pattern: str, moment: dt.datetime) -> str:
    """Format `moment` with a Joda-Time pattern (the subset path.format uses: years to millis, quoted text)."""
    out: list[str] = []
    for match in _TOKEN.finditer(pattern):
        token = match.group(0)
        if token.startswith("'"):
            out.append(token[1:-1].replace("''", "'") if token != "''" else "'")
        elif token[0].isalpha():
            out.append(_field_text(token, moment))
        else:
            out.append(token)
    return "".join(out)


def _field_text(token: str, moment: dt.datetime) -> str:
    letter, width = token[0], len(token)
    if letter in "yYu":
        return f"{moment.year % 100:02d}" if width == 2 else f"{moment.year:0{width}d}"
    if letter == "M":
        if width >= 4:
            return moment.strftime("%B")
        if width == 3:
            return moment.strftime("%b")
        return f"{moment.month:0{width}d}"
    numbers = {
        "d": moment.day,
        "H": moment.hour,
        "m": moment.minute,
        "s": moment.second,
        "D": moment.timetuple().tm_yday,
        "w": moment.isocalendar().week,
        "k": moment.hour or 24,
    }
    if letter in numbers:
        return f"{numbers[letter]:0{width}d}"
    if letter == "S":
        return f"{moment.microsecond // 1000:03d}"[:width]
    raise ValueError(f"unsupported Joda-Time pattern letter {letter!r} in path.format")


# -- partitioners -------------------------------------------------------------------------------------


class DefaultPartitioner:
    def encode(self, record: RecordView) -> str:
        return f"partition={record.partition}"


class FieldPartitioner:
    def __init__(self, fields: Sequence[str], delim: str = "/") -> None:
        self.fields, self.delim = list(fields), delim

    def encode(self, record: RecordView) -> str:
        return self.delim.join(f"{name}={_field(record, name)}" for name in self.fields)


class TimeBasedPartitioner:
    """Buckets of `duration_ms` aligned to midnight in `timezone`, named by `path_format`."""

    def __init__(
        self, path_format: str, duration_ms: int, timezone: str, extractor: TimestampExtractor, delim: str = "/"
    ) -> None:
        joda_format(path_format, dt.datetime(2000, 1, 1))  # fail on a bad pattern now, not on the first record
        self.path_format = path_format.replace("/", delim)
        self.duration_ms = duration_ms
        self.zone = ZoneInfo(timezone)
        self.extractor = extractor

    def bucket_start(self, timestamp_ms: int) -> int:
        offset = int(dt.datetime.fromtimestamp(timestamp_ms / 1000, self.zone).utcoffset().total_seconds() * 1000)  # type: ignore[union-attr]
        adjusted = timestamp_ms + offset
        return adjusted - adjusted % self.duration_ms - offset

    def encode(self, record: RecordView) -> str:
        start = self.bucket_start(self.extractor(record))
        return joda_format(self.path_format, dt.datetime.fromtimestamp(start / 1000, self.zone))


Partitioner = DefaultPartitioner | FieldPartitioner | TimeBasedPartitioner


def make_partitioner(values: dict[str, Any]) -> Partitioner:
    """The partitioner a checked config names (see `settings.validate` for the keys each one needs)."""
    kind, delim = values["partitioner.class"], values["directory.delim"]
    extractor = make_extractor(values["timestamp.extractor"], values["timestamp.field"])
    if kind == d.FIELD_PARTITIONER:
        return FieldPartitioner(values["partition.field.name"], delim)
    if kind == d.HOURLY_PARTITIONER:
        return TimeBasedPartitioner(HOURLY_PATH, 3_600_000, values["timezone"], extractor, delim)
    if kind == d.DAILY_PARTITIONER:
        return TimeBasedPartitioner(DAILY_PATH, 86_400_000, values["timezone"], extractor, delim)
    if kind == d.TIME_BASED_PARTITIONER:
        return TimeBasedPartitioner(
            values["path.format"], values["partition.duration.ms"], values["timezone"], extractor, delim
        )
    return DefaultPartitioner()
