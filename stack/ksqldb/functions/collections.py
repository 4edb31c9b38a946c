"""ARRAY and MAP functions (the common ones; lambdas are not supported)."""

from __future__ import annotations

from ..types import BOOLEAN, INTEGER, STRING, ArrayType, MapType, SqlType
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


_ = MapType
