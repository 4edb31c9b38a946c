"""Log recovery for the embedded broker's object-store log, run before the broker starts, as Kafka recovers its
log after an unclean shutdown.

Tansu 0.6's `s3://` engine stores a produced batch with three writes, in this order: the producer's sequence
number (`meta.json`), the partition's watermark (`watermark.json`), then the batch itself. If the broker is
killed between them, or the object store fails the last write, the watermark points past the last stored batch.
The offsets in between hold no records, so readers stall at them. The producer's retry of that batch is then
refused as a duplicate, and the client counts it as written.

Recovery puts such a partition back the way it was before the batch:
- its watermark goes back to the end of its last stored batch;
- each producer's sequence number for it goes back to the end of that producer's last stored batch there.

The retry is then accepted, at the offsets that were empty. Nothing acknowledged is undone, because the broker
never acknowledged a batch it had not stored.
"""

from __future__ import annotations

import json
import logging
import struct
from dataclasses import dataclass
from typing import Any

from fraudstream.s3 import s3_client

logger = logging.getLogger(__name__)

CLUSTER = "tansu_cluster"  # Tansu's default --kafka-cluster-id
#: Kafka's record batch header (v2), from the partition leader epoch on: magic, crc, attributes, last offset
#: delta, first and max timestamps, producer id and epoch, base sequence. Tansu stores batches in this format.
_HEADER = struct.Struct(">ibIhiqqqhi")
_HEADER_AT = 12  # after the base offset (8 bytes) and the batch length (4)
#: How far below the watermark the last stored batch is looked for first (one listing page usually finds it).
_TAIL_OFFSETS = 100_000


@dataclass(frozen=True)
class BatchHeader:
    base_offset: int  # from the object's name: Tansu stores 0 in the batch itself
    records: int
    producer_id: int
    producer_epoch: int
    base_sequence: int

    @property
    def end_offset(self) -> int:
        return self.base_offset + self.records

    @property
    def end_sequence(self) -> int:
        return self.base_sequence + self.records


def parse_header(base_offset: int, data: bytes) -> BatchHeader:
    """The parts of a stored batch's header that recovery needs."""
    _, _, _, _, last_offset_delta, _, _, producer_id, producer_epoch, base_sequence = _HEADER.unpack_from(
        data, _HEADER_AT
    )
    return BatchHeader(base_offset, last_offset_delta + 1, producer_id, producer_epoch, base_sequence)


@dataclass(frozen=True)
class Repair:
    """One partition put back: its watermark moved from `high` to `stored_end`; producers' sequences wound back."""

    topic: str
    partition: int
    high: int
    stored_end: int
    sequences: dict[int, tuple[int, int]]  # producer id -> (sequence before, after)


class ObjectLog:
    """The broker's log as objects in `bucket`: partitions, watermarks, batches and the producers' metadata."""

    def __init__(self, endpoint_url: str, bucket: str, cluster: str = CLUSTER) -> None:
        self.s3 = s3_client(endpoint_url)
        self.bucket = bucket
        self.root = f"clusters/{cluster}/"

    def partitions(self) -> list[tuple[str, int]]:
        topics = self._prefixes(f"{self.root}topics/")
        return [
            (topic.rstrip("/").rsplit("/", 1)[-1], int(partition.rstrip("/").rsplit("/", 1)[-1]))
            for topic in topics
            for partition in self._prefixes(f"{topic}partitions/")
        ]

    def watermark(self, topic: str, partition: int) -> dict[str, Any] | None:
        return self._json(f"{self._partition(topic, partition)}watermark.json")

    def put_watermark(self, topic: str, partition: int, watermark: dict[str, Any]) -> None:
        self._put_json(f"{self._partition(topic, partition)}watermark.json", watermark)

    def meta(self) -> dict[str, Any] | None:
        return self._json(f"{self.root}meta.json")

    def put_meta(self, meta: dict[str, Any]) -> None:
        self._put_json(f"{self.root}meta.json", meta)

    def batch_offsets(self, topic: str, partition: int, from_offset: int = 0) -> list[int]:
        """Base offsets of the stored batches from `from_offset` on, ascending (object names are zero-padded)."""
        records = f"{self._partition(topic, partition)}records/"
        start_after = f"{records}{from_offset - 1:020d}.batch" if from_offset > 0 else ""
        offsets = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=records, StartAfter=start_after
        ):
            for entry in page.get("Contents", []):
                name = entry["Key"].rsplit("/", 1)[-1]
                if name.endswith(".batch") and name[:-6].isdigit():
                    offsets.append(int(name[:-6]))
        return sorted(offsets)

    def header(self, topic: str, partition: int, base_offset: int) -> BatchHeader:
        key = f"{self._partition(topic, partition)}records/{base_offset:020d}.batch"
        data = self.s3.get_object(Bucket=self.bucket, Key=key, Range=f"bytes=0-{_HEADER_AT + _HEADER.size}")
        return parse_header(base_offset, data["Body"].read())

    def _partition(self, topic: str, partition: int) -> str:
        return f"{self.root}topics/{topic}/partitions/{partition:010d}/"

    def _prefixes(self, prefix: str) -> list[str]:
        found = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            found += [common["Prefix"] for common in page.get("CommonPrefixes", [])]
        return found

    def _json(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except self.s3.exceptions.NoSuchKey:
            return None

    def _put_json(self, key: str, value: dict[str, Any]) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=json.dumps(value).encode())


