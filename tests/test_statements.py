"""The statements' identity: found from the configuration, hashed by name and content, never silently empty."""

from __future__ import annotations

import pytest

from fraudstream.statements import ENV_VAR, StatementsNotFound, statements_dir, statements_hash


def test_the_hash_covers_names_and_contents_in_order(tmp_path):
    (tmp_path / "01_source.sql").write_text("CREATE STREAM a (x INT);")
    (tmp_path / "notes.txt").write_text("ignored")
    one = statements_hash(tmp_path)
    (tmp_path / "02_preprocess.sql").write_text("CREATE STREAM b AS SELECT * FROM a;")
    two = statements_hash(tmp_path)
    assert one != two
    (tmp_path / "notes.txt").write_text("changed")
    assert statements_hash(tmp_path) == two
    (tmp_path / "02_preprocess.sql").write_text("CREATE STREAM b AS SELECT x FROM a;")
    assert statements_hash(tmp_path) != two


def test_a_folder_without_statements_is_an_error_not_an_empty_hash(tmp_path):
    with pytest.raises(StatementsNotFound, match=ENV_VAR):
        statements_hash(tmp_path)


def test_the_configured_folder_wins(tmp_path, monkeypatch):
    (tmp_path / "010-source.sql").write_text("CREATE STREAM a (x INT);")
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert statements_dir() == tmp_path
    assert statements_hash() == statements_hash(tmp_path)
