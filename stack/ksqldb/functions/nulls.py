"""Null handling: IFNULL, COALESCE, NULLIF."""

from __future__ import annotations

from ..types import SqlType
from .registry import T, register


def _first(types: list[SqlType]) -> SqlType:
    return types[0]


@register("IFNULL", [T, T], _first, null_safe=False, deterministic=True)
def ifnull(value, default):
    return default if value is None else value


@register("COALESCE", [T, T], _first, variadic=True, null_safe=False, display="COALESCE", deterministic=True)
def coalesce(*values):
    return next((v for v in values if v is not None), None)


@register("NULLIF", [T, T], _first, null_safe=False, deterministic=True)
def nullif(a, b):
    return None if a is None or a == b else a
