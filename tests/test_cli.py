"""The command line's front door: every command listed without importing the heavy layers, and listed truly."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fraudstream.cli import COMMANDS


def test_help_lists_every_command_without_importing_faust_pandas_or_tensorflow() -> None:
    probe = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from fraudstream.cli import main\n"
        "result = CliRunner().invoke(main, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(result.output)\n"
        "print('LOADED', sorted(m for m in ('faust', 'pandas', 'tensorflow', 'keras', 'stack', 'models', 'streams')"
        " if m in sys.modules))\n"
    )
    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "LOADED []" in output
    for name in COMMANDS:
        assert f"\n  {name} " in output


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_listed_help_is_the_commands_own(name: str) -> None:
    lazy = COMMANDS[name]
    command = lazy.load()
    assert command.name == name
    first_paragraph = " ".join((command.help or "").split("\n\n")[0].split())
    assert lazy.short_help == first_paragraph


def test_an_unknown_command_is_a_one_line_error() -> None:
    from click.testing import CliRunner

    from fraudstream.cli import main

    result = CliRunner().invoke(main, ["nonsense"])
    assert result.exit_code == 2
    assert "No such command 'nonsense'" in result.output
    assert "Traceback" not in result.output
