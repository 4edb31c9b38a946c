"""The engine's fast paths give exactly what the general ones give: memoized lambda calls (a FILTER repeated in
several columns runs once per row, never with another row's values), per-type coercion of decoded values,
and the compiled Avro encoder for arrays and structs (byte for byte fastavro's)."""

import io
import random
from decimal import Decimal

import fastavro
import pytest

from stack.ksqldb.errors import SerdeError
from stack.ksqldb.expressions import Compiler, ErrorSink, Scope
from stack.ksqldb.formats.avro import record_encoder, schema_for
from stack.ksqldb.formats.coerce import coerce, coercer
from stack.ksqldb.parser import parse_expression
from stack.ksqldb.types import (
    BIGINT,
    BOOLEAN,
    DOUBLE,
    INTEGER,
    STRING,
    ArrayType,
    MapType,
    StructType,
)

HISTORY = ArrayType(StructType((("T", BIGINT), ("AMOUNT", DOUBLE))))
SCOPE = Scope([("ROWTIME", BIGINT), ("RECENT", HISTORY), ("AMOUNT", DOUBLE)])
COUNT = "ARRAY_LENGTH(FILTER(RECENT, e => e->T < ROWTIME AND e->T >= ROWTIME - 10))"
TOTAL = (
    "REDUCE(FILTER(RECENT, e => e->T < ROWTIME AND e->T >= ROWTIME - 10), CAST(0 AS DOUBLE), (s, e) => s + e->AMOUNT)"
)


def compiled(*texts: str, errors: ErrorSink | None = None) -> list:
    compiler = Compiler(SCOPE, errors=errors)
    return [compiler.compile(parse_expression(t)).fn for t in texts]


def history(*entries: tuple[int, float]) -> list[dict]:
    return [{"T": t, "AMOUNT": a} for t, a in entries]


def test_a_repeated_filter_follows_each_row() -> None:
    count, total, again = compiled(COUNT, TOTAL, COUNT)
    recent = history((1, 1.0), (5, 2.0), (12, 4.0), (20, 8.0))
    for rowtime, expected_count, expected_total in [(13, 2, 6.0), (21, 2, 12.0), (13, 2, 6.0), (2, 1, 1.0)]:
        row = [rowtime, recent, 0.0]
        assert (count(row), total(row), again(row)) == (expected_count, expected_total, expected_count)
    changed = [13, history((3, 16.0)), 0.0]  # another history at the same time: computed again
    assert (count(changed), total(changed)) == (1, 16.0)
    assert count([13, None, 0.0]) is None


def test_what_a_lambda_reads_of_its_row_is_read_per_row() -> None:
    (above,) = compiled("FILTER(RECENT, e => e->AMOUNT > AMOUNT * 2)")
    recent = history((1, 1.0), (2, 3.0), (3, 5.0))
    assert above([0, recent, 1.0]) == history((2, 3.0), (3, 5.0))
    assert above([0, recent, 2.0]) == history((3, 5.0))
    assert above([0, recent, 0.25]) == recent


def test_nested_lambdas_see_the_outer_element() -> None:
    (pairs,) = compiled("TRANSFORM(RECENT, x => ARRAY_LENGTH(FILTER(RECENT, y => y->T < x->T)))")
    assert pairs([0, history((3, 0.0), (1, 0.0), (2, 0.0)), 0.0]) == [2, 0, 1]


def test_volatile_calls_are_not_memoized() -> None:
    first, second = compiled(*["TRANSFORM(RECENT, e => UUID())"] * 2)
    row = [0, history((1, 1.0)), 0.0]
    assert first(row) != second(row)
    assert first(row) != first(row)


def test_a_failing_call_reports_every_time() -> None:
    reported: list[tuple[str, str]] = []
    errors = ErrorSink()
    errors.handler = lambda where, message: reported.append((where, message))
    (doubled,) = compiled("TRANSFORM(RECENT, e => e->T / 0)", errors=errors)
    row = [0, history((1, 1.0)), 0.0]
    assert doubled(row) is None and doubled(row) is None
    assert len(reported) == 2


TYPES = [
    STRING,
    BOOLEAN,
    INTEGER,
    BIGINT,
    DOUBLE,
    ArrayType(DOUBLE),
    MapType(STRING, INTEGER),
    StructType((("T", BIGINT), ("A", DOUBLE))),
    ArrayType(StructType((("T", BIGINT), ("X", STRING)))),
]
VALUES = [None, 1, 2**31, 2**63, -(2**63) - 1, 10**400, 1.5, float("nan"), Decimal("1.1"), Decimal("1e400"),
          Decimal("NaN"), "12", " 3 ", "x", True, False, b"ab", [1, 2.5], [None, "a"], [1, "zz"],
          {"T": 1, "A": 2}, {"t": 5, "a": Decimal("2.5")}, {"a": 1}, [{"T": 1, "X": "y"}, {"t": "7", "x": 3}]]  # fmt: skip


def outcome(convert, value):
    try:
        return "ok", repr(convert(value))
    except SerdeError as e:
        return "error", str(e)


@pytest.mark.parametrize("t", TYPES, ids=str)
def test_per_type_coercion_is_coerce(t) -> None:
    for value in VALUES:
        assert outcome(coercer(t), value) == outcome(lambda v: coerce(v, t), value), value


def test_arrays_and_structs_are_written_as_fastavro_writes_them() -> None:
    entry = StructType((("T", BIGINT), ("AMOUNT", DOUBLE), ("N", INTEGER), ("S", STRING), ("B", BOOLEAN)))
    columns = [
        ("ID", STRING),
        ("RECENT", ArrayType(entry)),
        ("XS", ArrayType(DOUBLE)),
        ("NESTED", ArrayType(ArrayType(BIGINT))),
        ("INNER", StructType((("A", StructType((("Z", STRING),))),))),
    ]
    encode = record_encoder(columns, nested=True)
    assert encode is not None and record_encoder(columns) is None  # the vectorized path keeps to primitives
    parsed = fastavro.parse_schema(schema_for(columns, False, None))
    rnd = random.Random(13)

    def value(t):
        if rnd.random() < 0.15:
            return None
        if isinstance(t, ArrayType):
            return [value(t.item) for _ in range(rnd.choice([0, 1, 2, 100]))]
        if isinstance(t, StructType):
            return {n: value(ft) for n, ft in t.fields}
        return {
            STRING: lambda: rnd.choice(["", "x", "héllo" * rnd.randint(0, 30)]),
            BIGINT: lambda: rnd.randint(-(2**63), 2**63 - 1),
            INTEGER: lambda: rnd.randint(-(2**31), 2**31 - 1),
            DOUBLE: lambda: rnd.uniform(-1e9, 1e9),
            BOOLEAN: lambda: rnd.random() < 0.5,
        }[t]()

    for _ in range(200):
        values = [value(t) for _, t in columns]
        expected = io.BytesIO()
        fastavro.schemaless_writer(expected, parsed, dict(zip([n for n, _ in columns], values)))
        assert encode(values) == expected.getvalue()
