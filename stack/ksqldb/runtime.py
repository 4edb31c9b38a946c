"""Where topics live and persistent queries run: what the engine needs of a runtime (`Runtime`) and of the
queries it hands one (`Query`), and the in-memory runtime (conformance runs, unit tests). The Kafka runtime
(kafka_runtime.py) is the other one."""

from __future__ import annotations

import heapq
from typing import Any, Protocol

from .metastore import DataSource
from .records import Columns, Output, Record


class Query(Protocol):
    """A persistent query as a runtime sees it: `process(records) -> records` from `source_topics` (or its
    source's topic) to its sink's topic. The operators (`executor.PersistentQuery`, `tables.TableQuery`,
    `aggregation.AggregateQuery`, `joins.JoinQuery`, ...) all are."""

    id: str
    source: DataSource
    sink: DataSource
    state: str

    @property
    def processed(self) -> int: ...

    def process(self, records: list[Record]) -> list[Record]: ...


class Runtime(Protocol):
    """What the engine needs from where topics live: in memory here, Kafka in the server.

    Every query handed to `add_query` is a `Query`. Stateful ones (tables, aggregations: `AggregateQuery`)
    also have `stores`, their `state.StateStores`:
    - a runtime may define `state_stores(query_id) -> StateStores`; the engine then builds the query's
      stores with it (durable ones, restored before the first record), else they live in memory;
    - `process` keeps stream time for windows (grace, EMIT FINAL) in the stores, so EMIT FINAL needs no
      timer: closed windows come out of the `process` call whose records advance stream time;
    - before committing input offsets, a runtime calls `stores.flush()`, so that restored state
      and the resumed offsets agree;
    - aggregations emit every update; a runtime that processes batches between commits may set
      `q.coalesce = True` (attribute of `AggregateQuery`) to emit only each key's last change per batch,
      as ksqlDB's record cache does (QTT and ksqlDB with cache size 0 see every update).

    Join queries (`joins.JoinQuery`) read several topics; a runtime that runs them sets `runs_joins = True`
    (the engine refuses join queries otherwise) and:
    - delivers the records of every topic in `q.source_topics` to the same `q.process`, one query instance
      for all of them (a batch may mix topics); within a topic-partition in offset order, and across topics
      in timestamp order as far as it can (Kafka Streams picks the buffered record with the lowest
      timestamp), because a join's output depends on which side arrived first;
    - co-locates partitions: records of partition p of every source topic go to the same query instance
      (the sides are co-partitioned: the engine checks partition counts, through `partitions`, when no side
      is re-keyed). A re-keyed side (an implicit repartition) is re-keyed inside `process` by the join
      expression, which is only right when that side's topic has one partition or when the runtime first
      routes the records through a repartition topic keyed by the join expression; until then a runtime
      with multi-partition sources must keep such queries to one instance reading every partition;
    - keeps the join state (window buffers per side, the latest row per key of a table side) in
      `q.stores`, built with `state_stores(query_id)` when it defines that method: a table side is the
      whole table, so without durable stores a restarted query must re-read table topics from the start.
    """

    topics: dict[str, Any]  # topic name -> anything (SHOW TOPICS lists the names)
    partitions: dict[str, int]

    def create_topic(self, name: str, partitions: int = 1) -> None: ...

    def delete_topic(self, name: str) -> None: ...

    def add_query(self, q: Query, replay: bool = True) -> None: ...

    def remove_query(self, query_id: str) -> None: ...

    def produce(self, rec: Record) -> None: ...


def evaluate(query: Query, batch: Columns) -> Output:
    """Run a persistent query over a batch: the vectorized path when the query has one (its `vectorized`),
    else row by row."""
    fast = getattr(query, "vectorized", None)
    if fast is not None:
        return fast.process(batch)
    return Output.from_records(query.process(batch.records()))


class InMemoryRuntime:
    """Topics as lists of records, with queries run synchronously as records arrive (like a topology
    test driver): producing to a topic runs every query reading it, depth first, in creation order."""

    runs_joins = True

    def __init__(self) -> None:
        self.topics: dict[str, list[Record]] = {}
        self.partitions: dict[str, int] = {}
        self.queries: list[Query] = []

    def create_topic(self, name: str, partitions: int = 1) -> None:
        self.topics.setdefault(name, [])
        self.partitions.setdefault(name, partitions)

    def delete_topic(self, name: str) -> None:
        self.topics.pop(name, None)
        self.partitions.pop(name, None)

    def add_query(self, q: Query, replay: bool = True) -> None:
        self.queries.append(q)
        if replay:
            for rec in _by_timestamp([list(self.topics.get(t, [])) for t in _source_topics(q)]):
                self._run(q, rec)

    def remove_query(self, query_id: str) -> None:
        self.queries = [q for q in self.queries if q.id != query_id]

    def produce(self, rec: Record) -> None:
        records = self.topics.setdefault(rec.topic, [])
        rec.offset = len(records)
        records.append(rec)
        for q in list(self.queries):
            if q.state == "RUNNING" and rec.topic in _source_topics(q):
                self._run(q, rec)

    def _run(self, q: Query, rec: Record) -> None:
        for out in q.process([rec]):
            self.produce(out)


def _source_topics(q: Any) -> list[str]:
    return getattr(q, "source_topics", None) or [q.source.topic]


def _by_timestamp(topics: list[list[Record]]) -> list[Record]:
    """Records of several topics merged as Kafka Streams replays them: each topic in offset order, the
    next record being the head with the lowest timestamp (ties go to the topic listed first)."""
    heads = [(t[0].timestamp, i, 0) for i, t in enumerate(topics) if t]
    heapq.heapify(heads)
    out = []
    while heads:
        _, i, j = heapq.heappop(heads)
        out.append(topics[i][j])
        if j + 1 < len(topics[i]):
            heapq.heappush(heads, (topics[i][j + 1].timestamp, i, j + 1))
    return out
