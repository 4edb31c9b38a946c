"""The checks ksqlDB makes on every clause before a query runs, with its own messages (clients match on them):
comparisons typed by its ComparisonUtil in WHERE, HAVING and SELECT, casts refused in the words of its
code generator, window bounds outside a windowed aggregation's projection, unknown sources with its hints."""

import json

import pytest

from stack.ksqldb.engine import Engine
from stack.ksqldb.errors import KsqlStatementError
from stack.ksqldb.formats import InMemorySchemaRegistry
from stack.ksqldb.records import Record
from stack.ksqldb.runtime import InMemoryRuntime

SOURCE = (
    "CREATE STREAM S (ID BIGINT KEY, A INT, B STRING, D DOUBLE, T TIMESTAMP, DT DATE, DEC DECIMAL(4, 2), "
    "ARR ARRAY<INT>, BO BOOLEAN) WITH (kafka_topic='s', value_format='JSON');"
)
WINDOWED = "CREATE TABLE O AS SELECT B, COUNT(*) AS C FROM S WINDOW TUMBLING (SIZE 1 SECOND) "
BOUNDS = (
    "Window bounds column WINDOWSTART can only be used in the SELECT clause of windowed aggregations and can "
    "not be passed to aggregate functions.\nSee https://github.com/confluentinc/ksql/issues/4397"
)


@pytest.fixture()
def engine():
    e = Engine(InMemorySchemaRegistry(), InMemoryRuntime(), {"auto.offset.reset": "earliest"})
    e.execute(SOURCE)
    return e


def refused(engine, statement: str) -> str:
    with pytest.raises(KsqlStatementError) as info:
        engine.execute(statement)
    return info.value.message


