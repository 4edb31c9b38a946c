"""Expressions behave as ksqlDB's generated Java does: literals in range of their type, text as UTF-16 code
units, doubles printed as Double.toString prints them (examples; the properties are in
test_ksqldb_properties.py)."""

from decimal import Decimal

import pytest

from stack.ksqldb.errors import EvalError, KsqlError
from stack.ksqldb.expressions import Compiler, Scope
from stack.ksqldb.parser import parse_expression
from stack.ksqldb.values import java_double_str

EMOJI = "\U0001f600"


def ev(text: str):
    return Compiler(Scope([])).compile(parse_expression(text)).fn(())


@pytest.mark.parametrize(
    "text, message",
    [
        ("9223372036854775808", "line 1:8: Invalid numeric literal: 9223372036854775808"),
        ("99999999999999999999 + 1", "line 1:8: Invalid numeric literal: 99999999999999999999"),
        ("1e400", "line 1:8: Number overflows DOUBLE: 1e400"),
        ("1 + 2E308", "Number overflows DOUBLE: 2E308"),
    ],
)
def test_literals_out_of_range_are_refused(text, message):
    with pytest.raises(KsqlError) as info:
        ev(text)
    assert message in info.value.message


def test_literals_at_the_edges_of_their_types():
    assert ev("-9223372036854775808") == -(2**63)
    assert ev("9223372036854775807") == 2**63 - 1
    assert ev("1.7976931348623157E308") == 1.7976931348623157e308
    assert ev("4.9E-324") == 5e-324


@pytest.mark.parametrize(
    "text, expected",
    [
        (f"LEN('a{EMOJI}b')", 4),
        (f"SUBSTRING('a{EMOJI}b', 2, 2)", EMOJI),
        (f"SUBSTRING('{EMOJI}b', 3)", "b"),
        (f"INSTR('{EMOJI}b', 'b')", 3),
        (f"LPAD('{EMOJI}', 3, 'x')", "x" + EMOJI),
        (f"RPAD('{EMOJI}{EMOJI}', 2, 'x')", EMOJI),
        ("CHR('\\ud83d\\ude00')", EMOJI),
        ("CHR('\\u004bxyz')", "Kxyz"),
        ("CHR('\\u00')", None),
        ("CHR('u004b')", None),
        ("CHR(128512)", EMOJI),
        ("CHR(1114112)", None),
    ],
)
def test_text_is_utf16_code_units(text, expected):
    assert ev(text) == expected


@pytest.mark.parametrize(
    "value, text",
    [
        (5e-324, "4.9E-324"),
        (1e-323, "9.9E-324"),
        (1e23, "1.0E23"),
        (1e7, "1.0E7"),
        (9999999.0, "9999999.0"),
        (1e-3, "0.001"),
        (1e-4, "1.0E-4"),
        (-0.0, "-0.0"),
        (1.7976931348623157e308, "1.7976931348623157E308"),
        (float("nan"), "NaN"),
        (float("-inf"), "-Infinity"),
    ],
)
def test_doubles_print_as_java(value, text):
    assert java_double_str(value) == text


@pytest.mark.parametrize(
    "text, expected",
    [
        ("10.0 / 4.0", Decimal("2.500000")),
        ("99.99 + 0.01", Decimal("100.00")),
        ("1.25 * 1.25", Decimal("1.5625")),
        ("-7.0 % 3", Decimal("-1.0")),
    ],
)
def test_decimal_arithmetic_is_exact(text, expected):
    assert ev(text) == expected and str(ev(text)) == str(expected)


@pytest.mark.parametrize("text", ["1.0 / 3.0", "1.25 / 3", "1.0 / 0"])
def test_decimal_results_that_need_rounding_fail_the_record(text):
    """ksqlDB computes DECIMAL arithmetic with RoundingMode.UNNECESSARY: a result it would have to round
    (or a division by zero) throws, and the column is NULL for that record."""
    with pytest.raises(EvalError):
        ev(text)


@pytest.mark.parametrize(
    "text, precision, scale",
    [("0.005", 4, 3), ("-0.5", 2, 1), ("0.0", 2, 1), ("12.50", 4, 2), ("1.0", 2, 1)],
)
def test_decimal_literal_types_follow_ksqldb(text, precision, scale):
    """DecimalUtil.fromValue: a literal strictly between -1 and 1 has one digit before its scale."""
    t = Compiler(Scope([])).compile(parse_expression(text)).type
    assert (t.precision, t.scale) == (precision, scale)


@pytest.mark.parametrize(
    "declared, message",
    [
        ("DECIMAL(0, 0)", "DECIMAL precision must be >= 1: DECIMAL(0,0)"),
        ("DECIMAL(2, 3)", "DECIMAL precision must be >= scale: DECIMAL(2,3)"),
    ],
)
def test_decimal_type_parameters_are_checked_as_ksqldb(declared, message):
    with pytest.raises(KsqlError) as info:
        ev(f"CAST(1 AS {declared})")
    assert message in info.value.message
