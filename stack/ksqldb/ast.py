"""Typed AST for ksqlDB statements and expressions (frozen dataclasses; built by parser.py).

Every node is a `Node`, and traversal is generic: a node's children are the nodes held by its fields,
directly or in tuples (nested ones too, such as MAP entries), so `walk`, `find_all` and `transform` work on
any node, and a new node type needs no visitor changes. Planning and compiling use them; evaluating records
never does (compiled expressions are closures over the row).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any, TypeVar

from .types import SqlType

N = TypeVar("N", bound="Node")


# ---------------------------------------------------------------- traversal
class Node:
    """Base of every AST node: statements, clauses (select items, relations, joins, CASE branches) and
    expressions. Subclasses are frozen dataclasses; their fields that hold nodes are their children."""

    __slots__ = ()

    def children(self) -> Iterator[Node]:
        """The nodes directly below this one, in field order (tuples flattened, in order)."""
        for name in _field_names(type(self)):
            yield from _nodes_in(getattr(self, name))

    def walk(self, prune: Callable[[Node], bool] | None = None) -> Iterator[Node]:
        """This node and every node below it, depth first, each node before its children and children in
        field order. Below a node for which `prune` is true nothing is visited (the node itself is)."""
        stack: list[Node] = [self]
        while stack:
            node = stack.pop()
            yield node
            if prune is None or not prune(node):
                stack.extend(reversed(tuple(node.children())))

    def find_all(self, *types: type[N], prune: Callable[[Node], bool] | None = None) -> Iterator[N]:
        """The nodes of `walk(prune)` that are instances of `types`, in its order."""
        for node in self.walk(prune):
            if isinstance(node, types):
                yield node

    def find(self, *types: type[N], prune: Callable[[Node], bool] | None = None) -> N | None:
        """The first node of `find_all`, or None."""
        return next(self.find_all(*types, prune=prune), None)

    def transform(self, fn: Callable[[Node], Node | None]) -> Any:
        """This node rebuilt with some nodes replaced, top down: `fn` sees each node before its children; a
        node it returns takes the place of the node it was given and is not descended into, None keeps the
        node and goes on into its children. Subtrees without replacements stay the same objects, so
        `transform` returns `self` when nothing changed."""
        replaced = fn(self)
        if replaced is not None:
            return replaced
        changes = {}
        for name in _field_names(type(self)):
            value = getattr(self, name)
            new = _transform_value(value, fn)
            if new is not value:
                changes[name] = new
        return dataclasses.replace(self, **changes) if changes else self  # type: ignore[type-var]


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    """A node class's field names, once per class (planning walks many nodes)."""
    return tuple(f.name for f in dataclasses.fields(cls))


def _nodes_in(value: Any) -> Iterator[Node]:
    """The nodes a field's value holds: itself, or those in a tuple (nested tuples too), in order."""
    if isinstance(value, Node):
        yield value
    elif isinstance(value, tuple):
        for item in value:
            yield from _nodes_in(item)


def _transform_value(value: Any, fn: Callable[[Node], Node | None]) -> Any:
    """A field's value with its nodes transformed; the same object when none changed."""
    if isinstance(value, Node):
        return value.transform(fn)
    if isinstance(value, tuple):
        items = tuple(_transform_value(item, fn) for item in value)
        return value if all(a is b for a, b in zip(items, value)) else items
    return value


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
class Expr(Node):
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
class WhenClause(Node):
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
class SelectItem(Node):
    expr: Expr | None  # None for * / source.*
    alias: str | None = None
    star_source: str | None = None  # for `s.*`

    @property
    def is_star(self) -> bool:
        return self.expr is None


@dataclass(frozen=True)
class Relation(Node):
    name: str
    alias: str | None = None


@dataclass(frozen=True)
class Join(Node):
    kind: str
    right: Relation
    on: Expr
    within: str | None = None


@dataclass(frozen=True)
class Query(Node):
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
class Statement(Node):
    """Base class of statements; `text` is set by the parser to the statement's source text."""

    __slots__ = ()


@dataclass(frozen=True)
class TableElement(Node):
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
    loc: Location | None = _loc()  # where ksqlDB points when the target is unknown


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
