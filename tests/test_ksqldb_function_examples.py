"""ksqlDB's documented scalar functions, one example or more each, with the results its docs and Java UDFs
give (functions with rules of their own have their own tests: test_ksqldb_functions.py,
test_ksqldb_java_semantics.py, test_ksqldb_expressions.py)."""

import datetime
from decimal import Decimal

import pytest

from stack.ksqldb.errors import KsqlStatementError
from stack.ksqldb.expressions import Compiler, Scope
from stack.ksqldb.parser import parse_expression


def ev(text: str):
    return Compiler(Scope([])).compile(parse_expression(text)).fn(())


@pytest.mark.parametrize(
    "text, expected",
    [
        ("ACOS(1.0E0)", 0.0),
        ("ASIN(0.0E0)", 0.0),
        ("ATAN(0.0E0)", 0.0),
        ("ATAN2(0.0E0, 1.0E0)", 0.0),
        ("CBRT(27.0E0)", 3.0),
        ("CEIL(1.2E0)", 2.0),
        ("CEIL(-1.2E0)", -1.0),
        ("COS(0.0E0)", 1.0),
        ("COSH(0.0E0)", 1.0),
        ("DEGREES(3.141592653589793E0)", 180.0),
        ("EXP(0.0E0)", 1.0),
        ("LOG(100.0E0)", pytest.approx(4.605170185988092)),
        ("LOG(2.0E0, 8.0E0)", 3.0),
        ("RADIANS(180.0E0)", pytest.approx(3.141592653589793)),
        ("SIN(0.0E0)", 0.0),
        ("SINH(0.0E0)", 0.0),
        ("TAN(0.0E0)", 0.0),
        ("TANH(0.0E0)", 0.0),
        ("TRUNC(1.789E0)", 1),
        ("TRUNC(1.789E0, 2)", 1.78),
        ("TRUNC(-1.789E0)", -1),
        ("TRUNC(1.789)", Decimal("1")),
        ("GEO_DISTANCE(37.4439E0, -122.1663E0, 51.5257E0, -0.1122E0)", pytest.approx(8634.659796579546)),
        ("GEO_DISTANCE(37.4439E0, -122.1663E0, 51.5257E0, -0.1122E0, 'mi')", pytest.approx(5365.659729188264)),
        ("GENERATE_SERIES(1, 5)", [1, 2, 3, 4, 5]),
        ("GENERATE_SERIES(5, 1, -2)", [5, 3, 1]),
    ],
)
def test_math_functions(text, expected):
    assert ev(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("ARRAY[1, 2]", [1, 2]),
        ("ARRAY_CONCAT(ARRAY[1, 2], ARRAY[2, 3])", [1, 2, 2, 3]),
        ("ARRAY_CONTAINS(ARRAY[1, 2], 2)", True),
        ("ARRAY_DISTINCT(ARRAY[1, 1, 2, NULL, NULL])", [1, 2, None]),
        ("ARRAY_EXCEPT(ARRAY[1, 2, 3, 2], ARRAY[2])", [1, 3]),
        ("ARRAY_INTERSECT(ARRAY[1, 2, 3, 2], ARRAY[2, 3, 4])", [2, 3]),
        ("ARRAY_JOIN(ARRAY[1, 2, 3])", "1,2,3"),
        ("ARRAY_JOIN(ARRAY['a', 'b'], '-')", "a-b"),
        ("ARRAY_MAX(ARRAY[1, 3, 2])", 3),
        ("ARRAY_MIN(ARRAY['b', 'a'])", "a"),
        ("ARRAY_REMOVE(ARRAY[1, 2, 1], 1)", [2]),
        ("ARRAY_SORT(ARRAY[3, NULL, 1])", [1, 3, None]),
        ("ARRAY_SORT(ARRAY[3, NULL, 1], 'DESC')", [3, 1, None]),
        ("ARRAY_UNION(ARRAY[1, 2], ARRAY[2, 3])", [1, 2, 3]),
        ("AS_MAP(ARRAY['a', 'b'], ARRAY[1, 2])", {"a": 1, "b": 2}),
        ("AS_VALUE(1)", 1),
        ("ELT(2, 'a', 'b')", "b"),
        ("FIELD('b', 'a', 'b')", 2),
        ("MAP('a' := 1)", {"a": 1}),
        ("MAP_KEYS(MAP('a' := 1, 'b' := 2))", ["a", "b"]),
        ("MAP_VALUES(MAP('a' := 1, 'b' := 2))", [1, 2]),
        ("MAP_UNION(MAP('a' := 1), MAP('a' := 2, 'b' := 3))", {"a": 2, "b": 3}),
        ("SLICE(ARRAY[1, 2, 3, 4], 2, 3)", [2, 3]),
    ],
)
def test_collections_functions(text, expected):
    assert ev(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("EXTRACTJSONFIELD('{\"a\": {\"b\": [1, 2]}}', '$.a.b[1]')", "2"),
        ("IS_JSON_STRING('[1]')", True),
        ("IS_JSON_STRING('x')", False),
        ("JSON_ARRAY_LENGTH('[1, 2, 3]')", 3),
        ("JSON_ITEMS('[{\"a\": 1}, 2]')", ['{"a":1}', "2"]),
        ('JSON_KEYS(\'{"a": 1, "b": 2}\')', ["a", "b"]),
        ('JSON_RECORDS(\'{"a": 1, "b": [2]}\')', {"a": "1", "b": "[2]"}),
        ("TO_JSON_STRING(MAP('a' := 1))", '{"a":1}'),
        ("TO_JSON_STRING(STRUCT(A := 1, B := 'x'))", '{"A":1,"B":"x"}'),
        ("INITCAP('hello wORLD')", "Hello World"),
        ("LCASE('AbC')", "abc"),
        ("MD5('a')", "0cc175b9c0f1b6a831c399e269772661"),
        ("REGEXP_EXTRACT_ALL('\\d+', 'a1b22')", ["1", "22"]),
        ("REGEXP_SPLIT_TO_ARRAY('a1b22c', '\\d+')", ["a", "b", "c"]),
        ("SPLIT_TO_MAP('a=1;b=2', ';', '=')", {"a": "1", "b": "2"}),
    ],
)
def test_text_functions(text, expected):
    assert ev(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("CONVERT_TZ(FROM_UNIXTIME(0), 'UTC', 'America/Los_Angeles')", datetime.datetime(1969, 12, 31, 16, 0)),
        ("DATEADD(DAYS, 1, FROM_DAYS(0))", datetime.date(1970, 1, 2)),
        ("DATESUB(DAYS, 1, FROM_DAYS(0))", datetime.date(1969, 12, 31)),
        ("DATETOSTRING(0, 'yyyy-MM-dd')", "1970-01-01"),
        ("FORMAT_TIME(PARSE_TIME('10:11:12', 'HH:mm:ss'), 'HH-mm')", "10-11"),
        ("FORMAT_TIMESTAMP(FROM_UNIXTIME(1000), 'yyyy-MM-dd''T''HH:mm:ss.SSS')", "1970-01-01T00:00:01.000"),
        ("FORMAT_TIMESTAMP(FROM_UNIXTIME(0), 'yyyy-MM-dd HH:mm z', 'America/Los_Angeles')", "1969-12-31 16:00 PST"),
        ("FROM_DAYS(1)", datetime.date(1970, 1, 2)),
        ("FROM_UNIXTIME(86400000)", datetime.datetime(1970, 1, 2, 0, 0)),
        ("PARSE_TIME('10:11', 'HH:mm')", datetime.time(10, 11)),
        ("PARSE_TIMESTAMP('2020-01-02 03:04:05', 'yyyy-MM-dd HH:mm:ss')", datetime.datetime(2020, 1, 2, 3, 4, 5)),
        (
            "PARSE_TIMESTAMP('2020-01-02 03:04:05', 'yyyy-MM-dd HH:mm:ss', 'America/Los_Angeles')",
            datetime.datetime(2020, 1, 2, 11, 4, 5),
        ),
        ("STRINGTODATE('2020-01-02', 'yyyy-MM-dd')", 18263),
        ("TIMEADD(HOURS, 1, PARSE_TIME('10:11', 'HH:mm'))", datetime.time(11, 11)),
        ("TIMESUB(HOURS, 11, PARSE_TIME('10:11', 'HH:mm'))", datetime.time(23, 11)),
        ("TIMESTAMPADD(SECONDS, 5, FROM_UNIXTIME(0))", datetime.datetime(1970, 1, 1, 0, 0, 5)),
        ("TIMESTAMPSUB(MILLISECONDS, 5, FROM_UNIXTIME(0))", datetime.datetime(1969, 12, 31, 23, 59, 59, 995000)),
        ("UNIX_DATE(FROM_DAYS(3))", 3),
        ("UNIX_TIMESTAMP(FROM_UNIXTIME(123))", 123),
    ],
)
def test_time_functions(text, expected):
    assert ev(text) == expected


@pytest.mark.parametrize("name", ["LENGTH", "LTRIM", "RTRIM", "REVERSE"])
def test_functions_ksqldb_lacks_are_unknown(name):
    """Names other SQL engines have but ksqlDB does not: refused as ksqlDB refuses them."""
    with pytest.raises(KsqlStatementError, match=f"Can't find any functions with the name '{name}'"):
        ev(f"{name}('abc')")
