"""Event-time order across the partitions and topics a query reads, as Kafka Streams keeps it within a task.

A stream-table join must meet each stream record with the table as it stood at the record's time. Kafka
Streams runs one task per co-partition: a stream record waits while the table partition its key lives in
has data on the broker not yet read, and, with `max.task.idle.ms` above 0, up to that long more for the
table's producer. The embedded engine reads every partition of a query in one consumer and never
repartitions the stream, so `TableGate` finds each record's table partition from its join key and holds
the record back on those terms; being one process, it also knows when the query writing the table is
still behind, and waits for it rather than for a fixed time. An aggregation reads its partitions merged in
time (`TimeOrder`), as a repartition topic written in time would feed it, so that the tables it writes
grow in time. With the record cache off (`cache.max.bytes.buffering` 0), each change is its own record.
Together: a table of each card holder's latest payments (ksql/014) is current at every payment the
features read it for (ksql/020), however far behind its query runs, which the offline reference assumes.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka.partitioner import murmur2
from confluent_kafka import KafkaError, Message

#: Where a stream record is looked up: its event time and the table partition of its key (None when it
#: looks nothing up: a NULL key), or None for a record the query will skip anyway. Neither None is held.
Located = tuple[int, int | None] | None

#: ksqlDB passes `ksql.streams.*` properties to Kafka Streams without the prefix; both spellings work.
IDLE_PROPERTIES = ("ksql.streams.max.task.idle.ms", "max.task.idle.ms")


def max_task_idle_ms(properties: dict[str, Any]) -> int:
    """`max.task.idle.ms` from a statement's properties (Kafka Streams' default: 0, no waiting for producers)."""
    for name in IDLE_PROPERTIES:
        if properties.get(name) not in (None, ""):
            return max(int(properties[name]), 0)
    return 0


def record_cache(properties: dict[str, Any]) -> bool:
    """Whether an aggregation keeps only each key's last change per commit (ksqlDB's record cache, on unless
    `cache.max.bytes.buffering` is 0). Off, every change is emitted with its own time: a table joined by a
    stream then holds each state at the time it began (see ksql/014)."""
    for name in ("ksql.streams.cache.max.bytes.buffering", "cache.max.bytes.buffering"):
        if properties.get(name) not in (None, ""):
            return int(properties[name]) != 0
    return True


def key_partition(key: bytes, partitions: int) -> int:
    """The partition a keyed record lands in (Kafka's default partitioner, as the engine's producers use)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def in_time_order(messages: list[Message], time_of: Callable[[Message], int] | None = None) -> list[Message]:
    """A batch of several topics as Kafka Streams feeds a task: each partition in offset order, and the
    partitions merged by event time (the lowest head first; the record timestamp unless `time_of` says),
    so that, e.g., a table update is joined before a later stream record. Deterministic for the same
    records, as recovery needs."""
    parts: dict[tuple[str, int], list[Message]] = {}
    for m in messages:
        parts.setdefault((m.topic(), m.partition()), []).append(m)
    key = time_of or (lambda m: m.timestamp()[1])
    return list(heapq.merge(*(parts[k] for k in sorted(parts)), key=key))


class TimeOrder:
    """Records of several partitions in the order Kafka Streams feeds one task (max.task.idle.ms 0): each
    partition in offset order, the buffered head with the lowest timestamp first, and only while every
    partition has a buffered record or has been read to its end. A join's table rows are then joined
    before the later stream records they match, and an aggregation over several partitions sees its input
    in time, whichever partition the consumer fetched first."""

    def __init__(
        self, partitions: Iterable[tuple[str, int]], more_coming: Callable[[str, int], bool] | None = None
    ) -> None:
        """`more_coming(topic, partition)`, when given, says whether a partition read to its end has more on
        its way (see TableGate): until then its end does not let the others go ahead of it."""
        self.buffers: dict[tuple[str, int], deque[Message]] = {tp: deque() for tp in partitions}
        self.at_end_of: set[tuple[str, int]] = set()
        self.more_coming = more_coming

    @property
    def holding(self) -> int:
        return sum(map(len, self.buffers.values()))

    def backlog(self, topic: str, partition: int) -> int:
        return len(self.buffers.get((topic, partition), ()))

    def release(self, messages: Iterable[Message]) -> list[Message]:
        """Buffer `messages` (end-of-partition events included); return those that may go now, in order."""
        for m in messages:
            tp = (m.topic(), m.partition())
            if m.error() is None:
                self.buffers[tp].append(m)
                self.at_end_of.discard(tp)
            elif m.error().code() == KafkaError._PARTITION_EOF:
                self.at_end_of.add(tp)
        out: list[Message] = []
        ended = self.at_end_of
        if self.more_coming is not None:
            ended = {tp for tp in ended if not self.buffers[tp] and not self.more_coming(*tp)}
        buffers = self.buffers.items()
        while all(buffer or tp in ended for tp, buffer in buffers):
            heads = [buffer for buffer in self.buffers.values() if buffer]
            if not heads:
                break
            out.append(min(heads, key=lambda buffer: buffer[0].timestamp()[1]).popleft())
        return out