@pytest.mark.parametrize(
    "statement, message",
    [
        (
            "SELECT * FROM S WHERE A > 'x' EMIT CHANGES;",
            "Error in WHERE expression: Cannot compare A (INTEGER) to 'x' (STRING) with GREATER_THAN.",
        ),
        (
            "SELECT * FROM S WHERE S.B = 1 EMIT CHANGES;",
            "Error in WHERE expression: Cannot compare B (STRING) to 1 (INTEGER) with EQUAL.",
        ),
        (
            "CREATE TABLE O AS SELECT B, COUNT(*) FROM S GROUP BY B HAVING SUM(A) > 'abc';",
            "Error in HAVING expression: Cannot compare SUM(A) (INTEGER) to 'abc' (STRING) with GREATER_THAN.",
        ),
        (
            "CREATE TABLE O AS SELECT B, SUM(A) = 'x' AS X FROM S GROUP BY B;",
            "Cannot compare SUM(A) (INTEGER) to 'x' (STRING) with EQUAL.",
        ),
        ("SELECT BO > true FROM S EMIT CHANGES;", "Cannot compare BO (BOOLEAN) to true (BOOLEAN) with GREATER_THAN."),
        (
            "SELECT ARR < ARRAY[1] FROM S EMIT CHANGES;",
            "Cannot compare ARR (ARRAY<INTEGER>) to ARRAY[1] (ARRAY<INTEGER>) with LESS_THAN.",
        ),
        (
            "SELECT T IS DISTINCT FROM 1 FROM S EMIT CHANGES;",
            "Cannot compare T (TIMESTAMP) to 1 (INTEGER) with IS_DISTINCT_FROM.",
        ),
        (
            "SELECT A = NULL FROM S EMIT CHANGES;",
            "Comparison with NULL not supported: INTEGER = NULL\nUse 'IS NULL' or 'IS NOT NULL' instead.",
        ),
        (
            "SELECT * FROM S WHERE DEC <> NULL EMIT CHANGES;",
            "Error in WHERE expression: Comparison with NULL not supported: DECIMAL <> NULL",
        ),
        (
            "SELECT CAST(B AS ARRAY<INT>) FROM S EMIT CHANGES;",
            "Invalid Select: Cast of STRING to ARRAY<INTEGER> is not supported.",
        ),
        (
            "SELECT * FROM S WHERE CAST(BO AS DATE) IS NULL EMIT CHANGES;",
            "Invalid Predicate: Cast of BOOLEAN to DATE is not supported.",
        ),
        (
            "SELECT CASE WHEN A > 1 THEN 1 ELSE 2.5 END FROM S EMIT CHANGES;",
            "Invalid Case expression. Type for the default clause should be the same as for 'THEN' clauses.\n"
            "THEN type: INTEGER.\nDEFAULT type: DECIMAL(2, 1).",
        ),
        (
            "SELECT CASE WHEN A > 1 THEN 1 WHEN A > 2 THEN 'x' END FROM S EMIT CHANGES;",
            "Invalid Case expression. Type for all 'THEN' clauses should be the same.\n"
            "THEN expression 'WHEN (A > 2) THEN 'x'' has type: STRING.\nPrevious THEN expression(s) type: INTEGER.",
        ),
        (
            "SELECT CASE WHEN A THEN 1 END FROM S EMIT CHANGES;",
            "WHEN operand type should be boolean.\nType for 'A' is INTEGER",
        ),
        (
            "SELECT A + NULL FROM S EMIT CHANGES;",
            "Error processing expression: (A + null). Arithmetic on types INTEGER and null are not supported.",
        ),
        (
            "SELECT DEC * B FROM S EMIT CHANGES;",
            "Error processing expression: (DEC * B). Unsupported arithmetic types. DECIMAL STRING",
        ),
        (
            "SELECT ARRAY[] FROM S EMIT CHANGES;",
            "Array constructor cannot be empty. Please supply at least one element",
        ),
        ("SELECT MAP() FROM S EMIT CHANGES;", "Map constructor cannot be empty. Please supply at least one key value"),
        ("SELECT MAP(NULL := 1) FROM S EMIT CHANGES;", "Cannot construct a map with all NULL keys"),
        ("SELECT B[1] FROM S EMIT CHANGES;", "Subscript expression (B[1]) do not apply to STRING."),
        (WINDOWED + "GROUP BY B HAVING WINDOWSTART > 0;", BOUNDS),
        (WINDOWED + "WHERE WINDOWSTART > 0 GROUP BY B;", BOUNDS),
        ("CREATE TABLE O AS SELECT B, SUM(WINDOWSTART) FROM S WINDOW TUMBLING (SIZE 1 SECOND) GROUP BY B;", BOUNDS),
        ("DROP STREAM NOPE;", "Stream NOPE does not exist."),
        ("INSERT INTO NOPE SELECT * FROM S;", "Line: 1, Col: 12: Source NOPE does not exist."),
        ("INSERT INTO NOPE (A) VALUES (1);", "Cannot insert values into an unknown stream/table: NOPE"),
        ("DROP TABLE NOPE;", "Table NOPE does not exist."),
        (
            "CREATE STREAM X (A INT, B INT) WITH (kafka_topic='x', value_format='JSON', WRAP_SINGLE_VALUE=true);",
            "'WRAP_SINGLE_VALUE' is only valid for single-field value schemas",
        ),
        (
            "CREATE STREAM X WITH (WRAP_SINGLE_VALUE=false) AS SELECT ID, A, B FROM S;",
            "'WRAP_SINGLE_VALUE' is only valid for single-field value schemas",
        ),
        (
            "CREATE STREAM X (A INT) WITH (kafka_topic='x', value_format='DELIMITED', WRAP_SINGLE_VALUE=true);",
            "Format 'DELIMITED' does not support 'WRAP_SINGLE_VALUE' set to 'true'.",
        ),
        (
            "CREATE STREAM X (A ARRAY<MAP<INT, STRING>>) WITH (kafka_topic='x', value_format='JSON');",
            "reason: JSON only supports MAP types with STRING keys",
        ),
        ("CREATE STREAM X AS SELECT ID, MAP(A := 1) AS M FROM S;", "JSON only supports MAP types with STRING keys"),
        (
            "DROP STREAM `s`;",
            "Stream s does not exist.\nDid you mean S? Hint: try removing double quotes from the source name.",
        ),
        (
            "SELECT * FROM `s` EMIT CHANGES;",
            "s does not exist.\nDid you mean S? Hint: try removing double quotes from the source name.",
        ),
    ],
)
def test_refused_with_ksqldb_message(engine, statement, message):
    assert message in refused(engine, statement)


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM S WHERE T > '2020-01-01T00:00:00' EMIT CHANGES;",
        "SELECT * FROM S WHERE B < T EMIT CHANGES;",
        "SELECT * FROM S WHERE DT = T EMIT CHANGES;",
        "SELECT * FROM S WHERE DEC > D AND A <= ID EMIT CHANGES;",
        "SELECT * FROM S WHERE ARR = ARRAY[1, 2] AND BO <> false EMIT CHANGES;",
        WINDOWED + "GROUP BY B HAVING COUNT(*) > 1;",
    ],
)
def test_comparisons_ksqldb_accepts(engine, statement):
    engine.execute(statement)


