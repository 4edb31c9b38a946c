"""The vectorized path against the row path: the same records in give the same bytes out, the same
processing-log entries and the same counters, for the fraud preprocessing and for awkward input."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from producers.generate import generate_payments
from producers.payments import frame_payments
from stack.ksqldb.engine import Engine
from stack.ksqldb.executor import PersistentQuery
from stack.ksqldb.formats import InMemorySchemaRegistry
from stack.ksqldb.functions import REGISTRY
from stack.ksqldb.records import Columns, Record
from stack.ksqldb.runtime import InMemoryRuntime
from stack.ksqldb.vectorized import compile_query

KSQL = Path(__file__).resolve().parents[1] / "ksql"
FEATURES = ", ".join(["TIME", *(f"V{i}" for i in range(1, 29)), "AMOUNT", "CLASS"])
TOPIC = "creditcardfraud_source"


def _engine() -> Engine:
    """The pipeline's source stream, with an INT column (CLASS) added for expressions over integers."""
    engine = Engine(InMemorySchemaRegistry(), InMemoryRuntime())
    engine.execute(
        (KSQL / "010-source.sql").read_text().replace("  AMOUNT DOUBLE\n)", "  AMOUNT DOUBLE,\n  CLASS INT\n)")
    )
    return engine


def _query(engine: Engine, sql: str) -> PersistentQuery:
    engine.execute(sql)
    return list(engine.queries.values())[-1]


def _both(engine: Engine, q: PersistentQuery, records: list[Record]) -> tuple[list, list]:
    """(row path, vectorized path): each (output records, processing-log entries without times, processed)."""
    assert q.vectorized is not None
    out = []
    for run in (q.process_rows, q.vectorized.process_records):
        engine.processing_log.entries.clear()
        before = q.processed
        records_out = run(records)
        entries = [{k: v for k, v in e.items() if k != "time"} for e in engine.processing_log.entries]
        out.append((records_out, entries, q.processed - before))
    return out[0], out[1]


def _records(values: list[bytes | None], keys: list[bytes | None] | None = None) -> list[Record]:
    keys = keys if keys is not None else [f"k{i}".encode() for i in range(len(values))]
    return [Record(TOPIC, k, v, 1_000 + i, i % 4, i) for i, (k, v) in enumerate(zip(keys, values))]


def _payments(n: int, seed: int) -> list[Record]:
    payments = list(frame_payments(generate_payments(n, seed=seed)))
    return [
        Record(TOPIC, p.key(), p.encode() + f",{p.label}".encode(), 1_000 + i, i % 4, i) for i, p in enumerate(payments)
    ]


def _line(**fields: str) -> bytes:
    """A source line of the fraud layout with some fields replaced (by name, lower case)."""
    names = ["id", "timestamp", "user", "time"] + [f"v{i}" for i in range(1, 29)] + ["amount", "class"]
    values = {
        "id": "p1",
        "timestamp": "2013-09-01T00:00:05Z",
        "user": "Anna",
        "time": "5.0",
        "amount": "12.5",
        "class": "0",
    } | {f"v{i}": f"{(-1) ** i * i / 7:.6f}" for i in range(1, 29)}
    values.update(fields)
    return ",".join(values[n] for n in names).encode("utf-8")


BENCH_QUERY = (
    "CREATE STREAM OUT WITH (KAFKA_TOPIC='out', VALUE_FORMAT='AVRO') AS SELECT PAYMENT_ID, "
    f"MASK_LEFT(`USER`, 2) AS MASKED_USER, {FEATURES} FROM creditcardfraud_source "
    "WHERE CLASS IS NOT NULL EMIT CHANGES;"
)


def test_the_avro_copy_of_the_payments_is_vectorized_and_writes_the_same_bytes() -> None:
    engine = _engine()
    q = _query(engine, (KSQL / "012-source-avro.sql").read_text())
    records = _payments(3000, seed=3)
    rows, fast = _both(engine, q, records)
    assert fast == rows
    assert len(rows[0]) == 3000 and rows[2] == 3000
    assert q.vectorized.handed_back == 0


