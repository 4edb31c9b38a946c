"""The rich console every command prints through."""

from __future__ import annotations

from rich.console import Console

#: Width used when output goes to a file or a pipe (CI logs), so that tables are not cut to 80 columns.
PIPE_WIDTH = 160


def make_console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr)
    if not console.is_terminal:
        console.width = PIPE_WIDTH
    return console