def test_comparisons_follow_java(engine):
    """Doubles by < and > (NaN equals and differs from nothing), a DECIMAL against a DOUBLE as decimals,
    strings by UTF-16 code unit, a DATE against a TIMESTAMP as its midnight, a string against a timestamp
    parsed."""
    engine.execute(
        "CREATE STREAM O AS SELECT ID, D / D = D / D AS EQ, D / D <> D / D AS NE, "
        "D / D IS DISTINCT FROM D / D AS DIS, DEC = 0.1E0 AS DEC_EQ, B < '\uffff' AS UTF16, DT = T AS MIDNIGHT, "
        "T >= '2020-01-01' AS PARSED, "
        "A IS NOT DISTINCT FROM CAST(NULL AS INT) AS BOTH_NULL FROM S;"
    )
    value = (
        '{"A": null, "B": "\U0001f600", "D": 0.0, "T": 1577836800000, "DT": 18262, "DEC": 0.1, "ARR": null, "BO": null}'
    )
    engine.runtime.produce(Record("s", (1).to_bytes(8, "big"), value.encode(), 0))
    (out,) = [json.loads(r.value) for r in engine.runtime.topics["O"]]
    assert out == {
        "EQ": False,
        "NE": False,
        "DIS": False,
        "DEC_EQ": True,
        "UTF16": True,
        "MIDNIGHT": True,
        "PARSED": True,
        "BOTH_NULL": True,
    }


JOIN_SOURCES = [
    "CREATE STREAM L (ID INT KEY, A INT, B STRING) WITH (kafka_topic='l', value_format='JSON');",
    "CREATE TABLE R (ID INT PRIMARY KEY, C STRING) WITH (kafka_topic='r', value_format='JSON');",
    "CREATE TABLE R2 (ID INT PRIMARY KEY, D STRING) WITH (kafka_topic='r2', value_format='JSON');",
]


@pytest.mark.parametrize(
    "criteria, message",
    [
        (
            "L.ID = R.ID AND L.A = R.ID",
            "Invalid join condition: joins on multiple conditions are not yet supported. "
            "Got ((L.ID = R.ID) AND (L.A = R.ID)).",
        ),
        ("L.ID = R.ID OR L.A = R.ID", "Unsupported join expression: ((L.ID = R.ID) OR (L.A = R.ID))"),
        ("L.ID = R.ID AND L.A > 1", "Unsupported join expression: ((L.ID = R.ID) AND (L.A > 1))"),
        ("L.ID > R.ID", "Only equality join criteria is supported."),
        (
            "L.ID = L.A",
            "Each side of the join must reference exactly one source and not the same source. "
            "Left side references L and right references L",
        ),
        ("L.B = R.ID", "Invalid join condition: types don't match. Got L.B{STRING} = R.ID{INTEGER}."),
    ],
)
def test_join_criteria_refused_with_ksqldb_message(engine, criteria, message):
    for statement in JOIN_SOURCES:
        engine.execute(statement)
    assert message in refused(engine, f"SELECT * FROM L JOIN R ON {criteria} EMIT CHANGES;")


def test_join_criteria_must_reference_the_joined_source(engine):
    for statement in JOIN_SOURCES:
        engine.execute(statement)
    message = refused(engine, "SELECT * FROM L JOIN R ON L.ID = R.ID JOIN R2 ON L.ID = R.ID EMIT CHANGES;")
    assert message == (
        "A join criteria is expected to reference the source (R2) in the FROM clause, instead the right source "
        "references R and the left source references L"
    )
