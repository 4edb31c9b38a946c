"""Value conversions with ksqlDB's (Java's) semantics: CAST, text forms, decimal scaling, int overflow."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import math
import re
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from typing import Any

from .errors import EvalError
from .types import (
    BIGINT,
    BOOLEAN,
    BYTES,
    DATE,
    DOUBLE,
    INT_MAX,
    INT_MIN,
    INTEGER,
    LONG_MAX,
    LONG_MIN,
    STRING,
    TIME,
    TIMESTAMP,
    ArrayType,
    DecimalType,
    MapType,
    NullType,
    SqlType,
    StructType,
)

EPOCH = dt.datetime(1970, 1, 1)
EPOCH_DATE = dt.date(1970, 1, 1)


def wide_decimals(fn):
    """Run `fn` with a decimal context wide enough for any DECIMAL (Python's default is 28 digits)."""

    @functools.wraps(fn)
    def run(*args):
        with localcontext() as ctx:
            ctx.prec = 1000
            return fn(*args)

    return run


def wrap_int(v: int) -> int:
    """Java int overflow."""
    if INT_MIN <= v <= INT_MAX:
        return v
    return ((v - INT_MIN) % 2**32) + INT_MIN


def wrap_long(v: int) -> int:
    if LONG_MIN <= v <= LONG_MAX:
        return v
    return ((v - LONG_MIN) % 2**64) + LONG_MIN


def java_double_str(f: float) -> str:
    """Java's Double.toString (shortest repr digits, scientific outside [1e-3, 1e7))."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "Infinity" if f > 0 else "-Infinity"
    a = abs(f)
    if 1e-3 <= a < 1e7:
        return repr(f)  # Python and Java agree on shortest digits, and neither uses an exponent here
    if f == 0.0:
        return "-0.0" if math.copysign(1.0, f) < 0 else "0.0"
    r = repr(f)
    if 1e-3 <= a < 1e7:
        if "e" in r or "E" in r:
            r = format(Decimal(r), "f")
        if "." not in r:
            r += ".0"
        return r
    sign, digits, exp = _java_digits(f, Decimal(r)).as_tuple()
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    exponent = len(digits) - 1 + exp
    mantissa = ds[0] + "." + (ds[1:] or "0")
    return f"{'-' if sign else ''}{mantissa}E{exponent}"


def _java_digits(f: float, shortest: Decimal) -> Decimal:
    """The decimal Java prints for `f`: the shortest that reads back as `f` (Python's repr) but, where one
    digit would do, the two-digit one closest to `f` (Double.toString's specification; it matters for
    subnormals: Double.MIN_VALUE is 4.9E-324, not 5e-324)."""
    if len(shortest.normalize().as_tuple().digits) > 1:
        return shortest
    with localcontext() as ctx:
        ctx.prec = 1100
        exact = Decimal(f)
        found = []
        for adjusted in {exact.adjusted(), shortest.adjusted()}:
            quantum = Decimal(1).scaleb(adjusted - 1)
            low = exact.quantize(quantum, rounding=ROUND_FLOOR)
            found += [c for c in (low, low + quantum) if c and float(c) == f]
        return min(found, key=lambda c: abs(c - exact)) if found else shortest


def decimal_str(d: Decimal) -> str:
    """BigDecimal.toPlainString."""
    return format(d, "f")


def fit_decimal(value: Decimal, t: DecimalType) -> Decimal:
    """Set `value` to the type's scale (HALF_UP) and check it fits the precision."""
    with localcontext() as ctx:
        ctx.prec = max(t.precision + 10, 50)
        try:
            q = value.quantize(Decimal(1).scaleb(-t.scale), rounding=ROUND_HALF_UP)
        except InvalidOperation:
            raise EvalError(f"Cannot fit decimal '{value}' into DECIMAL({t.precision}, {t.scale})") from None
    digits = len(q.as_tuple().digits)
    integral = digits - t.scale if q != 0 else 0
    if integral > t.precision - t.scale:
        raise EvalError(
            f"Numeric field overflow: A field with precision {t.precision} and scale {t.scale} "
            f"must round to an absolute value less than 10^{t.precision - t.scale}. Got {decimal_str(value)}"
        )
    return q


_TRUE_WORDS = ("true", "yes")
_FALSE_WORDS = ("false", "no")


def parse_boolean_lenient(text: str) -> bool | None:
    """ksqlDB's SqlBooleans: prefixes of true/false/yes/no, case-insensitive; None when not a boolean."""
    t = text.strip().lower()
    if not t:
        return None
    if any(w.startswith(t) for w in _TRUE_WORDS):
        return True
    if any(w.startswith(t) for w in _FALSE_WORDS):
        return False
    return None


def format_date(d: dt.date) -> str:
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"  # Java's yyyy pads years before 1000


def format_time(t: dt.time) -> str:
    s = t.strftime("%H:%M:%S") if t.second or t.microsecond else t.strftime("%H:%M")
    if t.microsecond:
        s = t.strftime("%H:%M:%S") + f".{t.microsecond // 1000:03d}".rstrip("0")
    return s


def format_timestamp(ts: dt.datetime) -> str:
    """SqlTimeTypes.formatTimestamp: yyyy-MM-dd'T'HH:mm:ss.SSS (the year padded to four digits)."""
    return f"{format_date(ts)}T{ts.hour:02d}:{ts.minute:02d}:{ts.second:02d}.{ts.microsecond // 1000:03d}"


def to_text(value: Any, t: SqlType) -> str:
    """CAST(value AS STRING) and Java's toString for containers."""
    if value is None:
        return "null"
    if t == STRING:
        return value
    if t == BOOLEAN:
        return "true" if value else "false"
    if t == DOUBLE:
        return java_double_str(value)
    if isinstance(t, DecimalType):
        return decimal_str(value)
    if t in (INTEGER, BIGINT):
        return str(value)
    if t == BYTES:
        return base64.b64encode(value).decode()
    if t == DATE:
        return format_date(value)
    if t == TIME:
        return format_time(value)
    if t == TIMESTAMP:
        return format_timestamp(value)
    if isinstance(t, ArrayType):
        return "[" + ", ".join(to_text(v, t.item) for v in value) + "]"
    if isinstance(t, MapType):
        return "{" + ", ".join(f"{to_text(k, t.key)}={to_text(v, t.value)}" for k, v in value.items()) + "}"
    if isinstance(t, StructType):
        return (
            "Struct{"
            + ",".join(f"{n}={to_text(value.get(n), ft)}" for n, ft in t.fields if value.get(n) is not None)
            + "}"
        )
    return str(value)


def parse_date(text: str) -> dt.date:
    return dt.date.fromisoformat(text.strip())


def parse_time(text: str) -> dt.time:
    return dt.time.fromisoformat(text.strip())


def parse_timestamp(text: str) -> dt.datetime:
    """ksqlDB accepts ISO-8601 prefixes: '2022-06-14', '2022-06-14T10:00', with optional zone."""
    s = text.strip()
    if len(s) == 10:
        return dt.datetime.fromisoformat(s)
    s = s.replace("Z", "+00:00")
    ts = dt.datetime.fromisoformat(s)
    if ts.tzinfo is not None:
        ts = ts.astimezone(dt.UTC).replace(tzinfo=None)
    return ts


def timestamp_to_millis(ts: dt.datetime) -> int:
    delta = ts - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def millis_to_timestamp(ms: int) -> dt.datetime:
    return EPOCH + dt.timedelta(milliseconds=ms)


def date_to_days(d: dt.date) -> int:
    return (d - EPOCH_DATE).days


def days_to_date(days: int) -> dt.date:
    return EPOCH_DATE + dt.timedelta(days=days)


def time_to_millis(t: dt.time) -> int:
    return ((t.hour * 60 + t.minute) * 60 + t.second) * 1000 + t.microsecond // 1000


def millis_to_time(ms: int) -> dt.time:
    return (dt.datetime.min + dt.timedelta(milliseconds=ms)).time()


#: what Java's String.trim() removes: every char up to and including the space
_JAVA_SPACE = "".join(chr(c) for c in range(0x21))
_JAVA_INT = re.compile(r"[+-]?\d+")
_JAVA_DOUBLE = re.compile(r"[+-]?(?:NaN|Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)[fFdD]?")
_JAVA_HEX_DOUBLE = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?[0-9]+[fFdD]?")


def _parse_int(text: str, t: SqlType) -> int:
    """Integer.parseInt / Long.parseLong of the trimmed text: a sign and digits, nothing else."""
    body = text.strip(_JAVA_SPACE)
    lo, hi = (INT_MIN, INT_MAX) if t == INTEGER else (LONG_MIN, LONG_MAX)
    if not _JAVA_INT.fullmatch(body) or not lo <= int(body) <= hi:
        raise EvalError(f'invalid input syntax for type {t}: "{text}"')
    return int(body)


def _parse_double(text: str) -> float:
    """ksqlDB's SqlDoubles.parseDouble: Java's Double.parseDouble (decimal or hex text, an optional f/d
    suffix), refusing NaN and the infinities, an overflowing value included."""
    body = text.strip(_JAVA_SPACE)
    if _JAVA_DOUBLE.fullmatch(body):
        value = float(body.rstrip("fFdD").replace("Infinity", "inf"))
    elif _JAVA_HEX_DOUBLE.fullmatch(body):
        value = float.fromhex(body.rstrip("fFdD"))
    else:
        raise EvalError(f'invalid input syntax for type DOUBLE: "{text}"')
    if math.isnan(value) or math.isinf(value):
        raise EvalError(f"Invalid double value: {text}")
    return value


def cast_supported(src: SqlType, dst: SqlType) -> bool:
    """Whether ksqlDB accepts CAST(<src> AS <dst>) (checked when the statement is planned)."""
    if src == dst or isinstance(src, NullType):
        return True
    numeric = (INTEGER, BIGINT, DOUBLE)
    if (src in numeric or isinstance(src, DecimalType)) and (dst in numeric or isinstance(dst, DecimalType)):
        return True
    if dst == STRING:
        return src != BYTES
    if src == STRING:
        return dst in (BOOLEAN, INTEGER, BIGINT, DOUBLE, DATE, TIME, TIMESTAMP, BYTES) or isinstance(dst, DecimalType)
    if src == TIMESTAMP and dst in (DATE, TIME):
        return True
    if src == DATE and dst == TIMESTAMP:
        return True
    if isinstance(src, ArrayType) and isinstance(dst, ArrayType):
        return cast_supported(src.item, dst.item)
    if isinstance(src, MapType) and isinstance(dst, MapType):
        return cast_supported(src.key, dst.key) and cast_supported(src.value, dst.value)
    if isinstance(src, StructType) and isinstance(dst, StructType):
        return all(dst.field(n) is None or cast_supported(t, dst.field(n)) for n, t in src.fields)
    return False


def cast(value: Any, src: SqlType, dst: SqlType) -> Any:
    """CAST(value AS dst) with ksqlDB's conversions; raises EvalError when the value cannot convert."""
    if value is None:
        return None
    if src == dst and not isinstance(dst, DecimalType):
        return value
    if dst == STRING:
        return to_text(value, src)
    if src == STRING:
        return parse_text(value, dst)
    if dst == BOOLEAN:
        raise EvalError(f"Cannot cast {src} to BOOLEAN")
    if dst in (INTEGER, BIGINT):
        if src == BOOLEAN:
            raise EvalError(f"Cannot cast BOOLEAN to {dst}")
        if src == DOUBLE:
            if math.isnan(value):
                return 0
            lo, hi = (INT_MIN, INT_MAX) if dst == INTEGER else (LONG_MIN, LONG_MAX)
            return min(max(int(value), lo), hi) if not math.isinf(value) else (hi if value > 0 else lo)
        elif isinstance(src, DecimalType):
            iv = int(value)
        else:
            iv = int(value)
        return wrap_int(iv) if dst == INTEGER else wrap_long(iv)
    if dst == DOUBLE:
        if src in (INTEGER, BIGINT) or isinstance(src, DecimalType):
            return float(value)
        raise EvalError(f"Cannot cast {src} to DOUBLE")
    if isinstance(dst, DecimalType):
        if src == DOUBLE:
            if math.isnan(value) or math.isinf(value):
                raise EvalError(f"Cannot cast {java_double_str(value)} to DECIMAL")
            return fit_decimal(Decimal(repr(value)), dst)
        if src in (INTEGER, BIGINT) or isinstance(src, DecimalType):
            return fit_decimal(Decimal(value), dst)
        raise EvalError(f"Cannot cast {src} to {dst}")
    if isinstance(dst, ArrayType) and isinstance(src, ArrayType):
        return [cast(v, src.item, dst.item) for v in value]
    if isinstance(dst, MapType) and isinstance(src, MapType):
        return {cast(k, src.key, dst.key): cast(v, src.value, dst.value) for k, v in value.items()}
    if isinstance(dst, StructType) and isinstance(src, StructType):
        out = {}
        for name, ftype in dst.fields:
            stype = src.field(name)
            out[name] = cast(value.get(name), stype, ftype) if stype is not None else None
        return out
    if dst == TIMESTAMP and src == DATE:
        return dt.datetime(value.year, value.month, value.day)
    if dst == DATE and src == TIMESTAMP:
        return value.date()
    if dst == TIME and src == TIMESTAMP:
        return value.time()
    if isinstance(src, NullType):
        return None
    raise EvalError(f"Cannot cast {src} to {dst}")


def parse_text(text: str, dst: SqlType) -> Any:
    """Convert a STRING to `dst` (CAST from STRING, literal coercion)."""
    if dst == STRING:
        return text
    if dst == BOOLEAN:
        b = parse_boolean_lenient(text)
        if b is None:
            raise EvalError(f'invalid input syntax for type BOOLEAN: "{text}"')
        return b
    if dst in (INTEGER, BIGINT):
        return _parse_int(text, dst)
    if dst == DOUBLE:
        return _parse_double(text)
    if isinstance(dst, DecimalType):
        try:
            return fit_decimal(Decimal(text.strip()), dst)
        except InvalidOperation:
            raise EvalError(f'invalid input syntax for type {dst}: "{text}"') from None
    try:
        if dst == DATE:
            return parse_date(text)
        if dst == TIME:
            return parse_time(text)
        if dst == TIMESTAMP:
            return parse_timestamp(text)
    except ValueError:
        raise EvalError(f'invalid input syntax for type {dst}: "{text}"') from None
    if dst == BYTES:  # base64 text, as ksqlDB's CastEvaluator decodes it
        try:
            return base64.b64decode(text.strip(_JAVA_SPACE), validate=True)
        except ValueError:
            raise EvalError(f'invalid input syntax for type BYTES: "{text}"') from None
    raise EvalError(f"Cannot cast STRING to {dst}")
