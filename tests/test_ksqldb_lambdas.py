"""Lambda functions (TRANSFORM, FILTER, REDUCE) and LATEST_BY_OFFSET / EARLIEST_BY_OFFSET over complex
types, through the in-memory engine: ksqlDB's syntax, typing, null rules and messages."""

import json

import pytest

from stack.ksqldb.engine import Engine
from stack.ksqldb.errors import KsqlStatementError, ParseError, UnsupportedError
from stack.ksqldb.formats import InMemorySchemaRegistry
from stack.ksqldb.parser import parse_expression
from stack.ksqldb.records import Record
from stack.ksqldb.runtime import InMemoryRuntime

SOURCE = (
    "CREATE STREAM s (ID STRING KEY, NUMS ARRAY<INT>, BIGS ARRAY<BIGINT>, M MAP<STRING, INT>, N INT, "
    "FLAGS ARRAY<BOOLEAN>, NAMES ARRAY<STRING>) WITH (kafka_topic='s', value_format='JSON');"
)


@pytest.fixture()
def engine():
    e = Engine(InMemorySchemaRegistry(), InMemoryRuntime(), {"auto.offset.reset": "earliest"})
    e.execute(SOURCE)
    return e


def run(engine, select: str, value: dict, key: str = "k", ts: int = 0) -> dict | None:
    """One record through `CREATE STREAM out AS SELECT <select> FROM s`, the output value."""
    engine.execute(f"CREATE STREAM out AS SELECT ID, {select} FROM s;")
    engine.runtime.produce(Record("s", key.encode(), json.dumps(value).encode(), ts))
    (rec,) = engine.runtime.topics["OUT"]
    return json.loads(rec.value)


# ---------------------------------------------------------------- syntax
@pytest.mark.parametrize(
    "text, params",
    [
        ("TRANSFORM(a, x => x)", [("X",)]),
        ("TRANSFORM(a, (x) => x)", [("X",)]),
        ("TRANSFORM(m, (k, `v`) => k, (k,v) => v)", [("K", "v"), ("K", "V")]),
        ("REDUCE(a, 0, (s, x) => s + x)", [("S", "X")]),
    ],
)
def test_lambda_syntax(text, params):
    call = parse_expression(text)
    assert [a.params for a in call.args if hasattr(a, "params")] == params


@pytest.mark.parametrize("text", ["TRANSFORM(x => x, a)", "F(x => 1)", "x => x", "(a, b)"])
def test_lambdas_only_after_a_calls_other_arguments(text):
    with pytest.raises(ParseError):
        parse_expression(text)


def test_duplicate_lambda_parameters():
    with pytest.raises(KsqlStatementError, match=r"^Lambda arguments have duplicates: \[S, X, X\]$"):
        parse_expression("REDUCE(m, 0, (s, x, x) => s)")


def test_map_is_a_column_name(engine):
    assert run(engine, "FILTER(M, (k, v) => v > 1) AS F", {"M": {"a": 1, "b": 2}}) == {"F": {"b": 2}}


# ---------------------------------------------------------------- results and null rules
@pytest.mark.parametrize(
    "select, value, out",
    [
        ("TRANSFORM(NUMS, x => x + 5)", {"NUMS": [3, 6]}, [8, 11]),
        ("TRANSFORM(NUMS, x => x + 5)", {"NUMS": [5, None]}, None),  # Java unboxes the null: the call is null
        ("TRANSFORM(NUMS, x => ABS(x))", {"NUMS": [-5, None]}, [5, None]),
        ("TRANSFORM(NUMS, x => x + 5)", {"NUMS": None}, None),
        ("FILTER(NUMS, x => x > 5)", {"NUMS": [3, 6, None]}, [6]),  # comparisons with null are false
        ("FILTER(FLAGS, x => x)", {"FLAGS": [True, None]}, None),  # a null predicate result fails the call
        ("FILTER(NUMS, x => x > N)", {"NUMS": [1, 5], "N": 2}, [5]),  # a column in the lambda
        ("REDUCE(NUMS, 2, (s, x) => s + x)", {"NUMS": [1, 2]}, 5),
        ("REDUCE(NUMS, 2, (s, x) => s + x)", {"NUMS": None}, 2),
        ("REDUCE(NUMS, N, (s, x) => s + x)", {"NUMS": [1], "N": None}, None),
        ("REDUCE(NAMES, '', (s, x) => s + x)", {"NAMES": ["a", None]}, "anull"),  # Java string concatenation
        ("TRANSFORM(M, (k, v) => UCASE(k), (k, v) => v * 2)", {"M": {"a": 1}}, {"A": 2}),
        ("TRANSFORM(M, (k, v) => 'same', (k, v) => v)", {"M": {"a": 1, "b": 2}}, None),  # duplicate keys
        ("TRANSFORM(M, (k, v) => k, (k, v) => CAST(NULL AS INT))", {"M": {"a": 1}}, None),  # toMap: null value
        ("FILTER(M, (k, v) => k = 'a')", {"M": {"a": None}}, None),
        ("TRANSFORM(TRANSFORM(NUMS, x => x * 2), y => FILTER(NUMS, z => z < y))", {"NUMS": [1, 2]}, [[1], [1, 2]]),
        ("TRANSFORM(NUMS, x => ROWTIME + x)", {"NUMS": [1]}, [1001]),
    ],
)
def test_lambda_results(engine, select, value, out):
    assert run(engine, f"{select} AS R", value, ts=1000) == {"R": out}


