"""`fraudstream demo`, README command 1, as a user runs it: small sizes, free ports, a private data directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.config import Addresses
from stack.live import topic_size
from stack.supervisor import free_ports

REPO = Path(__file__).resolve().parents[1]


def fraudstream(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "stack.cli", *args], env={**os.environ, **env}, capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    if check and result.returncode != 0:
        raise AssertionError(f"fraudstream {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def cli_env() -> dict[str, str]:
    """Addresses on free ports, passed the way a user would: environment variables."""
    host = "127.0.0.1"
    broker, registry, ksqldb, connect, objectstore, worker = free_ports(6)
    addresses = Addresses(
        bootstrap_servers=f"{host}:{broker}",
        schema_registry_url=f"http://{host}:{registry}",
        ksqldb_url=f"http://{host}:{ksqldb}",
        connect_url=f"http://{host}:{connect}",
        s3_endpoint_url=f"http://{host}:{objectstore}",
    )
    return {**addresses.to_env(), "FRAUDSTREAM_WEB_PORT": str(worker)}


@pytest.fixture
def data_dir(tmp_path: Path, cli_env: dict[str, str]) -> Iterator[Path]:
    yield tmp_path / "data"
    if (tmp_path / "data" / "stack.json").exists():  # never leave a stack running behind a failed test
        fraudstream("down", "--data-dir", str(tmp_path / "data"), env=cli_env, check=False)


def counts(stdout: str) -> tuple[int, int, int]:
    """Payments preprocessed, sent and scored, as the demo's closing lines report them."""
    preprocessed = re.search(r"creditcardfraud_preprocessed_avro: ([\d,]+) of ([\d,]+) payments preprocessed", stdout)
    scored = re.search(r"fraud-scores: ([\d,]+) payments scored", stdout)
    assert preprocessed and scored, stdout
    return tuple(int(text.replace(",", "")) for text in (*preprocessed.groups(), scored.group(1)))  # type: ignore[return-value]


def test_demo_scores_payments_live_and_says_where_everything_is(data_dir: Path, cli_env: dict[str, str]) -> None:
    dirs = ("--ksql-dir", str(REPO / "ksql"), "--connectors-dir", str(REPO / "connectors"))
    result = fraudstream("demo", "--data-dir", str(data_dir), "--ephemeral", "-n", "200", "--rate", "50", "--duration", "5", *dirs,
                         env=cli_env)  # fmt: skip
    out = result.stdout
    assert "Traceback" not in result.stderr
    assert "STREAM CREDITCARDFRAUD_PREPROCESSED_AVRO created" in out
    assert "s3-sink-creditcardfraud-preprocessed created" in out
    assert "fraud version 1 promoted" in out
    # Off a terminal the live view is plain lines; the last one is printed when the view ends.
    assert re.search(r"^\[\d+ s\] in [\d,]+ \(", out, re.MULTILINE), out
    preprocessed, sent, scored = counts(out)
    assert sent >= 200  # the first 200 at once, then more at --rate until the view ended
    assert preprocessed == sent and scored == sent
    assert topic_size(cli_env["KAFKA_BOOTSTRAP_SERVERS"], "fraud-scores") == scored  # read back as a consumer would
    assert re.search(r"first score [\d,.]+ s after the demo started", out)
    # Where things are, now that the stack stays up.
    worker = f"http://127.0.0.1:{cli_env['FRAUDSTREAM_WEB_PORT']}"
    for expected in (f"{worker}/metrics", f"POST {worker}/score", cli_env["SCHEMA_REGISTRY_URL"], cli_env["KSQLDB_URL"],
                     cli_env["CONNECT_URL"], cli_env["S3_ENDPOINT_URL"], cli_env["KAFKA_BOOTSTRAP_SERVERS"], "fraud-scores",
                     "creditcardfraud_source", "jupyter lab", f"fraudstream down --data-dir {data_dir}"):
        assert expected in out, expected

    # Again on the running stack: nothing re-created, the model kept, exactly the payments asked for.
    again = fraudstream("demo", "--data-dir", str(data_dir), "-n", "10", "--rate", "0", "--duration", "1", *dirs, env=cli_env)
    assert "STREAM CREDITCARDFRAUD_PREPROCESSED_AVRO unchanged" in again.stdout
    assert "fraud version 1 is in production" in again.stdout
    assert counts(again.stdout) == (10, 10, 10)
    fraudstream("down", "--data-dir", str(data_dir), env=cli_env)
    assert not (data_dir / "stack.json").exists()
