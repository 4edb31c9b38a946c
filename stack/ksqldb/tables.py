"""Queries that project a table (CREATE TABLE t2 AS SELECT ... FROM t1 [WHERE ...]): a changelog in, a
changelog out.

As in ksqlDB (a Kafka Streams KTable filter and map): an upsert that passes WHERE is projected, a
tombstone stays a tombstone, and an upsert that does not pass WHERE becomes a tombstone for its key,
so a row that stops matching leaves the result table. Records with a null key are dropped.
"""

from __future__ import annotations

import dataclasses

from . import values as V
from .errors import SerdeError
from .executor import PersistentQuery
from .formats import Serde
from .metastore import DataSource
from .pipeline import ProjectionPlan
from .processing_log import ProcessingLog
from .records import Record


def changelog_plan(plan: ProjectionPlan) -> ProjectionPlan:
    """The plan with WHERE moved into the projection (last value), so that failing rows still come out."""
    if plan.where is None:
        return plan
    return dataclasses.replace(
        plan, where=None, value_exprs=plan.value_exprs + [plan.where], value_texts=plan.value_texts + ["WHERE"]
    )


class TableQuery(PersistentQuery):
    def __init__(
        self,
        query_id: str,
        plan: ProjectionPlan,
        sink: DataSource,
        key_in: Serde,
        value_in: Serde,
        key_out: Serde,
        value_out: Serde,
        plog: ProcessingLog,
        sql: str = "",
    ) -> None:
        self.filtered = plan.where is not None
        super().__init__(query_id, changelog_plan(plan), sink, key_in, value_in, key_out, value_out, plog, sql)

    def process(self, records: list[Record]) -> list[Record]:
        out: list[Record] = []
        for rec, key_vals, value_vals, ts in self.transform(records):
            if not key_vals or any(k is None for k in key_vals):
                continue
            if value_vals is not None and self.filtered:
                passed = value_vals.pop() is True
                value_vals = value_vals if passed else None
            if value_vals is not None and self._sink_ts_index is not None:
                v = value_vals[self._sink_ts_index]
                if v is None:
                    continue
                ts = v if isinstance(v, int) else V.timestamp_to_millis(v)
            try:
                key = self.key_out.serialize(key_vals)
                value = self.value_out.serialize(value_vals)
            except SerdeError as e:
                self.plog.serialization_error(self.id, self.sink.topic, str(e))
                continue
            out.append(Record(self.sink.topic, key, value, ts, rec.partition))
        return out