def test_lambda_failure_inside_a_function_argument_is_null_for_that_argument(engine):
    # ksqlDB's nested error handling: a failing function call that is another function's argument is null
    assert run(engine, "IFNULL(TRANSFORM(NUMS, x => x + 1), ARRAY[0]) AS R", {"NUMS": [None]}) == {"R": [0]}


def test_lambda_parameter_shadows_a_pseudo_column(engine):
    assert run(engine, "TRANSFORM(NUMS, rowtime => rowtime * 2) AS R", {"NUMS": [4]}, ts=99) == {"R": [8]}


def test_lambda_in_a_join_sees_qualified_columns_and_rowtime(engine):
    engine.execute(
        "CREATE TABLE t (ID STRING PRIMARY KEY, LIMITS ARRAY<INT>) WITH (kafka_topic='t', value_format='JSON');"
    )
    engine.execute(
        "CREATE STREAM j AS SELECT s.ID AS ID, FILTER(t.LIMITS, x => x > s.N AND x < s.ROWTIME) AS R "
        "FROM s JOIN t ON s.ID = t.ID;"
    )
    engine.runtime.produce(Record("t", b"k", json.dumps({"LIMITS": [1, 5, 50, 500]}).encode(), 0))
    engine.runtime.produce(Record("s", b"k", json.dumps({"N": 2}).encode(), 100))
    (rec,) = engine.runtime.topics["J"]
    assert json.loads(rec.value) == {"R": [5, 50]}


# ---------------------------------------------------------------- statement errors
@pytest.mark.parametrize(
    "select, message",
    [
        ("TRANSFORM(N, x => x)", "Function 'TRANSFORM' does not accept parameters (INTEGER, LAMBDA)."),
        ("TRANSFORM(M, x => x)", "Function 'TRANSFORM' does not accept parameters (MAP<STRING, INTEGER>, LAMBDA)."),
        ("TRANSFORM(NUMS, (x, y) => x)", "Function 'TRANSFORM' does not accept parameters (ARRAY<INTEGER>, LAMBDA)."),
        ("ABS(N, x => x)", "Function 'ABS' does not accept parameters (INTEGER, LAMBDA)."),
        (
            "FILTER(NUMS, x => x + 1)",
            "Cannot infer generics for LAMBDA (T) => BOOLEAN from LAMBDA (INTEGER) => INTEGER because they do not "
            "have the same schema structure.",
        ),
        (
            "REDUCE(BIGS, 0, (s, x) => s + x)",
            "Found invalid instance of generic schema when mapping LAMBDA (S, T) => S to LAMBDA (INTEGER, BIGINT) "
            "=> BIGINT. Cannot map S to both INTEGER and BIGINT",
        ),
        ("TRANSFORM(NUMS, n => n)", "Lambda function argument can't be a column name: N"),
        (
            "TRANSFORM(NUMS, x => FILTER(NUMS, x => x > 1))",
            "Reusing lambda arguments in nested lambda is not allowed",
        ),
    ],
)
def test_lambda_statement_errors(engine, select, message):
    with pytest.raises(KsqlStatementError) as err:
        engine.execute(f"CREATE STREAM out AS SELECT ID, {select} AS R FROM s;")
    assert str(err.value) == message


def test_sibling_lambdas_may_reuse_parameter_names(engine):
    assert run(engine, "TRANSFORM(M, (k, v) => k, (k, v) => v) AS R", {"M": {"a": 1}}) == {"R": {"a": 1}}


def test_reduce_over_a_map_is_unsupported(engine):
    # ksqlDB folds a map in its Java HashMap's order, which this engine does not reproduce
    with pytest.raises(UnsupportedError):
        engine.execute("CREATE STREAM out AS SELECT ID, REDUCE(M, 0, (s, k, v) => s + v) AS R FROM s;")


# ---------------------------------------------------------------- LATEST_BY_OFFSET / EARLIEST_BY_OFFSET over any type
def aggregate(engine, select: str, values: list[dict]) -> dict:
    engine.execute(f"CREATE TABLE agg AS SELECT ID, {select} FROM s GROUP BY ID;")
    for i, v in enumerate(values):
        engine.runtime.produce(Record("s", b"k", json.dumps(v).encode(), 1000 * (i + 1)))
    return json.loads(engine.runtime.topics["AGG"][-1].value)


@pytest.mark.parametrize(
    "select, out",
    [
        ("LATEST_BY_OFFSET(STRUCT(T := ROWTIME, N := N), 2) AS R", [{"T": 2000, "N": None}, {"T": 3000, "N": 3}]),
        ("LATEST_BY_OFFSET(STRUCT(T := ROWTIME, N := N)) AS R", {"T": 3000, "N": 3}),
        ("LATEST_BY_OFFSET(NUMS) AS R", [3]),
        ("LATEST_BY_OFFSET(NUMS, 2, false) AS R", [None, [3]]),
        ("LATEST_BY_OFFSET(M, 2) AS R", [{"a": 1}, {"c": 3}]),
        ("LATEST_BY_OFFSET(M, 3, false) AS R", [{"a": 1}, None, {"c": 3}]),
        ("EARLIEST_BY_OFFSET(NUMS, 2) AS R", [[1], [3]]),
        ("EARLIEST_BY_OFFSET(NUMS, 2, false) AS R", [[1], None]),
        ("EARLIEST_BY_OFFSET(STRUCT(T := ROWTIME)) AS R", {"T": 1000}),
    ],
)
def test_by_offset_over_complex_types(engine, select, out):
    values = [{"NUMS": [1], "M": {"a": 1}, "N": 1}, {"N": None}, {"NUMS": [3], "M": {"c": 3}, "N": 3}]
    assert aggregate(engine, select, values) == {"R": out}
