"""Property-based tests of expression evaluation against the Java semantics ksqlDB's generated code has:
integer overflow and division, DECIMAL precision (never rounded), casts between every pair of types, text
outside the basic multilingual plane, NULL through every operator, timestamp formatting. Examples are
bounded and derandomized, so the file runs in seconds and the same way every time."""

import datetime as dt
import math
from decimal import Decimal, Inexact, localcontext
from functools import cache
from operator import add, mul, sub, truediv

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stack.ksqldb import values as V
from stack.ksqldb.errors import EvalError
from stack.ksqldb.expressions import Compiler, Scope
from stack.ksqldb.parser import parse_expression
from stack.ksqldb.types import (
    BIGINT,
    BOOLEAN,
    BYTES,
    DATE,
    DOUBLE,
    INTEGER,
    STRING,
    TIME,
    TIMESTAMP,
    DecimalType,
    SqlType,
    arithmetic_result,
)

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True)
INT_MIN, INT_MAX, LONG_MIN, LONG_MAX = -(2**31), 2**31 - 1, -(2**63), 2**63 - 1
ints = st.integers(INT_MIN, INT_MAX)
longs = st.integers(LONG_MIN, LONG_MAX)
doubles = st.floats(allow_nan=True, allow_infinity=True)
finite = st.floats(allow_nan=False, allow_infinity=False)


@cache
def compiled(text: str, columns: tuple[tuple[str, SqlType], ...]):
    """Compile once per expression and column types (planning), evaluate per example (records)."""
    return Compiler(Scope(list(columns))).compile(parse_expression(text))


def run(text: str, **values):
    """Evaluate `text` over columns named and typed by `values` ({name: (type, value)})."""
    columns = tuple((name, t) for name, (t, _) in values.items())
    return compiled(text, columns).fn(tuple(v for _, v in values.values()))


def wrap(v: int, bits: int) -> int:
    return (v + 2 ** (bits - 1)) % 2**bits - 2 ** (bits - 1)


def java_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


# ---------------------------------------------------------------- integers: overflow wraps, division truncates
@PROPERTY
@given(a=ints, b=ints, op=st.sampled_from(["+", "-", "*"]))
def test_int_arithmetic_wraps_as_java_int(a, b, op):
    exact = {"+": a + b, "-": a - b, "*": a * b}[op]
    assert run(f"A {op} B", A=(INTEGER, a), B=(INTEGER, b)) == wrap(exact, 32)


@PROPERTY
@given(a=longs, b=ints, op=st.sampled_from(["+", "-", "*"]))
def test_bigint_arithmetic_wraps_as_java_long(a, b, op):
    exact = {"+": a + b, "-": a - b, "*": a * b}[op]
    assert run(f"A {op} B", A=(BIGINT, a), B=(INTEGER, b)) == wrap(exact, 64)


@PROPERTY
@given(a=st.one_of(ints, st.sampled_from([INT_MIN, INT_MAX])), b=st.one_of(ints, st.sampled_from([-1, 0, 1])))
def test_int_division_truncates_and_remainder_follows_the_dividend(a, b):
    if b == 0:
        for op in ("/", "%"):
            with pytest.raises(EvalError):
                run(f"A {op} B", A=(INTEGER, a), B=(INTEGER, b))
        return
    quotient = run("A / B", A=(INTEGER, a), B=(INTEGER, b))
    assert quotient == wrap(java_div(a, b), 32)  # INT_MIN / -1 wraps to INT_MIN, as in Java
    assert run("A % B", A=(INTEGER, a), B=(INTEGER, b)) == a - b * java_div(a, b)


@PROPERTY
@given(a=doubles, b=doubles)
def test_double_division_is_ieee(a, b):
    got = run("A / B", A=(DOUBLE, a), B=(DOUBLE, b))
    if b == 0:
        want = math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a) * math.copysign(1, b)
    else:
        want = a / b
    assert (math.isnan(got) and math.isnan(want)) or got == want


# ---------------------------------------------------------------- DECIMAL: typed as ksqlDB types it, never rounded
def decimals(precision: int, scale: int):
    bound = 10 ** (precision - scale) - Decimal(1).scaleb(-scale)
    return st.decimals(-bound, bound, places=scale, allow_nan=False, allow_infinity=False)


@PROPERTY
@given(a=decimals(6, 2), b=decimals(5, 3), op=st.sampled_from(["+", "-", "*", "/"]))
def test_decimal_arithmetic_is_exact_or_fails(a, b, op):
    ta, tb = DecimalType(6, 2), DecimalType(5, 3)
    t = arithmetic_result(op, ta, tb)
    assert compiled(f"A {op} B", (("A", ta), ("B", tb))).type == t
    with localcontext() as ctx:
        ctx.prec, ctx.traps[Inexact] = 200, True
        try:
            exact = None if op == "/" and not b else {"+": add, "-": sub, "*": mul, "/": truediv}[op](a, b)
        except Inexact:
            exact = None  # a non-terminating quotient
    fits = (
        exact is not None
        and exact == exact.quantize(Decimal(1).scaleb(-t.scale))
        and abs(exact) < Decimal(10) ** (t.precision - t.scale)
    )
    if not fits:
        with pytest.raises(EvalError):
            run(f"A {op} B", A=(ta, a), B=(tb, b))
        return
    got = run(f"A {op} B", A=(ta, a), B=(tb, b))
    assert got == exact and -got.as_tuple().exponent == t.scale