def test_the_bench_query_is_vectorized_and_writes_the_same_bytes() -> None:
    engine = _engine()
    q = _query(engine, BENCH_QUERY)
    records = _payments(2000, seed=5)
    rows, fast = _both(engine, q, records)
    assert fast == rows and len(rows[0]) == 2000
    assert q.vectorized.handed_back == 0


AWKWARD_LINES = [
    None,
    b"",
    b"p1,2013",
    _line() + b",extra",
    b'"p1",' + _line()[3:],
    _line(user='"quoted, user"'),
    _line(user="two\nlines"),
    _line(user="cr\rhere"),
    _line(user="caf\xe9").replace(b"\xc3\xa9", b"\xe9"),
    _line(user="Zoë Ünal 42"),
    _line(user="日本語"),
    _line(user=""),
    _line(user=" padded "),
    *(
        _line(v1=text)
        for text in (
            "nan",
            "NaN",
            "-nan",
            "nan(1)",
            "inf",
            "-inf",
            "Infinity",
            "1e400",
            "-1e400",
            "1e-400",
            "4.9e-324",
            "1_0",
            " 1.5",
            "1.5 ",
            "+1.5",
            ".5",
            "5.",
            "-0",
            "0x10",
            "",
            "1,5",
            "1.7976931348623157e308",
            "abc",
            "١٢",
        )
    ),
    *(
        _line(**{"class": text})
        for text in (
            "+5",
            "007",
            "0x10",
            "2147483647",
            "2147483648",
            "-2147483648",
            "-2147483649",
            " 5",
            "1_000",
            "٣",
            "",
            "1.0",
            "99999999999999999999",
        )
    ),
    *(
        _line(timestamp=text)
        for text in (
            "2013-09-01T00:00:00+01:00",
            "2013-09-01T00:00:00-0530",
            "2013-09-01T00:00:00+01",
            "2013-09-01T00:00:00.123Z",
            "2013-09-01T00:00:00.1Z",
            "2013-13-01T00:00:00Z",
            "2013-02-29T00:00:00Z",
            "2012-02-29T23:59:59Z",
            "2013-09-01T24:00:00Z",
            "0001-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:00:00Z",
            "２０１３-09-01T00:00:00Z",
            "2013-09-01T00:00:00Zjunk",
            "2013-09-01 00:00:00Z",
            "+2013-09-01T00:00:00Z",
            "2013-09-01T00:00:00+25:00",
            "2013-09-01T00:00:00+23:59",
            "2013-9-1T0:0:0Z",
            "",
        )
    ),
]


@pytest.mark.parametrize(
    "query", [BENCH_QUERY, (KSQL / "012-source-avro.sql").read_text()], ids=["bench", "source-avro"]
)
def test_awkward_records_come_out_as_the_row_path_writes_them(query: str) -> None:
    engine = _engine()
    q = _query(engine, query)
    good = [r.value for r in _payments(40, seed=9)]
    values = [v for pair in zip(good, AWKWARD_LINES) for v in pair] + AWKWARD_LINES[len(good) :]
    keys: list[bytes | None] = [f"k{i}".encode() for i in range(len(values))]
    keys[3], keys[7], keys[11] = None, b"\xff\xfe", b""
    records = _records(values, keys)
    rows, fast = _both(engine, q, records)
    assert fast == rows
    assert rows[1], "the awkward lines reach the processing log"
    assert 0 < q.vectorized.handed_back < len(records) - 40, "the good lines stay on the vectorized path"
    for i in range(len(records)):  # and one at a time, as the in-memory runtime feeds them
        assert q.vectorized.process_records(records[i : i + 1]) == q.process_rows(records[i : i + 1])


