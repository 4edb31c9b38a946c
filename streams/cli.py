"""How a Faust scoring worker process is started: `python -m faust -A streams.app worker`.

Settings travel as environment variables (streams/settings.py), addresses as the usual ones. The
`fraudstream worker` command (fraudstream/lifecycle.py) starts N of them beside the embedded stack.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def worker_argv(loglevel: str = "info") -> list[str]:
    return [sys.executable, "-m", "faust", "-A", "streams.app", "worker", "-l", loglevel]


def worker_env(
    overrides: Mapping[str, str | int | float | Path], base: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """The environment of a worker process: `overrides` are setting names without the FRAUDSTREAM_ prefix."""
    env = dict(base)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.update({f"FRAUDSTREAM_{name.upper()}": str(value) for name, value in overrides.items()})
    return env


def start_worker(
    overrides: Mapping[str, str | int | float | Path],
    log_path: Path | None = None,
    base_env: Mapping[str, str] = os.environ,
    loglevel: str = "info",
) -> subprocess.Popen:
    """One worker process; its output goes to `log_path` (else inherited)."""
    out = open(log_path, "ab") if log_path is not None else None
    try:
        return subprocess.Popen(
            worker_argv(loglevel),
            env=worker_env(overrides, base_env),
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
        )
    finally:
        if out is not None:
            out.close()
