"""Unit tests of expression typing and evaluation, functions, and formats (pure logic, no server)."""

import math
from decimal import Decimal

import pytest

from stack.ksqldb.errors import EvalError, KsqlStatementError
from stack.ksqldb.expressions import Compiler, Scope
from stack.ksqldb.parser import parse_expression
from stack.ksqldb.types import (
    BIGINT,
    BOOLEAN,
    DOUBLE,
    INTEGER,
    STRING,
    ArrayType,
    DecimalType,
    MapType,
    StructType,
)

COLUMNS = [
    ("I", INTEGER),
    ("L", BIGINT),
    ("D", DOUBLE),
    ("S", STRING),
    ("DEC", DecimalType(4, 2)),
    ("A", ArrayType(INTEGER)),
    ("M", MapType(STRING, INTEGER)),
    ("ST", StructType((("NAME", STRING), ("AGE", INTEGER)))),
    ("B", BOOLEAN),
    ("N", INTEGER),
]
ROW = (7, 10_000_000_000, 2.5, "hello", Decimal("1.25"), [1, 2, 3], {"a": 1}, {"NAME": "ann", "AGE": 30}, True, None)


def ev(text: str, row=ROW):
    c = Compiler(Scope(COLUMNS)).compile(parse_expression(text))
    return c.type, c.fn(row)


@pytest.mark.parametrize(
    "text,expected_type,expected",
    [
        ("I + 1", INTEGER, 8),
        ("I + L", BIGINT, 10_000_000_007),
        ("I / 2", INTEGER, 3),
        ("-7 / 2", INTEGER, -3),
        ("-7 % 3", INTEGER, -1),
        ("I * 1.5", DecimalType(13, 1), Decimal("10.5")),
        ("DEC + 1", DecimalType(13, 2), Decimal("2.25")),
        ("DEC / 5", DecimalType(15, 13), Decimal("0.2500000000000")),
        ("D * 2", DOUBLE, 5.0),
        ("2147483647 + 1", INTEGER, -2147483648),
        ("S + ' world'", STRING, "hello world"),
        ("A[1]", INTEGER, 1),
        ("A[-1]", INTEGER, 3),
        ("A[10]", INTEGER, None),
        ("M['a']", INTEGER, 1),
        ("M['zz']", INTEGER, None),
        ("ST->NAME", STRING, "ann"),
        ("CAST(I AS STRING)", STRING, "7"),
        ("CAST(D AS INT)", INTEGER, 2),
        ("CAST('12.5' AS DECIMAL(5,2))", DecimalType(5, 2), Decimal("12.50")),
        ("CAST(1e10 AS STRING)", STRING, "1.0E10"),
        ("CASE WHEN I > 5 THEN 'big' ELSE 'small' END", STRING, "big"),
        ("CASE WHEN N > 5 THEN 'big' END", STRING, None),
    ],
)
def test_typing_and_values(text, expected_type, expected):
    t, v = ev(text)
    assert t == expected_type
    assert v == expected
    if isinstance(expected, Decimal):
        assert v.as_tuple().exponent == expected.as_tuple().exponent


def test_double_division_follows_java():
    assert ev("D / 0")[1] == math.inf
    assert math.isnan(ev("0.0E0 / 0")[1])


def test_integer_division_by_zero_is_a_record_error():
    c = Compiler(Scope(COLUMNS)).compile(parse_expression("I / 0"))
    with pytest.raises(EvalError):
        c.fn(ROW)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("N > 1", False),  # ksqlDB: comparisons with a null operand are false
        ("N IS NULL", True),
        ("N IS NOT NULL", False),
        ("N IS DISTINCT FROM 1", True),
        ("N IS NOT DISTINCT FROM N", True),
        ("B AND N > 1", False),
        ("NOT (N > 1)", True),
        ("I BETWEEN 1 AND 7", True),
        ("I NOT BETWEEN 1 AND 7", False),
        ("I IN (1, 7)", True),
        ("I IN (1, '7.000')", True),
        ("I NOT IN (1, 2)", True),
        ("S LIKE 'h%o'", True),
        ("S LIKE 'h_llo'", True),
        ("S LIKE 'H%'", False),
        ("'50%' LIKE '50!%' ESCAPE '!'", True),
        ("'500' LIKE '50!%' ESCAPE '!'", False),
        ("D > DEC", True),
        ("ST IN (STRUCT(NAME:='ann', AGE:=30))", True),
        ("A IN (ARRAY[1, 2, 3])", True),
    ],
)
def test_predicates(text, expected):
    t, v = ev(text)
    assert t == BOOLEAN
    assert v is expected


def test_null_booleans_follow_java_not_three_valued_logic():
    """ksqlDB generates Java's && and ||: short-circuit, and an evaluated NULL operand throws (NULL result)."""
    cols = [("X", BOOLEAN), ("Y", BOOLEAN)]
    comp = Compiler(Scope(cols))
    assert comp.compile(parse_expression("Y OR X")).fn((None, True)) is True
    assert comp.compile(parse_expression("Y AND X")).fn((None, False)) is False
    for text in ("X OR Y", "X AND Y", "NOT X", "CASE WHEN X THEN 1 ELSE 2 END"):
        with pytest.raises(EvalError):
            comp.compile(parse_expression(text)).fn((None, True))