def recover(log: ObjectLog) -> list[Repair]:
    """Put back every partition whose watermark is past its last stored batch; the repairs made.

    Only for a stopped broker: the running one keeps watermarks and sequences in memory too.
    """
    repairs = []
    meta = log.meta() or {}
    for topic, partition in log.partitions():
        watermark = log.watermark(topic, partition)
        high = (watermark or {}).get("high")
        if high is None:
            continue
        offsets = log.batch_offsets(topic, partition, max(0, high - _TAIL_OFFSETS)) or log.batch_offsets(
            topic, partition
        )
        stored_end = log.header(topic, partition, offsets[-1]).end_offset if offsets else (watermark.get("low") or 0)
        if high <= stored_end:
            continue
        sequences = _wind_back(log, meta, topic, partition, offsets, high - stored_end)
        log.put_watermark(topic, partition, {**watermark, "high": stored_end})
        repairs.append(Repair(topic, partition, high, stored_end, sequences))
        logger.warning(
            "broker log recovery: %s[%d] watermark %d is past its last stored batch, which ends at %d; "
            "watermark and producer sequences %s put back",
            topic,
            partition,
            high,
            stored_end,
            sequences,
        )
    if any(repair.sequences for repair in repairs):
        log.put_meta(meta)
    return repairs


def _wind_back(
    log: ObjectLog, meta: dict[str, Any], topic: str, partition: int, offsets: list[int], missing: int
) -> dict[int, tuple[int, int]]:
    """Wind back, in `meta`, the sequences of the producers whose batches (`missing` records) were not stored:
    each to the end of its last stored batch in the partition, found by reading headers from the newest back."""
    current: dict[int, dict[str, int]] = {}  # producer id -> its latest epoch's sequences for this topic
    for producer_id, producer in meta.get("producers", {}).items():
        epochs = producer.get("sequences", {})
        if epochs:
            latest = epochs[max(epochs, key=int)]
            if str(partition) in latest.get(topic, {}):
                current[int(producer_id)] = latest[topic]
    changed: dict[int, tuple[int, int]] = {}
    seen: set[int] = set()
    wound = 0
    for base in reversed(offsets):
        if wound >= missing or len(seen) == len(current):
            break
        header = log.header(topic, partition, base)
        if header.producer_id in seen or header.producer_id not in current:
            continue
        seen.add(header.producer_id)
        wound += _set_sequence(current[header.producer_id], partition, header.end_sequence, changed, header.producer_id)
    if wound < missing and len(offsets) == len(log.batch_offsets(topic, partition)):  # every batch read
        for producer_id, sequences in current.items():
            if producer_id not in seen:  # none of its batches was stored here
                wound += _set_sequence(sequences, partition, 0, changed, producer_id)
    return changed


def _set_sequence(
    sequences: dict[str, int], partition: int, stored: int, changed: dict[int, tuple[int, int]], producer_id: int
) -> int:
    before = sequences[str(partition)]
    if before <= stored:
        return 0
    sequences[str(partition)] = stored
    changed[producer_id] = (before, stored)
    return before - stored
