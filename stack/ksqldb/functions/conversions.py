"""BYTES read as numbers (INT_FROM_BYTES, BIGINT_FROM_BYTES, DOUBLE_FROM_BYTES), as ksqlDB's conversion UDFs:
a big- or little-endian two's complement integer or IEEE double of exactly its width."""

from __future__ import annotations

import struct

from ..errors import EvalError
from ..types import BIGINT, BYTES, DOUBLE, INTEGER, STRING
from .registry import register

_ORDERS = {"BIG_ENDIAN": ">", "LITTLE_ENDIAN": "<"}


def _unpack(value: bytes, code: str, order: str = "BIG_ENDIAN") -> int | float:
    prefix = _ORDERS.get(order.upper())
    if prefix is None:
        raise EvalError(f"Byte order must be BIG_ENDIAN or LITTLE_ENDIAN. Unknown byte order '{order}'.")
    size = struct.calcsize(code)
    if len(value) != size:
        raise EvalError(f"Number of bytes must be equal to {size}, but found {len(value)}")
    return struct.unpack(prefix + code, value)[0]


@register("INT_FROM_BYTES", [BYTES], INTEGER, deterministic=True)
@register("INT_FROM_BYTES", [BYTES, STRING], INTEGER, deterministic=True)
def int_from_bytes(value: bytes, order: str = "BIG_ENDIAN") -> int:
    return _unpack(value, "i", order)  # type: ignore[return-value]


@register("BIGINT_FROM_BYTES", [BYTES], BIGINT, deterministic=True)
@register("BIGINT_FROM_BYTES", [BYTES, STRING], BIGINT, deterministic=True)
def bigint_from_bytes(value: bytes, order: str = "BIG_ENDIAN") -> int:
    return _unpack(value, "q", order)  # type: ignore[return-value]


@register("DOUBLE_FROM_BYTES", [BYTES], DOUBLE, deterministic=True)
@register("DOUBLE_FROM_BYTES", [BYTES, STRING], DOUBLE, deterministic=True)
def double_from_bytes(value: bytes, order: str = "BIG_ENDIAN") -> float:
    return _unpack(value, "d", order)  # type: ignore[return-value]