EXPRESSIONS = [
    "SELECT PAYMENT_ID, IFNULL(`USER`, 'unknown') AS U, AMOUNT * 2 AS A2, CLASS FROM creditcardfraud_source",
    "SELECT PAYMENT_ID, CASE WHEN AMOUNT > 20 THEN 'big' ELSE 'small' END AS SIZE, V1 + V2 AS S FROM "
    "creditcardfraud_source WHERE V3 > 0 OR CLASS = 1",
    "SELECT PAYMENT_ID, 10 / CLASS AS INV, ROWTIME AS RT, ROWPARTITION AS RP, ROWOFFSET AS RO, 'x' AS C, PI() AS P "
    "FROM creditcardfraud_source WHERE `USER` LIKE 'A%' OR `USER` IS NULL",
    "SELECT PAYMENT_ID, UCASE(`USER`) AS U, LEN(ID) AS L, SUBSTRING(ID, 2) AS S, CAST(CLASS AS BIGINT) AS C, "
    "CAST(AMOUNT AS INT) AS AI, AMOUNT > 10 AS BIG FROM creditcardfraud_source WHERE CLASS IS NULL OR CLASS <> 1",
    "SELECT * FROM creditcardfraud_source WHERE AMOUNT IS NOT NULL",
    "SELECT PAYMENT_ID, MASK(`USER`) AS M1, MASK_RIGHT(`USER`, 1, '*', NULL, '#', '.') AS M2, NULLIF(CLASS, 0) AS C "
    "FROM creditcardfraud_source",
]


@pytest.mark.parametrize("select", EXPRESSIONS)
def test_expressions_of_every_kind_agree(select: str) -> None:
    engine = _engine()
    q = _query(engine, f"CREATE STREAM OUT WITH (KAFKA_TOPIC='out', VALUE_FORMAT='AVRO') AS {select} EMIT CHANGES;")
    values = [r.value for r in _payments(300, seed=13)] + AWKWARD_LINES
    values += [
        _line(user=u, amount=a, **{"class": c})
        for u, a, c in (("", "", ""), ("Ann", "25", "0"), ("ann", "-3", "1"), ("A", "0", "2"), ("", "nan", "0"))
    ]
    rows, fast = _both(engine, q, _records(values))
    assert fast == rows
    assert rows[0]


def test_random_lines_agree() -> None:
    """Lines built from pieces that trip parsers, in random combinations and batch sizes."""
    rng = random.Random(17)
    pieces = [
        "",
        "0",
        "1",
        "-1",
        "1.5",
        "1e3",
        "nan",
        "inf",
        "x",
        " ",
        "+2",
        "1_0",
        "0x1",
        "2013-09-01T00:00:00Z",
        "2013-09-01T00:00:00.5+01:00",
        "Ann",
        '"',
        "é",
        "\r",
        "2147483648",
        "-0.0",
        ".",
        "e5",
    ]
    engine = _engine()
    q = _query(engine, BENCH_QUERY)
    good = [r.value for r in _payments(50, seed=21)]
    values: list[bytes | None] = []
    for _ in range(1500):
        if rng.random() < 0.5:
            fields = good[rng.randrange(len(good))].decode().split(",")
            for _ in range(rng.randint(1, 3)):
                fields[rng.randrange(len(fields))] = rng.choice(pieces)
            if rng.random() < 0.05:
                fields.pop()
            values.append(",".join(fields).encode())
        else:
            values.append(good[rng.randrange(len(good))])
    records = _records(values)
    start = 0
    while start < len(records):
        size = rng.choice([1, 7, 64, 500])
        rows, fast = _both(engine, q, records[start : start + size])
        assert fast == rows
        start += size


