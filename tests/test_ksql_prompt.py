"""The `fraudstream ksql` prompt on a terminal (issue 16, item 12): prompt_toolkit's editing and history, a
statement over several lines until its `;`, and a push query that says it waits. Keystrokes go through
prompt_toolkit's own pipe input, as its tests do."""

from __future__ import annotations

from pathlib import Path

from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from stack.ksqldb.apply import _terminal_statements, _waiting


def statements(keys: str, history: Path) -> list[str]:
    with create_pipe_input() as pipe:
        pipe.send_text(keys)
        pipe.close()
        return list(_terminal_statements(history, input=pipe, output=DummyOutput()))


def test_a_statement_runs_over_lines_until_its_semicolon_and_is_remembered(tmp_path: Path) -> None:
    history = tmp_path / "ksql-history"
    typed = statements("SHOW\r STREAMS;\rDESCRIBE\x0c x;\r", history)  # \r is Enter, \x0c Ctrl-L
    assert typed == ["SHOW\n STREAMS;", "DESCRIBE x;"]
    assert "+SHOW\n+ STREAMS;" in history.read_text() and "\x0c" not in history.read_text()  # FileHistory's format
    assert statements("\x1b[A\r", history) == ["DESCRIBE x;"]  # Up: the last statement, from the file


def test_a_push_query_says_it_waits_and_how_to_read_from_the_start() -> None:
    assert "SET 'auto.offset.reset'='earliest';" in _waiting({})
    assert "earliest offset" in _waiting({"auto.offset.reset": "earliest"})
