"""The metastore: registered sources (streams and tables) and their schemas and formats."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import KsqlStatementError
from .formats import FormatInfo
from .formatter import quote_ident
from .types import BIGINT, INTEGER, SqlType

PSEUDO_COLUMNS: tuple[tuple[str, SqlType], ...] = (
    ("ROWTIME", BIGINT),
    ("ROWPARTITION", INTEGER),
    ("ROWOFFSET", BIGINT),
)
RESERVED = {name for name, _ in PSEUDO_COLUMNS}


@dataclass(frozen=True)
class Column:
    name: str
    type: SqlType
    key: bool = False
    header: str | None = None  # "*" for a HEADERS column (all headers), else the key of a HEADER('k') column


@dataclass(frozen=True)
class LogicalSchema:
    key: tuple[Column, ...]
    value: tuple[Column, ...]
    headers: tuple[Column, ...] = ()  # read from record headers, never (de)serialised
    windowed: bool = False  # the key carries window bounds: WINDOWSTART and WINDOWEND follow the key columns

    def row_columns(self) -> list[tuple[str, SqlType]]:
        """The row layout the row path builds (pipeline.py): pseudo columns, then key (and window bounds),
        value and header columns."""
        bounds = [("WINDOWSTART", BIGINT), ("WINDOWEND", BIGINT)] if self.windowed else []
        return (
            list(PSEUDO_COLUMNS)
            + [(c.name, c.type) for c in self.key]
            + bounds
            + [(c.name, c.type) for c in self.value]
            + [(c.name, c.type) for c in self.headers]
        )

    def find(self, name: str) -> Column | None:
        return next((c for c in self.key + self.value + self.headers if c.name == name), None)

    def __str__(self) -> str:
        parts = [f"{quote_ident(c.name)} {c.type} KEY" for c in self.key]
        parts += [f"{quote_ident(c.name)} {c.type}" for c in self.value]
        parts += [
            f"{quote_ident(c.name)} {c.type} " + ("HEADERS" if c.header == "*" else f"HEADER('{c.header}')")
            for c in self.headers
        ]
        return ", ".join(parts)


def projection_order(key_positions: list[int], n_items: int) -> list[int]:
    """Where each SELECT item sits in a result stored as key columns (the items at `key_positions`, in that
    order) then value columns (the other items, in order): push queries send rows in SELECT order."""
    stored = key_positions + [i for i in range(n_items) if i not in key_positions]
    return [stored.index(i) for i in range(n_items)]


def check_projection(key_cols: list[Column], value_cols: list[Column], persistent: bool) -> None:
    """ksqlDB's checks of a query's output columns: a sink needs a value column and no pseudo column names;
    no name twice."""
    if persistent:
        if not value_cols:
            raise KsqlStatementError("The projection contains no value columns.")
        for col in value_cols:
            if col.name in RESERVED:
                raise KsqlStatementError(
                    f"Reserved column name in select: `{col.name}`. Please remove or alias the column."
                )
    seen: set[str] = set()
    for col in key_cols + value_cols:
        if col.name in seen:
            raise KsqlStatementError(f"The projection contains the column `{col.name}` more than once.")
        seen.add(col.name)


@dataclass
class DataSource:
    name: str
    kind: str  # STREAM / TABLE
    schema: LogicalSchema
    topic: str
    key_format: FormatInfo
    value_format: FormatInfo
    sql: str = ""
    is_source: bool = False
    timestamp_column: str | None = None
    timestamp_format: str | None = None
    partitions: int = 1
    writers: list[str] = field(default_factory=list)  # ids of queries writing into it
    created_by: str | None = None  # the CREATE ... AS SELECT query that made it (DROP terminates it)
    readers: list[str] = field(default_factory=list)
    window: Any = None  # windows.WindowInfo when the key is windowed (a windowed aggregate, WINDOW_TYPE)


class MetaStore:
    def __init__(self) -> None:
        self.sources: dict[str, DataSource] = {}

    def get(self, name: str) -> DataSource | None:
        return self.sources.get(name)

    def require(self, name: str) -> DataSource:
        src = self.sources.get(name)
        if src is None:
            raise KsqlStatementError(f"{name} does not exist.{self.alternatives(name)}")
        return src

    def alternatives(self, name: str, kind: str | None = None) -> str:
        """ksqlDB's hint when a name matches sources only if case is ignored (MetaStoreImpl.checkAlternatives):
        `kind` (STREAM or TABLE) narrows the candidates."""
        found = sorted(
            (s for s in self.sources.values() if s.name.upper() == name.upper() and kind in (None, s.kind)),
            key=lambda s: s.name,
        )
        if not found:
            return ""
        if len(found) == 1:
            other = found[0].name
            if any(c.islower() for c in other):
                return (
                    f'\nDid you mean "{other}"? Hint: wrap the source name in double quotes to make it case-sensitive.'
                )
            return f"\nDid you mean {other}? Hint: try removing double quotes from the source name."
        parts = []
        for i, s in enumerate(found):
            last = len(found) - 1
            punctuation = "? " if i == last else (" or " if last == 1 else ", or ") if i == last - 1 else ", "
            parts.append(f'"{s.name}" ({s.kind}){punctuation}')
        return (
            "\nDid you mean "
            + "".join(parts)
            + "Hint: wrap the source name in double quotes to make it case-sensitive."
        )

    def add(self, source: DataSource, replace: bool = False) -> None:
        existing = self.sources.get(source.name)
        if existing is not None and not replace:
            kind = existing.kind.lower()
            raise KsqlStatementError(
                f"Cannot add {source.kind.lower()} '{source.name}': A {kind} with the same name already exists"
            )
        if existing is not None:
            source.writers = existing.writers
            source.readers = existing.readers
        self.sources[source.name] = source

    def remove(self, name: str) -> DataSource:
        return self.sources.pop(name)

    def by_topic(self, topic: str) -> list[DataSource]:
        return [s for s in self.sources.values() if s.topic == topic]