# ---------------------------------------------------------------- casts between every pair of types
DECIMAL_10_2 = DecimalType(10, 2)
PRIMITIVES = [BOOLEAN, INTEGER, BIGINT, DOUBLE, DECIMAL_10_2, STRING, DATE, TIME, TIMESTAMP, BYTES]
#: ksqlDB's CastEvaluator.SUPPORTED, by base type (a type also casts to itself)
KSQLDB_CASTS = {
    ("BOOLEAN", "STRING"),
    *{(s, d) for s in ("INTEGER", "BIGINT", "DOUBLE", "DECIMAL") for d in ("INTEGER", "BIGINT", "DOUBLE", "DECIMAL")},
    *{(s, "STRING") for s in ("INTEGER", "BIGINT", "DOUBLE", "DECIMAL", "DATE", "TIME", "TIMESTAMP")},
    *{("STRING", d) for d in ("BOOLEAN", "INTEGER", "BIGINT", "DOUBLE", "DECIMAL", "TIMESTAMP", "TIME", "DATE")},
    ("STRING", "BYTES"),
    ("TIMESTAMP", "TIME"),
    ("TIMESTAMP", "DATE"),
    ("DATE", "TIMESTAMP"),
}
VALUES = {
    BOOLEAN: st.booleans(),
    INTEGER: ints,
    BIGINT: longs,
    DOUBLE: doubles,
    DECIMAL_10_2: decimals(10, 2),
    STRING: st.one_of(st.text(max_size=12), st.integers().map(str), finite.map(V.java_double_str)),
    DATE: st.dates(),
    TIME: st.times().map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000)),
    TIMESTAMP: st.datetimes().map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000)),
    BYTES: st.binary(max_size=8),
}


def _base(t: SqlType) -> str:
    return "DECIMAL" if isinstance(t, DecimalType) else str(t)


@pytest.mark.parametrize("src", PRIMITIVES, ids=str)
@pytest.mark.parametrize("dst", PRIMITIVES, ids=str)
def test_cast_support_is_ksqldbs(src, dst):
    assert V.cast_supported(src, dst) == (src == dst or (_base(src), _base(dst)) in KSQLDB_CASTS)


@PROPERTY
@given(data=st.data(), src=st.sampled_from(PRIMITIVES), dst=st.sampled_from(PRIMITIVES))
def test_supported_casts_convert_or_fail_the_record(data, src, dst):
    if not V.cast_supported(src, dst):
        return
    value = data.draw(VALUES[src])
    try:
        out = V.cast(value, src, dst)
    except EvalError:
        return  # text that is not a number, a value out of the target's range: NULL and a log entry
    assert out is not None


@PROPERTY
@given(d=doubles, to=st.sampled_from([(INTEGER, 32), (BIGINT, 64)]))
def test_double_to_integer_narrows_as_java(d, to):
    t, bits = to
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    want = 0 if math.isnan(d) else hi if d >= hi else lo if d <= lo else int(d)
    assert V.cast(d, DOUBLE, t) == want


@PROPERTY
@given(value=decimals(30, 3))
def test_decimal_to_integer_truncates_then_keeps_the_low_bits(value):
    assert V.cast(value, DecimalType(30, 3), INTEGER) == wrap(int(value), 32)
    assert V.cast(value, DecimalType(30, 3), BIGINT) == wrap(int(value), 64)


@PROPERTY
@given(data=st.data(), t=st.sampled_from([BOOLEAN, INTEGER, BIGINT, DOUBLE, DECIMAL_10_2, DATE, TIME, TIMESTAMP]))
def test_text_form_reads_back(data, t):
    value = data.draw(VALUES[t].filter(lambda v: not (isinstance(v, float) and not math.isfinite(v))))
    assert V.cast(V.cast(value, t, STRING), STRING, t) == value


@PROPERTY
@given(text=st.text(alphabet=st.sampled_from("0123456789+-_. \t\u00a0eE"), max_size=8))
def test_text_to_int_parses_as_java(text):
    body = text.strip("".join(chr(c) for c in range(0x21)))
    digits = body[1:] if body[:1] in "+-" else body
    valid = digits.isascii() and digits.isdigit() and INT_MIN <= int(body) <= INT_MAX
    if valid:
        assert V.cast(text, STRING, INTEGER) == int(body)
    else:
        with pytest.raises(EvalError):
            V.cast(text, STRING, INTEGER)


