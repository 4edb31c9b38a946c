"""Functions ksqlDB documents, each after its Java original: URL parts as java.net.URI gives them, JSON
arrays read as its streaming parser reads them, BYTES read as numbers, the statistics aggregates with
Java's integer arithmetic, and the table functions refused as unsupported."""

import json

import pytest

from stack.ksqldb.engine import Engine
from stack.ksqldb.errors import KsqlStatementError, UnsupportedError
from stack.ksqldb.expressions import Compiler, Scope
from stack.ksqldb.formats import InMemorySchemaRegistry
from stack.ksqldb.parser import parse_expression
from stack.ksqldb.records import Record
from stack.ksqldb.runtime import InMemoryRuntime

URL = "'http://user@Www.Test.com:8080/a%20b/c?x=1&y=%20z&flag#frag%21'"


def ev(text: str):
    return Compiler(Scope([])).compile(parse_expression(text)).fn(())


@pytest.mark.parametrize(
    "text, expected",
    [
        (f"URL_EXTRACT_PROTOCOL({URL})", "http"),
        (f"URL_EXTRACT_HOST({URL})", "Www.Test.com"),
        (f"URL_EXTRACT_PORT({URL})", 8080),
        ("URL_EXTRACT_PORT('http://test.com/x')", None),
        (f"URL_EXTRACT_PATH({URL})", "/a b/c"),
        (f"URL_EXTRACT_QUERY({URL})", "x=1&y= z&flag"),
        (f"URL_EXTRACT_FRAGMENT({URL})", "frag!"),
        (f"URL_EXTRACT_PARAMETER({URL}, 'y')", " z"),
        (f"URL_EXTRACT_PARAMETER({URL}, 'flag')", ""),
        (f"URL_EXTRACT_PARAMETER({URL}, 'nope')", None),
        ("URL_EXTRACT_PATH('mailto:someone@example.com')", None),
        ("URL_EXTRACT_PROTOCOL('mailto:someone@example.com')", "mailto"),
        ("URL_EXTRACT_HOST('http://bad host.com')", None),  # invalid syntax: the call fails, NULL
        ("URL_ENCODE_PARAM('a b&c=d/\u00e9*~')", "a+b%26c%3Dd%2F%C3%A9*%7E"),
        ("URL_DECODE_PARAM('a+b%26c%3Dd%2F%C3%A9')", "a b&c=d/\u00e9"),
        ("URL_DECODE_PARAM('100%')", None),
    ],
)
def test_url_functions(text, expected):
    assert ev(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("JSON_ARRAY_CONTAINS('[1, 2, 3]', 3)", True),
        ("JSON_ARRAY_CONTAINS('[1, 2, 3]', 3.0E0)", False),
        ("JSON_ARRAY_CONTAINS('[1.5, \"a\"]', 1.5E0)", True),
        ("JSON_ARRAY_CONTAINS('[\"a\", null]', 'a')", True),
        ("JSON_ARRAY_CONTAINS('[true]', true)", True),
        ("JSON_ARRAY_CONTAINS('[[1], 2]', 1)", False),
        ("JSON_ARRAY_CONTAINS('[1, oops', 1)", True),
        ("JSON_ARRAY_CONTAINS('[oops, 1]', 1)", False),
        ("JSON_ARRAY_CONTAINS('{\"a\": 1}', 1)", False),
        ('JSON_CONCAT(\'{"a": 1}\', \'{"b": 2, "a": 3}\')', '{"a":3,"b":2}'),
        ("JSON_CONCAT('[1]', '2', '[3, 4]')", "[1,2,3,4]"),
        ("JSON_CONCAT('{\"a\": 1}', '[2]')", '[{"a":1},2]'),
        ("JSON_CONCAT('not json', '1')", None),
        ("JSON_CONCAT('[1]', CAST(NULL AS STRING))", None),
    ],
)
def test_json_functions(text, expected):
    assert ev(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("INT_FROM_BYTES(TO_BYTES('AAAAAQ==', 'base64'))", 1),
        ("INT_FROM_BYTES(TO_BYTES('ffffffff', 'hex'))", -1),
        ("INT_FROM_BYTES(TO_BYTES('01000000', 'hex'), 'LITTLE_ENDIAN')", 1),
        ("BIGINT_FROM_BYTES(TO_BYTES('0000000000000001', 'hex'), 'little_endian')", 2**56),
        ("DOUBLE_FROM_BYTES(TO_BYTES('3ff0000000000000', 'hex'))", 1.0),
        ("INT_FROM_BYTES(TO_BYTES('00', 'hex'))", None),  # not 4 bytes: the call fails
        ("INT_FROM_BYTES(TO_BYTES('00000000', 'hex'), 'MIDDLE')", None),
    ],
)
def test_bytes_conversions(text, expected):
    assert ev(text) == expected


@pytest.fixture()
def engine():
    e = Engine(InMemorySchemaRegistry(), InMemoryRuntime(), {"auto.offset.reset": "earliest"})
    e.execute(
        "CREATE STREAM S (K STRING KEY, V INT, D DOUBLE, W STRING, DEC DECIMAL(4, 2)) "
        "WITH (kafka_topic='s', value_format='JSON');"
    )
    return e


def test_statistics_aggregates(engine):
    """STDDEV_SAMPLE is the sample standard deviation; STDDEV_SAMP, as ksqlDB computes it, the sample
    variance; HISTOGRAM counts each STRING value."""
    engine.execute(
        "CREATE TABLE O AS SELECT K, STDDEV_SAMP(V) AS VAR, STDDEV_SAMPLE(D) AS SD, HISTOGRAM(W) AS H "
        "FROM S GROUP BY K;"
    )
    for v, w in [(1, "x"), (2, "y"), (4, "x")]:
        engine.runtime.produce(Record("s", b"a", json.dumps({"V": v, "D": float(v), "W": w}).encode(), 0))
    rows = [json.loads(r.value) for r in engine.runtime.topics["O"]]
    assert [r["VAR"] for r in rows] == [0.0, 0.5, pytest.approx(7 / 3)]
    assert [r["SD"] for r in rows] == [0.0, pytest.approx(0.5**0.5), pytest.approx((7 / 3) ** 0.5)]
    assert rows[-1]["H"] == {"x": 2, "y": 1}


def test_aggregates_ksqldb_lacks_or_this_engine_refuses(engine):
    with pytest.raises(KsqlStatementError, match=r"Function 'AVG' does not accept parameters \(DECIMAL\(4, 2\)\)"):
        engine.execute("CREATE TABLE O AS SELECT K, AVG(DEC) FROM S GROUP BY K;")
    with pytest.raises(KsqlStatementError, match=r"Function 'HISTOGRAM' does not accept parameters \(INTEGER\)"):
        engine.execute("CREATE TABLE O AS SELECT K, HISTOGRAM(V) FROM S GROUP BY K;")
    with pytest.raises(UnsupportedError, match="CORRELATION"):
        engine.execute("CREATE TABLE O AS SELECT K, CORRELATION(V, V) FROM S GROUP BY K;")


@pytest.mark.parametrize("name", ["EXPLODE", "CUBE_EXPLODE"])
def test_table_functions_are_refused_as_unsupported(engine, name):
    with pytest.raises(UnsupportedError, match=f"table function {name}"):
        engine.execute(f"CREATE STREAM O AS SELECT K, {name}(ARRAY[V]) AS X FROM S;")
