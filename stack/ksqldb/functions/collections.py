"""ARRAY and MAP functions (the common ones; TRANSFORM, FILTER and REDUCE, which take lambdas, are compiled by
expressions.py)."""

from __future__ import annotations

from .. import values as V
from ..errors import EvalError
from ..types import BIGINT, BOOLEAN, INTEGER, STRING, ArrayType, MapType, SqlType, StructType
from .registry import ARRAY_T, MAP_KV, T, register


def _item(types: list[SqlType]) -> SqlType:
    return types[0].item  # type: ignore[attr-defined]


def _same(types: list[SqlType]) -> SqlType:
    return types[0]


@register("ARRAY_LENGTH", [ARRAY_T], INTEGER)
def array_length(a):
    return len(a)


@register("ARRAY_CONTAINS", [ARRAY_T, T], BOOLEAN, null_safe=False)
def array_contains(a, v):
    return False if a is None else v in a


@register("ARRAY_DISTINCT", [ARRAY_T], _same)
def array_distinct(a):
    out = []
    for v in a:
        if v not in out:
            out.append(v)
    return out


@register("ARRAY_MAX", [ARRAY_T], _item)
def array_max(a):
    vals = [v for v in a if v is not None]
    return max(vals) if vals else None


@register("ARRAY_MIN", [ARRAY_T], _item)
def array_min(a):
    vals = [v for v in a if v is not None]
    return min(vals) if vals else None


@register("ARRAY_JOIN", [ARRAY_T], STRING)
def array_join(a):
    return ",".join("null" if v is None else str(v) for v in a)


@register("MAP_KEYS", [MAP_KV], lambda t: ArrayType(t[0].key))
def map_keys(m):
    return list(m.keys())


@register("MAP_VALUES", [MAP_KV], lambda t: ArrayType(t[0].value))
def map_values(m):
    return list(m.values())


# ------------------------------------------------------------------ more ARRAY / MAP functions
def _distinct(values: list) -> list:
    out: list = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


@register("ARRAY_CONCAT", [ARRAY_T, ARRAY_T], _same, null_safe=False)
def array_concat(a, b):
    if a is None and b is None:
        return None
    return list(a or []) + list(b or [])


@register("ARRAY_EXCEPT", [ARRAY_T, ARRAY_T], _same)
def array_except(a, b):
    return [v for v in _distinct(a) if v not in b]


@register("ARRAY_INTERSECT", [ARRAY_T, ARRAY_T], _same)
def array_intersect(a, b):
    return [v for v in _distinct(a) if v in b]


@register("ARRAY_UNION", [ARRAY_T, ARRAY_T], _same)
def array_union(a, b):
    return _distinct(list(a) + list(b))


@register("ARRAY_REMOVE", [ARRAY_T, T], _same, null_safe=False)
def array_remove(a, v):
    if a is None:
        return None
    return [x for x in a if x != v] if v is not None else [x for x in a if x is not None]


def _sort(a, direction="ASC"):
    d = direction.upper()
    if d not in ("ASC", "DESC"):
        return None
    present = sorted((v for v in a if v is not None), reverse=(d == "DESC"))
    nulls = [None] * sum(1 for v in a if v is None)
    return present + nulls


register("ARRAY_SORT", [ARRAY_T], _same)(_sort)
register("ARRAY_SORT", [ARRAY_T, STRING], _same)(_sort)


@register("ARRAY_JOIN", [ARRAY_T, STRING], STRING)
def array_join_delim(a, delim):
    return delim.join(
        "null"
        if v is None
        else (
            V.java_double_str(v)
            if isinstance(v, float)
            else ("true" if v is True else "false" if v is False else str(v))
        )
        for v in a
    )


@register("SLICE", [ARRAY_T, INTEGER, INTEGER], _same)
def slice_(a, start, end):
    return a[max(start - 1, 0) : end]


@register("GENERATE_SERIES", [INTEGER, INTEGER], ArrayType(INTEGER))
@register("GENERATE_SERIES", [BIGINT, BIGINT], ArrayType(BIGINT))
def generate_series(start, end):
    step = 1 if end >= start else -1
    return list(range(start, end + step, step))


@register("GENERATE_SERIES", [INTEGER, INTEGER, INTEGER], ArrayType(INTEGER))
@register("GENERATE_SERIES", [BIGINT, BIGINT, INTEGER], ArrayType(BIGINT))
def generate_series_step(start, end, step):
    if step == 0 or (end - start) * step < 0:
        raise EvalError("GENERATE_SERIES step has wrong sign or is zero")
    return list(range(start, end + (1 if step > 0 else -1), step))


@register("AS_MAP", [ARRAY_T, ARRAY_T], lambda t: MapType(t[0].item, t[1].item))
def as_map(keys, vals):
    return {k: (vals[i] if i < len(vals) else None) for i, k in enumerate(keys)}


@register("MAP_UNION", [MAP_KV, MAP_KV], _same, null_safe=False)
def map_union(a, b):
    if a is None and b is None:
        return None
    out = dict(a or {})
    out.update(b or {})
    return out


@register("ENTRIES", [MAP_KV, BOOLEAN], lambda t: ArrayType(StructType((("K", t[0].key), ("V", t[0].value)))))
def entries(m, sort):
    items = sorted(m.items(), key=lambda kv: kv[0]) if sort else list(m.items())
    return [{"K": k, "V": v} for k, v in items]


@register("AS_VALUE", [T], _same, null_safe=False)
def as_value(v):
    return v