# ---------------------------------------------------------------- text outside the basic plane: UTF-16 code units
texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=10)


def utf16_len(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


@PROPERTY
@given(s=texts, t=texts)
def test_string_functions_count_utf16_code_units(s, t):
    cols = {"S": (STRING, s), "T": (STRING, t)}
    assert run("LEN(S)", **cols) == utf16_len(s)
    assert run("LEN(S || T)", **cols) == utf16_len(s) + utf16_len(t)
    assert run("SUBSTRING(S || T, LEN(S) + 1)", **cols) == t
    assert run("SUBSTRING(S || T, 1, LEN(S))", **cols) == s
    if t:
        position = run("INSTR(S || T, T)", **cols)
        assert 1 <= position <= utf16_len(s) + 1
        assert run("LPAD(S, LEN(S) + LEN(T), T)", **cols).endswith(s)


@PROPERTY
@given(code=st.integers(0, 0x10FFFF).filter(lambda c: not 0xD800 <= c <= 0xDFFF))
def test_chr_of_a_code_point_and_of_its_escape_agree(code):
    units = chr(code).encode("utf-16-be")
    escape = "".join(f"\\u{units[i]:02x}{units[i + 1]:02x}" for i in range(0, len(units), 2))
    assert run("CHR(C)", C=(INTEGER, code)) == chr(code)
    assert run("CHR(E)", E=(STRING, escape)) == chr(code)


# ---------------------------------------------------------------- NULL through every operator
NULL_RESULTS = {
    # operator -> what ksqlDB's generated Java gives with one NULL operand
    "N + X": None,
    "N - X": None,
    "N * X": None,
    "N / X": None,
    "N % X": None,
    "-N": None,
    "N = X": False,
    "N <> X": False,
    "N < X": False,
    "N <= X": False,
    "N > X": False,
    "N >= X": False,
    "N BETWEEN X AND X": False,
    "X BETWEEN N AND X": False,
    "N IN (X, 1)": False,
    "N NOT IN (X, 1)": True,
    "X IN (N)": False,
    "N IS NULL": True,
    "N IS NOT NULL": False,
    "N IS DISTINCT FROM X": True,
    "N IS NOT DISTINCT FROM X": False,
    "CAST(N AS STRING)": None,
    "ABS(N)": None,
    "CONCAT(CAST(N AS STRING), 'a')": "a",
    "CAST(N AS STRING) || 'a'": "a",
    "CAST(N AS STRING) LIKE 'a%'": None,
    "COALESCE(N, X)": "X",
    "IFNULL(N, X)": "X",
    "NULLIF(X, N)": "X",
    "CASE WHEN N > X THEN 1 ELSE 2 END": 2,
}


@PROPERTY
@given(x=ints.filter(lambda v: v != 0), case=st.sampled_from(sorted(NULL_RESULTS)))
def test_null_operands_give_ksqldbs_result(x, case):
    want = NULL_RESULTS[case]
    assert run(case, N=(INTEGER, None), X=(INTEGER, x)) == (x if want == "X" else want)


@PROPERTY
@given(b=st.sampled_from([True, False]), case=st.sampled_from(["N AND B", "N OR B", "B AND N", "B OR N", "NOT N"]))
def test_null_booleans_throw_unless_short_circuited(b, case):
    """Java's && and || unbox their operands: a NULL that is evaluated throws (the value is then NULL)."""
    short_circuit = (case == "B AND N" and not b) or (case == "B OR N" and b)
    if short_circuit:
        assert run(case, N=(BOOLEAN, None), B=(BOOLEAN, b)) is b
    else:
        with pytest.raises(EvalError):
            run(case, N=(BOOLEAN, None), B=(BOOLEAN, b))


# ---------------------------------------------------------------- timestamps: Java's formatter, UTC
timestamps = st.datetimes(dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31)).map(
    lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000)
)


@PROPERTY
@given(ts=timestamps)
def test_timestamp_formatting(ts):
    cols = {"T": (TIMESTAMP, ts)}
    millis = f"{ts.microsecond // 1000:03d}"
    iso = f"{ts.year:04d}-{ts.month:02d}-{ts.day:02d}T{ts.hour:02d}:{ts.minute:02d}:{ts.second:02d}.{millis}"
    assert run("CAST(T AS STRING)", **cols) == iso
    assert run("FORMAT_TIMESTAMP(T, 'yyyy-MM-dd''T''HH:mm:ss.SSS')", **cols) == iso
    assert (
        run("PARSE_TIMESTAMP(FORMAT_TIMESTAMP(T, 'yyyy-MM-dd HH:mm:ss.SSS'), 'yyyy-MM-dd HH:mm:ss.SSS')", **cols) == ts
    )
    assert run("FROM_UNIXTIME(UNIX_TIMESTAMP(T))", **cols) == ts
