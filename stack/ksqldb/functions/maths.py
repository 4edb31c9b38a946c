"""Maths functions with Java's floating-point behaviour (NaN and infinities instead of exceptions)."""

from __future__ import annotations

import math
import random
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from ..errors import EvalError
from ..types import BIGINT, BYTES, DATE, DOUBLE, INTEGER, STRING, TIME, TIMESTAMP, DecimalType, SqlType, common_type
from ..values import wide_decimals
from .registry import DECIMAL, register

INF = float("inf")
NAN = float("nan")


def jdiv(a: float, b: float) -> float:
    """Java double division."""
    if b == 0:
        if a == 0 or math.isnan(a):
            return NAN
        return math.copysign(INF, a) * math.copysign(1.0, b)
    return a / b


def _same(types: list[SqlType]) -> SqlType:
    return types[0]


# ------------------------------------------------------------------ abs / sign / ceil / floor
@register("ABS", [INTEGER], INTEGER, deterministic=True)
@register("ABS", [BIGINT], BIGINT, deterministic=True)
@register("ABS", [DOUBLE], DOUBLE, deterministic=True)
@register("ABS", [DECIMAL], _same, deterministic=True)
def abs_(x):
    return abs(x)


@register("SIGN", [INTEGER], INTEGER, deterministic=True)
@register("SIGN", [BIGINT], INTEGER, deterministic=True)
@register("SIGN", [DOUBLE], INTEGER, deterministic=True)
@register("SIGN", [DECIMAL], INTEGER, deterministic=True)
def sign(x):
    if isinstance(x, float) and math.isnan(x):
        return 0
    return (x > 0) - (x < 0)


def _scale(d: Decimal) -> int:
    e = d.as_tuple().exponent
    return -e if isinstance(e, int) and e < 0 else 0


def _dec_integral(d: Decimal, rounding: str) -> Decimal:
    """Round to an integer but keep the input's scale (ksqlDB keeps the column's DECIMAL type)."""
    return d.quantize(Decimal(1), rounding=rounding).quantize(Decimal(1).scaleb(-_scale(d)))


@register("CEIL", [INTEGER], INTEGER, deterministic=True)
@register("CEIL", [BIGINT], BIGINT, deterministic=True)
@register("FLOOR", [INTEGER], INTEGER, deterministic=True)
@register("FLOOR", [BIGINT], BIGINT, deterministic=True)
@register("ROUND", [INTEGER], INTEGER, deterministic=True)
@register("ROUND", [BIGINT], BIGINT, deterministic=True)
@register("TRUNC", [INTEGER], INTEGER, deterministic=True)
@register("TRUNC", [BIGINT], BIGINT, deterministic=True)
def identity(x):
    return x


@register("CEIL", [DOUBLE], DOUBLE, deterministic=True)
def ceil_d(x):
    return float(math.ceil(x)) if math.isfinite(x) else x


@register("CEIL", [DECIMAL], _same, deterministic=True)
@wide_decimals
def ceil_dec(x):
    return _dec_integral(x, ROUND_CEILING)


@register("FLOOR", [DOUBLE], DOUBLE, deterministic=True)
def floor_d(x):
    return float(math.floor(x)) if math.isfinite(x) else x


@register("FLOOR", [DECIMAL], _same, deterministic=True)
@wide_decimals
def floor_dec(x):
    return _dec_integral(x, ROUND_FLOOR)


# ------------------------------------------------------------------ round / trunc
def _half_up_positive(d: Decimal, places: int) -> Decimal:
    """Round half towards positive infinity (Java Math.round semantics) at `places` decimals."""
    shifted = d.scaleb(places)
    return (shifted + Decimal("0.5")).to_integral_value(rounding=ROUND_FLOOR).scaleb(-places)


@register("ROUND", [DOUBLE], BIGINT, deterministic=True)
def round_d(x):
    if math.isnan(x):
        return 0
    return int(math.floor(x + 0.5)) if abs(x) < 2**52 else int(x)


@register("ROUND", [DOUBLE, INTEGER], DOUBLE, deterministic=True)
@wide_decimals
def round_d_places(x, places):
    if not math.isfinite(x):
        return x
    return float(_half_up_positive(Decimal(repr(x)), places))


def _integral_dec_type(types):
    t = types[0]
    return DecimalType(max(t.precision - t.scale, 1), 0)


@register("ROUND", [DECIMAL], _integral_dec_type, deterministic=True)
@wide_decimals
def round_dec(x):
    return x.quantize(Decimal(1), rounding=ROUND_HALF_UP)


@register("ROUND", [DECIMAL, INTEGER], _same, deterministic=True)
@wide_decimals
def round_dec_places(x, places):
    scale = _scale(x)
    rounded = x.scaleb(places).quantize(Decimal(1), rounding=ROUND_HALF_UP).scaleb(-places)
    return rounded.quantize(Decimal(1).scaleb(-scale))


@register("TRUNC", [DOUBLE], BIGINT, deterministic=True)
def trunc_d(x):
    return int(x) if math.isfinite(x) else 0


@register("TRUNC", [DOUBLE, INTEGER], DOUBLE, deterministic=True)
@wide_decimals
def trunc_d_places(x, places):
    if not math.isfinite(x):
        return x
    return float(Decimal(repr(x)).scaleb(places).to_integral_value(rounding=ROUND_DOWN).scaleb(-places))


@register("TRUNC", [DECIMAL], _integral_dec_type, deterministic=True)
@wide_decimals
def trunc_dec(x):
    return x.quantize(Decimal(1), rounding=ROUND_DOWN)


