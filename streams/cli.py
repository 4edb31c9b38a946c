"""`fraudstream worker [--processes N]`: N Faust scoring workers on this machine, one consumer group.

Each process is `python -m faust -A streams.app worker` with its own web port (first port + i) and data
directory; settings travel as environment variables (streams/settings.py), addresses as the usual ones.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import click


def worker_argv(loglevel: str = "info") -> list[str]:
    return [sys.executable, "-m", "faust", "-A", "streams.app", "worker", "-l", loglevel]


def worker_env(
    overrides: Mapping[str, str | int | float | Path], base: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """The environment of a worker process: `overrides` are setting names without the FRAUDSTREAM_ prefix."""
    env = dict(base)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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


@click.command("worker")
@click.option(
    "-p",
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes to start (they share the input's partitions).",
)
@click.option(
    "--web-port",
    type=int,
    default=6066,
    show_default=True,
    help="Web port of the first worker (POST /score, /metrics); the others count up from it.",
)
@click.option(
    "--model-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Score with this trained model folder instead of the registry's production version.",
)
@click.option("--loglevel", default="info", show_default=True)
def worker_command(processes: int, web_port: int, model_dir: Path | None, loglevel: str) -> None:
    """Start stream workers that score creditcardfraud_preprocessed_avro into fraud-scores."""
    children = []
    for i in range(processes):
        overrides: dict[str, str | int | Path] = {"WEB_PORT": web_port + i}
        if model_dir is not None:
            overrides["MODEL_DIR"] = model_dir.resolve()
        children.append(start_worker(overrides, loglevel=loglevel))
        click.echo(f"worker {i + 1}/{processes}: pid {children[-1].pid}, http://127.0.0.1:{web_port + i}/metrics")

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    codes = [child.wait() for child in children]
    failed = [code for code in codes if code not in (0, -signal.SIGINT, -signal.SIGTERM)]
    if failed:
        raise click.ClickException(f"{len(failed)} of {processes} workers exited with errors (codes {failed})")
