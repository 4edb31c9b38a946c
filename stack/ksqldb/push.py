"""What every push query (SELECT ... EMIT CHANGES) shares, whatever runs it: a projection, a join or an
aggregation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .metastore import LogicalSchema
from .records import Record


class PushRows:
    """Rows in projection order, LIMIT, and `rows` without the tombstones.

    A subclass builds each result row in its own stored order (key columns, then values) and hands it to
    `emit`; `order[j]` is the stored index of the j-th SELECT item, as the plan worked it out.
    """

    changelog: Callable[[list[Record]], list[tuple[list[Any], bool]]]

    def __init__(self, columns: list[tuple[str, Any]], order: list[int], limit: int | None) -> None:
        self.columns = columns  # in projection order
        self.order = order
        self.limit = limit
        self.emitted = 0

    @property
    def done(self) -> bool:
        return self.limit is not None and self.emitted >= self.limit

    def emit(self, out: list[tuple[list[Any], bool]], stored: list[Any], tombstone: bool) -> None:
        out.append(([stored[i] for i in self.order], tombstone))
        self.emitted += 1

    def rows(self, records: list[Record]) -> list[list[Any]]:
        """The rows of `changelog` that are not tombstones."""
        return [row for row, tombstone in self.changelog(records) if not tombstone]


def projected_columns(schema: LogicalSchema, order: list[int]) -> list[tuple[str, Any]]:
    """A result schema's (name, type) pairs in projection order."""
    stored = [(c.name, c.type) for c in schema.key + schema.value]
    return [stored[i] for i in order]