@register("TRUNC", [DECIMAL, INTEGER], _same, deterministic=True)
@wide_decimals
def trunc_dec_places(x, places):
    d = x.scaleb(places).to_integral_value(rounding=ROUND_DOWN).scaleb(-places)
    return d.quantize(Decimal(1).scaleb(-_scale(x)))


# ------------------------------------------------------------------ transcendental
def _safe(fn):
    def wrapped(*args):
        try:
            return fn(*args)
        except (ValueError, ZeroDivisionError):
            return NAN
        except OverflowError:
            return INF

    return wrapped


@register("LN", [DOUBLE], DOUBLE, deterministic=True)
def ln(x: float) -> float:
    if math.isnan(x) or x < 0:
        return NAN
    if x == 0:
        return -INF
    if math.isinf(x):
        return INF
    return math.log(x)


@register("EXP", [DOUBLE], DOUBLE, deterministic=True)
def exp(x):
    try:
        return math.exp(x)
    except OverflowError:
        return INF


@register("SQRT", [DOUBLE], DOUBLE, deterministic=True)
def sqrt(x):
    return math.sqrt(x) if x >= 0 else NAN


@register("CBRT", [DOUBLE], DOUBLE, deterministic=True)
def cbrt(x):
    if not math.isfinite(x) or x == 0:
        return x
    r = abs(x) ** (1.0 / 3.0)
    rr = round(r)
    if rr**3 == abs(x):
        r = float(rr)
    return math.copysign(r, x)


register("LOG", [DOUBLE], DOUBLE, deterministic=True)(ln)  # ksqlDB's one-argument LOG is the natural logarithm


@register("LOG", [DOUBLE, DOUBLE], DOUBLE, deterministic=True)
def log_base(base, x):
    if base <= 0 or base == 1 or x < 0 or math.isnan(base) or math.isnan(x):
        return NAN
    return jdiv(ln(x), ln(base))


@register("POWER", [DOUBLE, DOUBLE], DOUBLE, deterministic=True)
def power(b, e):
    if b == 0 and e < 0:
        return INF
    try:
        return math.pow(b, e)
    except (ZeroDivisionError, OverflowError):
        return INF
    except ValueError:
        return NAN


for _name, _fn in (
    ("SIN", math.sin),
    ("COS", math.cos),
    ("TAN", math.tan),
    ("ASIN", math.asin),
    ("ACOS", math.acos),
    ("ATAN", math.atan),
    ("SINH", math.sinh),
    ("COSH", math.cosh),
    ("TANH", math.tanh),
    ("DEGREES", math.degrees),
    ("RADIANS", math.radians),
):
    register(_name, [DOUBLE], DOUBLE)(_safe(_fn))


@register("COT", [DOUBLE], DOUBLE, deterministic=True)
def cot(x):
    return jdiv(1.0, math.tan(x))


@register("ATAN2", [DOUBLE, DOUBLE], DOUBLE, deterministic=True)
def atan2(y, x):
    return math.atan2(y, x)


@register("PI", [], DOUBLE, deterministic=True)
def pi():
    return math.pi


@register("RANDOM", [], DOUBLE)
def random_():
    return random.random()


# ------------------------------------------------------------------ greatest / least
def _widest(types: list[SqlType]) -> SqlType:
    return common_type(types)


def _greatest(*xs):
    return max((x for x in xs if x is not None), default=None)


def _least(*xs):
    return min((x for x in xs if x is not None), default=None)


for _t in (INTEGER, BIGINT, DOUBLE, DECIMAL, STRING, BYTES, DATE, TIME, TIMESTAMP):
    _ret = _widest if _t == DECIMAL else _t
    register("GREATEST", [_t, _t], _ret, variadic=True, null_safe=False, display="greatest", deterministic=True)(
        _greatest
    )
    register("LEAST", [_t, _t], _ret, variadic=True, null_safe=False, display="least", deterministic=True)(_least)


# ------------------------------------------------------------------ geo
_RADIUS = {
    "mi": 3959.0,
    "mile": 3959.0,
    "miles": 3959.0,
    "km": 6371.0,
    "kilometer": 6371.0,
    "kilometers": 6371.0,
    "kilometre": 6371.0,
    "kilometres": 6371.0,
}


@register("GEO_DISTANCE", [DOUBLE, DOUBLE, DOUBLE, DOUBLE], DOUBLE)
def geo_distance(lat1, lon1, lat2, lon2):
    return geo_distance_unit(lat1, lon1, lat2, lon2, "KM")


@register("GEO_DISTANCE", [DOUBLE, DOUBLE, DOUBLE, DOUBLE, STRING], DOUBLE, null_safe=False)
def geo_distance_unit(lat1, lon1, lat2, lon2, unit):
    """Great-circle distance; a null unit means kilometres."""
    if None in (lat1, lon1, lat2, lon2):
        return None
    radius = _RADIUS.get((unit or "KM").strip().lower())
    if radius is None:
        raise EvalError("GeoDistance function units parameter must be one of MI, MILES, KM or KILOMETERS")
    if not (-90 <= lat1 <= 90 and -90 <= lat2 <= 90):
        raise EvalError("valid latitude values for GeoDistance function are in the range of -90 to 90 degrees.")
    if not (-180 <= lon1 <= 180 and -180 <= lon2 <= 180):
        raise EvalError("valid longitude values for GeoDistance function are in the range of -180 to +180 degrees.")
    dlat = math.radians(lat2 - lat1)
    dlon = math.radians(lon2 - lon1)
    a = math.pow(math.sin(dlat / 2), 2) + math.cos(math.radians(lat1)) * math.cos(math.radians(lat2)) * math.pow(
        math.sin(dlon / 2), 2
    )
    return 2 * math.atan2(math.sqrt(a), math.sqrt(1 - a)) * radius
