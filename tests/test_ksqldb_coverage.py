"""The coverage page of the engine (docs/ksql-engine.md) cannot drift from the engine: its rows agree with the
function registry, the aggregates, the WITH properties and the formats the engine accepts or refuses, and
every test a row names exists and exercises what the row names."""

import ast
import re
from pathlib import Path

import pytest

from stack.ksqldb.engine import KNOWN_PROPERTIES, UNSUPPORTED_PROPERTIES
from stack.ksqldb.formats import IMPLEMENTED, KNOWN_FORMATS
from stack.ksqldb.functions import REGISTRY, aggregates
from stack.ksqldb.functions.registry import UNSUPPORTED_FUNCTIONS

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "ksql-engine.md"
#: documented among the scalar functions, but compiled as expressions rather than registered
SPECIAL_FORMS = {"CAST", "ARRAY", "MAP", "FILTER", "REDUCE", "TRANSFORM"}

_SECTION = re.compile(r"^### (?P<name>.+?) \((?P<supported>\d+) of (?P<total>\d+) supported\)$")
_ROW = re.compile(r"^\| (?P<name>.+?) \| (?P<status>supported|unsupported) \| (?P<test>.+?) \| (?P<note>.*?) \|$")


def _sections() -> dict[str, list[dict[str, str]]]:
    sections: dict[str, list[dict[str, str]]] = {}
    current = None
    for line in PAGE.read_text().splitlines():
        if m := _SECTION.match(line):
            current = sections.setdefault(m["name"], [])
            current.append({"supported": m["supported"], "total": m["total"]})  # the heading's counts first
        elif current is not None and (m := _ROW.match(line)):
            current.append(m.groupdict())
    return sections


SECTIONS = _sections()


def _rows(section: str) -> list[dict[str, str]]:
    return SECTIONS[section][1:]


def _names(section: str, status: str) -> set[str]:
    return {r["name"].strip("`") for r in _rows(section) if r["status"] == status}


def test_page_has_every_section_with_true_counts():
    assert set(SECTIONS) == {
        "Scalar functions",
        "Aggregate functions",
        "Table functions",
        "Operators",
        "Statements",
        "WITH properties",
        "Serialization formats",
    }
    for name, (counts, *rows) in SECTIONS.items():
        supported = sum(1 for r in rows if r["status"] == "supported")
        assert (supported, len(rows)) == (int(counts["supported"]), int(counts["total"])), name


def test_functions_match_the_registry():
    assert _names("Scalar functions", "supported") == set(REGISTRY) | SPECIAL_FORMS
    assert not _names("Scalar functions", "unsupported") & set(REGISTRY)
    assert _names("Aggregate functions", "supported") == aggregates.NAMES
    assert _names("Aggregate functions", "unsupported") <= aggregates.UNSUPPORTED
    assert _names("Table functions", "unsupported") == set(UNSUPPORTED_FUNCTIONS)
    assert not _names("Table functions", "supported")


def test_properties_and_formats_match_the_engine():
    assert _names("WITH properties", "supported") == KNOWN_PROPERTIES
    assert _names("WITH properties", "unsupported") <= set(UNSUPPORTED_PROPERTIES)
    assert _names("Serialization formats", "supported") == IMPLEMENTED
    assert _names("Serialization formats", "unsupported") == KNOWN_FORMATS - IMPLEMENTED


def _test_source(ref: str) -> str:
    """The source of a test function (decorators included) named `tests/file.py::test_name`."""
    path, _, name = ref.strip("`").partition("::")
    file = ROOT / path
    assert file.is_file(), f"{ref}: no such file"
    src = file.read_text()
    for node in ast.parse(src).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            parts = [ast.get_source_segment(src, d) or "" for d in node.decorator_list]
            return "\n".join(parts + [ast.get_source_segment(src, node) or ""])
    raise AssertionError(f"{ref}: no such test")


def _mentions(source: str, name: str) -> bool:
    """The row's name appears in the test: its words (as words), or its symbols for an operator like `%`."""
    for span in re.findall(r"`([^`]+)`", name) or [name]:
        words = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", span)
        if words and not all(re.search(rf"\b{w}\b", source, re.IGNORECASE) for w in words):
            return False
        if not words and span.replace("[]", "[") not in source:
            return False
    return True


@pytest.mark.parametrize(
    "section, row",
    [(s, r) for s, (_, *rows) in SECTIONS.items() for r in rows if r["test"] != "—"],
    ids=lambda v: v if isinstance(v, str) else v["name"],
)
def test_named_tests_exist_and_exercise_their_row(section, row):
    assert _mentions(_test_source(row["test"]), row["name"]), f"{row['test']} does not mention {row['name']}"


def test_every_supported_row_names_a_test():
    missing = [(s, r["name"]) for s, (_, *rows) in SECTIONS.items() for r in rows if r["status"] == "supported"]
    missing = [m for m in missing if next(r for r in _rows(m[0]) if r["name"] == m[1])["test"] == "—"]
    assert not missing
