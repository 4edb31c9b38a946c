"""Third-party clients whose pins conflict with ours, each in a virtual environment of its own.

`ksqldb-client` wants httpx < 0.28 and pandas < 3; `python-schema-registry-client` wants httpx 0.28, which
ksql-python-ng cannot use (it passes `cert=` to httpx's top-level functions, removed in 0.28). A test runs
the client's own code there, against the session stack, and reads its answers as JSON.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

#: Kept between runs (each is a minute of downloads to make); `.gitignore` leaves it out.
CLIENT_VENVS = Path(__file__).resolve().parents[1] / ".venv-clients"


def client_python(requirement: str) -> Path:
    """The interpreter of a virtual environment holding `requirement` (pinned) and its own dependencies."""
    venv = CLIENT_VENVS / re.sub(r"[^A-Za-z0-9.]+", "-", requirement)
    python = venv / "bin" / "python"
    if not (venv / "installed").exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", requirement], check=True)
        (venv / "installed").write_text(requirement)
    return python


def run_client(python: Path, script: str, env: dict[str, str]) -> Any:
    """Run `script` with that interpreter; it prints one JSON document as its last line."""
    result = subprocess.run(
        [str(python), "-c", script], capture_output=True, text=True, env={**os.environ, **env}, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
