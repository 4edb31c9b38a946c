"""Typed AST for ksqlDB statements and expressions (frozen dataclasses; built by parser.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .types import SqlType


# ---------------------------------------------------------------- source positions
@dataclass(frozen=True)
class Location:
    """Where a node starts in the submitted text: 1-based line and column, counted over the whole
    request (several statements are one text, as ksqlDB parses them)."""

    line: int
    column: int

    def prefix(self) -> str:
        """ksqlDB's prefix for errors that point at a node: `Line: 3, Col: 70: `."""
        return f"Line: {self.line}, Col: {self.column}: "


def at(node: object) -> str:
    """The location prefix of `node` (a node or a Location), or "" when it has none (e.g. a node the
    planner made up, or a column inferred from a registered schema)."""
    loc = node if isinstance(node, Location) else getattr(node, "loc", None)
    return loc.prefix() if loc is not None else ""


def _loc() -> Any:
    """A node's position: keyword-only and left out of equality, so equal expressions stay equal."""
    return field(default=None, kw_only=True, compare=False, repr=False)


# ---------------------------------------------------------------- expressions
@dataclass(frozen=True)
class Expr:
    """Base class of expression nodes."""

    loc: Location | None = _loc()


@dataclass(frozen=True)
class Literal(Expr):
    value: Any  # None, bool, int, Decimal, float, str
    kind: str  # NULL, BOOLEAN, INTEGER, BIGINT, DECIMAL, DOUBLE, STRING


@dataclass(frozen=True)
class ColumnRef(Expr):
    name: str
    source: str | None = None


@dataclass(frozen=True)
class FunctionCall(Expr):
    name: str
    args: tuple[Expr, ...]
    star: bool = False


@dataclass(frozen=True)
class Arithmetic(Expr):
    op: str  # + - * / %
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Negate(Expr):
    operand: Expr


@dataclass(frozen=True)
class Comparison(Expr):
    op: str  # = <> < <= > >=
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Logical(Expr):
    op: str  # AND OR
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Not(Expr):
    operand: Expr


@dataclass(frozen=True)
class Between(Expr):
    value: Expr
    low: Expr
    high: Expr
    negated: bool = False


@dataclass(frozen=True)
class InList(Expr):
    value: Expr
    items: tuple[Expr, ...]
    negated: bool = False


@dataclass(frozen=True)
class Like(Expr):
    value: Expr
    pattern: Expr
    escape: str | None = None
    negated: bool = False


@dataclass(frozen=True)
class IsNull(Expr):
    value: Expr
    negated: bool = False


@dataclass(frozen=True)
class IsDistinct(Expr):
    left: Expr
    right: Expr
    negated: bool = False


@dataclass(frozen=True)
class WhenClause:
    condition: Expr
    result: Expr


@dataclass(frozen=True)
class Case(Expr):
    operand: Expr | None
    whens: tuple[WhenClause, ...]
    default: Expr | None


@dataclass(frozen=True)
class Cast(Expr):
    operand: Expr
    type: SqlType


@dataclass(frozen=True)
class ArrayCtor(Expr):
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class MapCtor(Expr):
    entries: tuple[tuple[Expr, Expr], ...]


@dataclass(frozen=True)
class StructCtor(Expr):
    fields: tuple[tuple[str, Expr], ...]


@dataclass(frozen=True)
class Subscript(Expr):
    base: Expr
    index: Expr


@dataclass(frozen=True)
class Dereference(Expr):
    base: Expr
    field: str


@dataclass(frozen=True)
class Lambda(Expr):
    params: tuple[str, ...]
    body: Expr


# ---------------------------------------------------------------- queries
@dataclass(frozen=True)
class SelectItem:
    expr: Expr | None  # None for * / source.*
    alias: str | None = None
    star_source: str | None = None  # for `s.*`

    @property
    def is_star(self) -> bool:
        return self.expr is None


@dataclass(frozen=True)
class Relation:
    name: str
    alias: str | None = None


@dataclass(frozen=True)
class Join:
    kind: str
    right: Relation
    on: Expr
    within: str | None = None


@dataclass(frozen=True)
class Query:
    select: tuple[SelectItem, ...]
    source: Relation
    joins: tuple[Join, ...] = ()
    where: Expr | None = None
    window: str | None = None
    group_by: tuple[Expr, ...] = ()
    partition_by: tuple[Expr, ...] = ()
    having: Expr | None = None
    emit: str | None = None  # CHANGES / FINAL
    limit: int | None = None
    window_loc: Location | None = _loc()  # where the window expression (TUMBLING ...) starts


# ---------------------------------------------------------------- statements
class Statement:
    """Base class of statements; `text` is set by the parser to the statement's source text."""


@dataclass(frozen=True)
class TableElement:
    name: str
    type: SqlType
    constraint: str | None = None  # KEY, PRIMARY KEY, HEADERS, HEADER
    header_key: str | None = None  # for HEADER('<key>')
    loc: Location | None = _loc()


@dataclass(frozen=True)
class CreateSource(Statement):
    kind: str  # STREAM / TABLE
    name: str
    elements: tuple[TableElement, ...] | None
    properties: tuple[tuple[str, Any], ...]
    query: Query | None = None
    or_replace: bool = False
    is_source: bool = False
    if_not_exists: bool = False
    text: str = ""

    def prop(self, key: str, default: Any = None) -> Any:
        for k, v in self.properties:
            if k == key:
                return v
        return default


@dataclass(frozen=True)
class InsertInto(Statement):
    target: str
    query: Query
    properties: tuple[tuple[str, Any], ...] = ()
    text: str = ""


@dataclass(frozen=True)
class InsertValues(Statement):
    target: str
    columns: tuple[str, ...] | None
    values: tuple[Expr, ...]
    text: str = ""


@dataclass(frozen=True)
class DropSource(Statement):
    kind: str
    name: str
    if_exists: bool = False
    delete_topic: bool = False
    text: str = ""


@dataclass(frozen=True)
class ShowList(Statement):
    what: str  # STREAMS TABLES TOPICS QUERIES PROPERTIES FUNCTIONS
    extended: bool = False
    text: str = ""


@dataclass(frozen=True)
class Describe(Statement):
    name: str
    extended: bool = False
    text: str = ""


@dataclass(frozen=True)
class Terminate(Statement):
    query_id: str | None  # None = ALL
    text: str = ""


@dataclass(frozen=True)
class SetProperty(Statement):
    name: str
    value: str
    text: str = ""


@dataclass(frozen=True)
class UnsetProperty(Statement):
    name: str
    text: str = ""


@dataclass(frozen=True)
class AlterSource(Statement):
    kind: str
    name: str
    columns: tuple[TableElement, ...]
    text: str = ""


@dataclass(frozen=True)
class PushQuery(Statement):
    query: Query
    text: str = ""


def literal_decimal(text: str) -> Decimal:
    return Decimal(text)
