"""`fraudstream demo`, README command 1, as a user runs it: small sizes, free ports, a private data directory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cli_helpers import fraudstream

from fraudstream.live import topic_size

pytestmark = pytest.mark.integration  # starts its own servers

REPO = Path(__file__).resolve().parents[1]


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
    for expected in (
        f"{worker}/metrics",
        f"POST {worker}/score",
        cli_env["SCHEMA_REGISTRY_URL"],
        cli_env["KSQLDB_URL"],
        cli_env["CONNECT_URL"],
        cli_env["S3_ENDPOINT_URL"],
        cli_env["KAFKA_BOOTSTRAP_SERVERS"],
        "fraud-scores",
        "creditcardfraud_source",
        "jupyter lab",
        f"fraudstream down --data-dir {data_dir}",
    ):
        assert expected in out, expected

    # Again on the running stack: nothing re-created, the model kept, exactly the payments asked for.
    again = fraudstream(
        "demo", "--data-dir", str(data_dir), "-n", "10", "--rate", "0", "--duration", "1", *dirs, env=cli_env
    )
    assert "STREAM CREDITCARDFRAUD_PREPROCESSED_AVRO unchanged" in again.stdout
    assert "fraud version 1 is in production" in again.stdout
    assert counts(again.stdout) == (10, 10, 10)
    fraudstream("down", "--data-dir", str(data_dir), env=cli_env)
    assert not (data_dir / "stack.json").exists()