def test_batches_of_columns_and_of_records_agree() -> None:
    engine = _engine()
    q = _query(engine, BENCH_QUERY)
    records = _payments(500, seed=2)
    out = q.vectorized.process(Columns.from_records(records))
    assert out.records(q.sink.topic) == q.process_rows(records)


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE STREAM J WITH (KAFKA_TOPIC='j', VALUE_FORMAT='JSON') AS SELECT * FROM creditcardfraud_source;",
        "CREATE STREAM P WITH (KAFKA_TOPIC='p', VALUE_FORMAT='AVRO') AS SELECT * FROM creditcardfraud_source "
        "PARTITION BY `USER`;",
        "CREATE STREAM A (K STRING KEY, X STRING) WITH (KAFKA_TOPIC='a', VALUE_FORMAT='JSON');"
        "CREATE STREAM B WITH (KAFKA_TOPIC='b', VALUE_FORMAT='AVRO') AS SELECT * FROM A;",
        "CREATE STREAM D (K INT KEY, X STRING) WITH (KAFKA_TOPIC='d', VALUE_FORMAT='DELIMITED');"
        "CREATE STREAM E WITH (KAFKA_TOPIC='e', VALUE_FORMAT='AVRO') AS SELECT * FROM D;",
        "CREATE STREAM F (K STRING KEY, X DECIMAL(4, 2)) WITH (KAFKA_TOPIC='f', VALUE_FORMAT='DELIMITED');"
        "CREATE STREAM G WITH (KAFKA_TOPIC='g', VALUE_FORMAT='AVRO') AS SELECT * FROM F;",
        "CREATE STREAM T WITH (KAFKA_TOPIC='t', VALUE_FORMAT='AVRO', TIMESTAMP='AMOUNT') AS SELECT PAYMENT_ID, "
        "CAST(AMOUNT AS BIGINT) AS AMOUNT FROM creditcardfraud_source;",
    ],
)
def test_queries_it_cannot_do_exactly_run_row_by_row(statement: str) -> None:
    engine = _engine()
    q = _query(engine, statement)
    assert q.vectorized is None
    assert compile_query(q) is None


def test_bigint_event_times_and_keyless_sources() -> None:
    engine = Engine(InMemorySchemaRegistry(), InMemoryRuntime())
    engine.execute(
        "CREATE STREAM S (N BIGINT, NAME STRING, T BIGINT) WITH (KAFKA_TOPIC='s', VALUE_FORMAT='DELIMITED', "
        "TIMESTAMP='T');"
    )
    q = _query(
        engine,
        "CREATE STREAM O WITH (KAFKA_TOPIC='o', VALUE_FORMAT='AVRO') AS SELECT N, NAME, T, "
        "ROWTIME AS R FROM S WHERE N <> 3;",
    )
    values = [
        b"1,a,5",
        b"2,,",
        b"3,c,7",
        b"4,d,-1",
        b"5,e,9223372036854775807",
        b"6,f,9223372036854775808",
        b"-9223372036854775808,g,1",
        b"7,h,1e3",
        None,
        b",,",
        b"8,i,0",
    ]
    records = [Record("s", None, v, 100 + i, i % 3, i) for i, v in enumerate(values)]
    rows, fast = _both(engine, q, records)
    assert fast == rows
    assert [r.partition for r in rows[0]] == [r.partition for r in fast[0]]


def test_functions_registered_deterministic_are_computed_once_per_distinct_value() -> None:
    """Whether a function's result depends on its arguments only is said where it is registered; the vectorized
    path computes those once per distinct value (or once, without columns), the others once per row."""
    assert REGISTRY["UCASE"].deterministic and REGISTRY["PI"].deterministic
    assert not REGISTRY["UUID"].deterministic and not REGISTRY["RANDOM"].deterministic
    q = _query(
        _engine(),
        "CREATE STREAM OUT WITH (KAFKA_TOPIC='out', VALUE_FORMAT='AVRO') AS SELECT PAYMENT_ID, UCASE(`USER`) AS U, "
        "CONCAT(`USER`, UUID()) AS R, PI() AS P, RANDOM() AS X FROM creditcardfraud_source EMIT CHANGES;",
    )
    assert [e.kind for e in q.vectorized.values] == ["distinct", "rows", "constant", "rows"]
