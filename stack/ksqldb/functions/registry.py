"""Scalar function registry and ksqlDB-style overload resolution.

A function has overloads; each declares parameter types (a SqlType or a generic marker), whether the
last parameter is variadic, a return type (a SqlType or a callable of the argument types), a
Python implementation that receives values already converted to the parameter types, and whether it is
deterministic (its result depends on its arguments only: the vectorized path may then compute it once per
distinct argument value instead of once per row).
Resolution: one exact match wins; otherwise the overloads reachable by implicit widening, and more
than one of those is ambiguous, as in ksqlDB.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import KsqlStatementError, UnsupportedError
from ..types import (
    BIGINT,
    INTEGER,
    STRING,
    ArrayType,
    DecimalType,
    MapType,
    NullType,
    SqlType,
    StructType,
    can_implicitly_cast,
    common_type,
    is_temporal,
    to_decimal_type,
)

# generic parameter markers
ANY = "ANY"  # any type, no binding
T = "T"  # any type, all T's must agree (widened)
DECIMAL = "DECIMAL"  # any decimal
ARRAY_T = "ARRAY<T>"
MAP_KV = "MAP<K,V>"
STRUCT_ANY = "STRUCT"

Param = SqlType | str
ReturnSpec = SqlType | Callable[[list[SqlType]], SqlType]


@dataclass
class Overload:
    params: tuple[Param, ...]
    returns: ReturnSpec
    impl: Callable[..., Any]
    variadic: bool = False
    null_safe: bool = True  # return null without calling impl when any argument is null
    deterministic: bool = False  # the result depends on the arguments only (not on time, chance, ...)


@dataclass
class Function:
    name: str
    overloads: list[Overload] = field(default_factory=list)
    display: str | None = None
    description: str = ""

    @property
    def shown(self) -> str:
        return self.display or self.name

    @property
    def deterministic(self) -> bool:
        """Every overload is deterministic: a call's result depends on its arguments only, whichever overload
        it resolves to (the vectorized path, which sees calls by name, evaluates those once per distinct
        argument value)."""
        return all(o.deterministic for o in self.overloads)


@dataclass
class Resolved:
    return_type: SqlType
    impl: Callable[..., Any]
    param_types: list[SqlType]
    null_safe: bool
    #: per argument, (from, to) when its values must be widened to the parameter type, else None
    conversions: list[tuple[SqlType, SqlType] | None]


REGISTRY: dict[str, Function] = {}


def register(
    name: str,
    params: Sequence[Param],
    returns: ReturnSpec,
    *,
    variadic: bool = False,
    null_safe: bool = True,
    display: str | None = None,
    deterministic: bool = False,
) -> Callable:
    """Decorator: add an overload of `name`. `deterministic`: its result depends on its arguments only (say
    so only when true: the vectorized path then computes it once per distinct argument value)."""

    def deco(fn: Callable) -> Callable:
        f = REGISTRY.setdefault(name.upper(), Function(name.upper()))
        if display:
            f.display = display
        f.overloads.append(Overload(tuple(params), returns, fn, variadic, null_safe, deterministic))
        return fn

    return deco


def _expand(o: Overload, n: int) -> list[Param] | None:
    if o.variadic:
        fixed = len(o.params) - 1
        if n < fixed:
            return None
        return list(o.params[:fixed]) + [o.params[-1]] * (n - fixed)
    return list(o.params) if len(o.params) == n else None


def _param_matches(p: Param, a: SqlType, exact: bool, literal: bool) -> bool:
    if isinstance(a, NullType) or p == ANY or p == T:
        return True
    if p == DECIMAL:
        if isinstance(a, DecimalType):
            return True
        return (not exact) and a in (INTEGER, BIGINT)
    if p == ARRAY_T:
        return isinstance(a, ArrayType)
    if p == MAP_KV:
        return isinstance(a, MapType)
    if p == STRUCT_ANY:
        return isinstance(a, StructType)
    assert isinstance(p, SqlType)
    if a == p:
        return True
    if exact:
        return False
    if literal and a == STRING and is_temporal(p):
        return True
    return can_implicitly_cast(a, p)


def _concrete(params: list[Param], args: list[SqlType]) -> list[SqlType] | None:
    """Concrete parameter types for these arguments (binds T and DECIMAL)."""
    t_args = [a for p, a in zip(params, args) if p == T]
    t_type = common_type(t_args) if t_args else None
    if t_args and t_type is None:
        return None
    dec_args = [a for p, a in zip(params, args) if p == DECIMAL and not isinstance(a, NullType)]
    dec_type = common_type([to_decimal_type(a) for a in dec_args]) if dec_args else None
    out: list[SqlType] = []
    for p, a in zip(params, args):
        if p == T:
            out.append(t_type if t_type is not None else a)
        elif p == DECIMAL:
            out.append(dec_type if dec_type is not None else a)
        elif isinstance(p, str):
            out.append(a)
        else:
            out.append(p)
    return out


def _fmt_types(args: list[SqlType]) -> str:
    return ", ".join(str(a) for a in args)


#: functions ksqlDB documents that this engine refuses, with what they are
UNSUPPORTED_FUNCTIONS = {"EXPLODE": "table function EXPLODE", "CUBE_EXPLODE": "table function CUBE_EXPLODE"}


def resolve(name: str, args: list[SqlType], literals: list[bool]) -> Resolved:
    fn = REGISTRY.get(name.upper())
    if name.upper() in UNSUPPORTED_FUNCTIONS:
        raise UnsupportedError(UNSUPPORTED_FUNCTIONS[name.upper()])
    if fn is None:
        raise KsqlStatementError(f"Can't find any functions with the name '{name.upper()}'")
    n = len(args)
    exact: list[tuple[Overload, list[Param]]] = []
    implicit: list[tuple[Overload, list[Param]]] = []
    for o in fn.overloads:
        params = _expand(o, n)
        if params is None:
            continue
        if all(_param_matches(p, a, True, lit) for p, a, lit in zip(params, args, literals)):
            exact.append((o, params))
        elif all(_param_matches(p, a, False, lit) for p, a, lit in zip(params, args, literals)):
            implicit.append((o, params))
    all_null = n > 0 and all(isinstance(a, NullType) for a in args)
    if len(exact) == 1 or (exact and not all_null):
        chosen = exact[0]
    elif len(exact) > 1 or len(implicit) > 1:
        raise KsqlStatementError(
            f"Function '{fn.shown}' cannot be resolved due to ambiguous method parameters ({_fmt_types(args)})."
        )
    elif len(implicit) == 1:
        chosen = implicit[0]
    else:
        raise KsqlStatementError(f"Function '{fn.shown}' does not accept parameters ({_fmt_types(args)}).")
    o, params = chosen
    concrete = _concrete(params, args)
    if concrete is None:
        raise KsqlStatementError(f"Function '{fn.shown}' does not accept parameters ({_fmt_types(args)}).")
    ret = o.returns(concrete) if callable(o.returns) else o.returns
    conversions = [
        None
        if (
            a == p
            or isinstance(a, NullType)
            or isinstance(p, str)
            or (isinstance(a, DecimalType) and isinstance(p, DecimalType))
        )
        else (a, p)
        for a, p in zip(args, concrete)
    ]
    return Resolved(ret, o.impl, concrete, o.null_safe, conversions)
