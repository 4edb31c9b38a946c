"""Runs ksqlDB's query-validation tests (../shared/ksqldb-qtt) through the embedded engine.

No broker is needed: the engine runs each case over in-memory topics. The floor below is what the
engine achieved when it was last raised; a drop is a regression.
"""

from pathlib import Path

import pytest
from click.testing import CliRunner

from stack.ksqldb.qtt import FAILED, PASSED, UNSUPPORTED, conformance_command, run_file

QTT_DIR = Path(__file__).resolve().parents[2] / "shared" / "ksqldb-qtt"

# phase-1 files: cases passed (raise as the engine improves)
PHASE1_FLOOR = {
    "project-filter.json": 32,
    "select.json": 12,
    "source-stream.json": 8,
    "sink-topic-naming.json": 3,
    "operators.json": 14,
    "math.json": 36,
    "like.json": 3,
    "in.json": 46,
    "string.json": 2,
    "concat.json": 7,
    "substring.json": 8,
    "instr.json": 5,
    "len.json": 1,
    "string-lpad-rpad.json": 4,
    "regex.json": 5,
    "encode.json": 4,
    "greatest.json": 17,
    "geodistance.json": 3,
    "null.json": 22,
    "case-expression.json": 8,
    "delimited.json": 40,
    "avro.json": 58,
    "formats.json": 32,
}

# phase-2 files where stream-only features (PARTITION BY, key formats) already pass cases
PHASE2_FLOOR = {
    "partition-by.json": 82,
    "key-schemas.json": 30,
    # joins
    "joins.json": 137,
    "stream-table-join.json": 5,
    # tables, aggregations and windows
    "table.json": 5,
    "group-by.json": 148,
    "average-udaf.json": 5,
    "latest-offset-udaf.json": 23,
    "tumbling-windows.json": 7,
    "hopping-windows.json": 9,
}

pytestmark = pytest.mark.skipif(not QTT_DIR.is_dir(), reason=f"QTT data not found at {QTT_DIR}")


FLOORS = {**PHASE1_FLOOR, **PHASE2_FLOOR}


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_file_meets_floor(name):
    results = run_file(QTT_DIR / name)
    passed = [r for r in results if r.status == PASSED]
    failed = [f"{r.name}: {r.reason.splitlines()[0] if r.reason else ''}" for r in results if r.status == FAILED]
    assert len(passed) >= FLOORS[name], f"{name}: {len(passed)} passed < floor; failures: {failed}"


def test_engine_never_crashes_on_any_file():
    """Every case in every file ends as passed, failed with a reason, or unsupported -- never a crash."""
    for path in sorted(QTT_DIR.glob("*.json")):
        for r in run_file(path):
            assert r.status in (PASSED, FAILED, UNSUPPORTED)
            assert not r.reason.startswith("crash:"), f"{path.name} :: {r.name}: {r.reason}"


def test_cli_prints_table_and_totals():
    result = CliRunner().invoke(
        conformance_command, [str(QTT_DIR), "--file", "like.json", "--verbose"], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    assert "like.json" in result.output
    assert "TOTAL" in result.output