@pytest.mark.parametrize(
    "text,expected",
    [
        ("IFNULL(N, 10)", 10),
        ("COALESCE(N, N, 3)", 3),
        ("NULLIF(I, 7)", None),
        ("GREATEST(I, 3, N)", 7),
        ("LEAST(I, 3, N)", 3),
        ("CONCAT('a', CAST(N AS STRING), S)", "ahello"),
        ("CONCAT('a', S)", "ahello"),
        ("CONCAT_WS('-', 'a', CAST(N AS STRING), 'b')", "a-b"),
        ("SUBSTRING(S, 2)", "ello"),
        ("SUBSTRING(S, -3, 2)", "ll"),
        ("INSTR('corporate floor', 'or', -4, 2)", 2),
        ("LPAD(S, 8, 'xy')", "xyxhello"),
        ("RPAD(S, 3, 'xy')", "hel"),
        ("UCASE(S)", "HELLO"),
        ("TRIM('  x ')", "x"),
        ("LEN(S)", 5),
        ("REPLACE(S, 'l', 'L')", "heLLo"),
        ("REGEXP_EXTRACT('(.*) (.*)', 'a b', 2)", "b"),
        ("REGEXP_REPLACE('aaa', 'a(a)?', 'x$1')", "xax"),
        ("SPLIT('a,b', ',')", ["a", "b"]),
        ("MASK('Ab1-')", "Xxn-"),
        ("MASK_LEFT('Abc123', 2)", "Xxc123"),
        ("MASK_RIGHT('Abc123', 2)", "Abc1nn"),
        ("MASK_KEEP_LEFT('Abc123', 2)", "Abxnnn"),
        ("MASK_KEEP_RIGHT('Ab-123', 2, '*', '*', '#', NULL)", "**-#23"),
        ("ENCODE('4578616d706C6521', 'hex', 'utf8')", "Example!"),
        ("ABS(-3)", 3),
        ("ROUND(2.5E0)", 3),
        ("ROUND(-2.5E0)", -2),
        ("ROUND(DEC, 1)", Decimal("1.30")),
        ("FLOOR(DEC)", Decimal("1.00")),
        ("SIGN(-2.0E0)", -1),
        ("SQRT(16)", 4.0),
        ("ARRAY_LENGTH(A)", 3),
        ("FORMAT_DATE(PARSE_DATE('2021-03-04', 'yyyy-MM-dd'), 'dd/MM/yyyy')", "04/03/2021"),
        ("TIMESTAMPTOSTRING(0, 'yyyy-MM-dd HH:mm:ss.SSS')", "1970-01-01 00:00:00.000"),
        ("STRINGTOTIMESTAMP('1970-01-01 00:00:01', 'yyyy-MM-dd HH:mm:ss')", 1000),
        ("STRINGTOTIMESTAMP('1970-01-01T00:00:01Z', 'yyyy-MM-dd''T''HH:mm:ss[.SSS]X')", 1000),
        ("STRINGTOTIMESTAMP('1970-01-01T00:00:01.250Z', 'yyyy-MM-dd''T''HH:mm:ss[.SSS]X')", 1250),
    ],
)
def test_functions(text, expected):
    assert ev(text)[1] == expected


def test_java_math_edge_cases():
    assert math.isnan(ev("LN(-1)")[1])
    assert ev("LN(0)")[1] == -math.inf
    assert ev("COT(0)")[1] == math.inf
    assert ev("POWER(0, -1)")[1] == math.inf


def test_unknown_function_is_a_clear_error():
    with pytest.raises(KsqlStatementError, match="Can't find any functions with the name 'NOPE'"):
        ev("NOPE(1)")


def test_function_overload_errors():
    with pytest.raises(KsqlStatementError, match="ambiguous method parameters \\(INTEGER, BIGINT\\)"):
        ev("GREATEST(I, L)")
    with pytest.raises(KsqlStatementError, match="does not accept parameters \\(STRING, INTEGER\\)"):
        ev("GREATEST(S, I)")


def test_unresolved_column_and_type_errors():
    with pytest.raises(KsqlStatementError, match="SELECT column 'NOPE' cannot be resolved"):
        ev("NOPE + 1")
    with pytest.raises(KsqlStatementError, match="operator does not exist: INTEGER = BOOLEAN \\(true\\)"):
        ev("I IN (1, true)")
    with pytest.raises(KsqlStatementError, match="Comparison with NULL not supported"):
        ev("I = NULL")


@pytest.mark.parametrize(
    "text,expected",
    [
        ("TRANSFORM(A, x => x * 2)", [2, 4, 6]),
        ("FILTER(A, x => x > 1)", [2, 3]),
        ("REDUCE(A, 0, (s, x) => s + x)", 6),
        ("TRANSFORM(M, (k, v) => UCASE(k), (k, v) => v + 1)", {"A": 2}),
        ("FILTER(M, (k, v) => v = 1)", {"a": 1}),
        ("TRANSFORM(A, I => I + 1)", [2, 3, 4]),  # a lambda parameter shadows the column I
        ("TRANSFORM(A, x => x + I)", [8, 9, 10]),  # and columns stay visible inside the lambda
    ],
)
def test_lambdas(text, expected):
    assert ev(text)[1] == expected


def test_unsupported_casts_fail_when_planned():
    with pytest.raises(KsqlStatementError, match="Cast of BOOLEAN to INTEGER is not supported"):
        ev("CAST(B AS INT)")
    with pytest.raises(KsqlStatementError, match="Cast of ARRAY<INTEGER> to MAP<STRING, INTEGER> is not supported"):
        ev("CAST(A AS MAP<STRING, INT>)")
    assert ev("CAST(A AS ARRAY<STRING>)")[1] == ["1", "2", "3"]
    assert ev("CAST(ST AS STRUCT<NAME STRING>)")[1] == {"NAME": "ann"}
