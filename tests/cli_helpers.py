"""Running `fraudstream` as a user does: a subprocess, addresses given as environment variables
(conftest.py's `cli_env` puts them on free ports)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def fraudstream(
    *args: str,
    env: dict[str, str],
    check: bool = True,
    timeout: float = 600,
    cwd: Path | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """`fraudstream ARGS` with `env` over this process's environment (in `cwd`, else here); `check` fails the
    test on a non-zero exit."""
    result = subprocess.run([sys.executable, "-m", "fraudstream.cli", *args], env={**os.environ, **env}, capture_output=True, text=True,
                            timeout=timeout, cwd=cwd, input=input)  # fmt: skip
    if check and result.returncode != 0:
        raise AssertionError(
            f"fraudstream {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result
