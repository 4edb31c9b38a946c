"""The open files of one Kafka partition and when to close them: the S3 sink's rotation rules.

Pure bookkeeping, no I/O. Records go in; closed batches (one file per encoded partition, all
sharing one schema) come out. File boundaries depend only on the records, as long as rotation uses
record time: `flush.size` counts records from the batch's first offset, `rotate.interval.ms` compares
record timestamps, and a schema change closes the batch. Replaying the same offsets after a crash
therefore closes the same files. Wall-clock rotation (`rotate.schedule.interval.ms`, or the
Wallclock extractor) is not replayable, exactly as in Confluent's connector.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo


@dataclass
class OpenFile:
    encoded_partition: str
    start_offset: int
    records: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class Batch:
    """Files to upload together; once they are all stored, `end_offset` may be committed."""

    topic: str
    partition: int
    files: list[OpenFile]
    schema: Any
    end_offset: int

    @property
    def record_count(self) -> int:
        return sum(len(f.records) for f in self.files)


@dataclass(frozen=True)
class Rotation:
    flush_size: int
    rotate_interval_ms: int = -1
    schedule_interval_ms: int = -1
    timezone: str = "UTC"
    wallclock: bool = False  # rotate.interval.ms measured on the wall clock, so it also fires while idle


def next_schedule(now_ms: int, interval_ms: int, zone: ZoneInfo) -> int:
    """The next multiple of `interval_ms` after `now_ms`, counted from midnight in `zone`."""
    offset = int(dt.datetime.fromtimestamp(now_ms / 1000, zone).utcoffset().total_seconds() * 1000)  # type: ignore[union-attr]
    local = now_ms + offset
    return local - local % interval_ms + interval_ms - offset


class PartitionWriter:
    def __init__(self, topic: str, partition: int, rotation: Rotation) -> None:
        self.topic = topic
        self.partition = partition
        self.rotation = rotation
        self.zone = ZoneInfo(rotation.timezone or "UTC")
        self.files: dict[str, OpenFile] = {}
        self.count = 0
        self.schema: Any = None
        self.schema_key: Any = None
        self.base_time: int | None = None
        self.current_partition: str | None = None
        self.scheduled: int | None = None
        self.next_offset: int | None = None  # the offset after the last record seen

    def add(
        self, offset: int, time_ms: int, encoded: str, value: Any, schema: Any, schema_key: Any, now_ms: int
    ) -> list[Batch]:
        """Take one converted record; return the batches that closed (before and after it)."""
        closed: list[Batch] = []
        if self.count and self._rotate_before(time_ms, encoded, schema_key, now_ms):
            closed.append(self._close(offset))
        if not self.count:
            self.schema, self.schema_key, self.base_time = schema, schema_key, time_ms
            if self.rotation.schedule_interval_ms > 0:
                self.scheduled = next_schedule(now_ms, self.rotation.schedule_interval_ms, self.zone)
        self.files.setdefault(encoded, OpenFile(encoded, offset)).records.append(value)
        self.count += 1
        self.current_partition = encoded
        self.next_offset = offset + 1
        if self.count >= self.rotation.flush_size:
            closed.append(self._close(offset + 1))
        return closed

    def skip(self, offset: int) -> None:
        """A record that is not written (dead-lettered, or a null value that is ignored)."""
        self.next_offset = offset + 1

    def due(self, now_ms: int) -> Batch | None:
        """Close the open files when the wall clock says so, even without new records."""
        if not self.count or self.next_offset is None:
            return None
        scheduled = self.scheduled is not None and now_ms >= self.scheduled
        idle = (
            self.rotation.wallclock
            and self.rotation.rotate_interval_ms > 0
            and self.base_time is not None
            and now_ms - self.base_time >= self.rotation.rotate_interval_ms
        )
        return self._close(self.next_offset) if scheduled or idle else None

    def committable(self) -> int | None:
        """The offset consumption may resume from: the start of the oldest open file, else past everything seen."""
        if self.files:
            return min(f.start_offset for f in self.files.values())
        return self.next_offset

    def _rotate_before(self, time_ms: int, encoded: str, schema_key: Any, now_ms: int) -> bool:
        if schema_key != self.schema_key:
            return True
        interval = self.rotation.rotate_interval_ms
        if (
            interval > 0
            and self.base_time is not None
            and (time_ms - self.base_time >= interval or encoded != self.current_partition)
        ):
            return True
        return self.scheduled is not None and now_ms >= self.scheduled

    def _close(self, end_offset: int) -> Batch:
        batch = Batch(self.topic, self.partition, list(self.files.values()), self.schema, end_offset)
        self.files, self.count, self.scheduled, self.base_time = {}, 0, None, None
        return batch
