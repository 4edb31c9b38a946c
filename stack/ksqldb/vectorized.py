"""Column-wise batches of records, and (later in this module) a vectorized fast path for simple queries.

`Columns` is a batch of source records held column by column, as the Kafka runtime reads them, so that
no per-record `Record` objects are built unless the row path needs them. `Output` is what a query
produced from a batch, in input order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .executor import Record

if TYPE_CHECKING:
    from .executor import PersistentQuery

Headers = list[tuple[str, bytes | None]]


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
        return cls(records[0].topic if records else "", [r.key for r in records], [r.value for r in records],
                   [r.timestamp for r in records], [r.partition for r in records], [r.offset for r in records],
                   [r.headers for r in records])

    def record(self, i: int) -> Record:
        return Record(self.topic, self.keys[i], self.values[i], self.timestamps[i], self.partitions[i],
                      self.offsets[i], list(self.headers[i]) if self.headers is not None else [])

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
        return cls([r.key for r in records], [r.value for r in records], [r.timestamp for r in records],
                   [r.partition for r in records])

    def records(self, topic: str) -> list[Record]:
        return [Record(topic, k, v, t, p) for k, v, t, p in zip(self.keys, self.values, self.timestamps, self.partitions)]


def evaluate(query: PersistentQuery, batch: Columns) -> Output:
    """Run a persistent query over a batch: the vectorized path when the query has one, else row by row."""
    fast = getattr(query, "vectorized", None)
    if fast is not None:
        return fast.process(batch)
    return Output.from_records(query.process(batch.records()))
