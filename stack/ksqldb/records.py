"""Records as queries and runtimes exchange them: one at a time (`Record`), or a batch of one source topic
column by column (`Columns`, what the Kafka runtime consumes without building per-record objects) and a
batch's sink records column by column (`Output`)."""

from __future__ import annotations

from dataclasses import dataclass, field

Headers = list[tuple[str, bytes | None]]


@dataclass
class Record:
    topic: str
    key: bytes | None
    value: bytes | None
    timestamp: int = 0
    partition: int = 0
    offset: int = 0
    headers: Headers = field(default_factory=list)


@dataclass
class Columns:
    """A batch of records of one source topic, column by column."""

    topic: str
    keys: list[bytes | None]
    values: list[bytes | None]
    timestamps: list[int]
    partitions: list[int]
    offsets: list[int]
    headers: list[Headers] | None = None  # only read when the source has header columns

    def __len__(self) -> int:
        return len(self.values)

    @classmethod
    def from_records(cls, records: list[Record]) -> Columns:
        return cls(
            records[0].topic if records else "",
            [r.key for r in records],
            [r.value for r in records],
            [r.timestamp for r in records],
            [r.partition for r in records],
            [r.offset for r in records],
            [r.headers for r in records],
        )

    def record(self, i: int) -> Record:
        return Record(
            self.topic,
            self.keys[i],
            self.values[i],
            self.timestamps[i],
            self.partitions[i],
            self.offsets[i],
            list(self.headers[i]) if self.headers is not None else [],
        )

    def records(self) -> list[Record]:
        return [self.record(i) for i in range(len(self))]


@dataclass
class Output:
    """Sink records produced from a batch, in input order; `partitions` are the source partitions, which
    place records without a key."""

    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.values)

    @classmethod
    def from_records(cls, records: list[Record]) -> Output:
        return cls(
            [r.key for r in records],
            [r.value for r in records],
            [r.timestamp for r in records],
            [r.partition for r in records],
        )

    def records(self, topic: str) -> list[Record]:
        return [
            Record(topic, k, v, t, p) for k, v, t, p in zip(self.keys, self.values, self.timestamps, self.partitions)
        ]