class TableGate:
    """Holds a stream-table join's stream records until the table has been read up to their time. Held
    records keep their partition's offset order, so that a query's committed offsets stay a prefix of
    what it has processed."""

    def __init__(
        self,
        stream_topic: str,
        table_topic: str,
        locate: Callable[[Message], Located],
        more_coming: Callable[[int], bool],
        idle_ms: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`locate` places a stream record; `more_coming(partition)` says whether more of the table partition
        is on its way: on the broker beyond what the consumer returned (as Kafka Streams asks), or still to
        be written by a query that is behind (what an embedded engine can know besides)."""
        self.stream_topic, self.table_topic = stream_topic, table_topic
        self.locate, self.more_coming, self.idle_ms, self.clock = locate, more_coming, idle_ms, clock
        self.reset()

    def reset(self) -> None:
        """Forget everything read: the consumer is about to read again from the query's committed position."""
        self.table_time: dict[int, int] = {}  # table partition -> the latest record time read
        self.table_end: dict[int, float] = {}  # table partition -> since when it has been read to its end
        self.held: dict[int, deque[tuple[Message, int, int | None]]] = {}
        self.times: dict[tuple[str, int, int], int] = {}  # event times of the records released, for ordering

    @property
    def holding(self) -> int:
        return sum(map(len, self.held.values()))

    def backlog(self, topic: str, partition: int) -> int:
        """Stream records of `partition` held back."""
        return len(self.held.get(partition, ())) if topic == self.stream_topic else 0

    def release(self, messages: Iterable[Message]) -> list[Message]:
        """Take what the consumer returned (end-of-partition events included, in the order they came);
        return what may be processed now, each partition in offset order (`in_order` merges them)."""
        out: list[Message] = []
        for m in messages:
            topic, partition = m.topic(), m.partition()
            if m.error() is not None:  # end of partition: read up to the end, and idle from now on
                if topic == self.table_topic:
                    self.table_end.setdefault(partition, self.clock())
            elif topic == self.table_topic:
                ts = m.timestamp()[1]
                self.table_time[partition] = max(self.table_time.get(partition, ts), ts)
                self.table_end.pop(partition, None)
                out.append(m)
            elif topic == self.stream_topic:  # held behind the partition's earlier records, even if skipped
                ts, lookup = self.locate(m) or (m.timestamp()[1], None)
                self.held.setdefault(partition, deque()).append((m, ts, lookup))
            else:
                out.append(m)
        now = self.clock()
        for queue in self.held.values():
            while queue and self._may_go(queue[0][1], queue[0][2], now):
                m, ts, _ = queue.popleft()
                self.times[(m.topic(), m.partition(), m.offset())] = ts
                out.append(m)
        return out

    def in_order(self, messages: list[Message]) -> list[Message]:
        """`messages` in event-time order: stream records by the time their query extracts (known from
        `release`; a batch read again after a crash is placed anew)."""
        times = self.times

        def time_of(m: Message) -> int:
            if m.topic() != self.stream_topic:
                return m.timestamp()[1]
            ts = times.pop((m.topic(), m.partition(), m.offset()), None)
            if ts is None:
                ts = (self.locate(m) or (m.timestamp()[1], None))[0]
            return ts

        return in_time_order(messages, time_of)

    def _may_go(self, ts: int, partition: int | None, now: float) -> bool:
        """The table partition has been read past `ts`, or to its end and idle for `idle_ms` since."""
        if partition is None or self.table_time.get(partition, -1) >= ts:
            return True
        since = self.table_end.get(partition)
        if since is None:
            return False
        if self.more_coming(partition):  # not idle yet
            del self.table_end[partition]
            return False
        return (now - since) * 1000 >= self.idle_ms
