"""`fraudstream demo`, README command 1, as a user runs it: small sizes, free ports, a private data directory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cli_helpers import fraudstream
from confluent_kafka import Consumer, TopicPartition

from fraudstream.kafka import consumer_config, end_offsets
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


def keys(bootstrap: str, topic: str) -> list[str]:
    """Every record key of `topic`, read from the start of each partition to its true end."""
    ends = end_offsets(bootstrap, topic)
    consumer = Consumer(consumer_config(bootstrap, f"test-demo-{topic}", enable_auto_commit=False))
    found: list[str] = []
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        while len(found) < sum(ends.values()):
            message = consumer.poll(10)
            assert message is not None and not message.error(), f"{topic}: {len(found)} of {sum(ends.values())} read"
            found.append(message.key().decode())
    finally:
        consumer.close()
    return found


def test_demo_runs_the_handbook_pipeline_and_scores_every_transaction(data_dir: Path, cli_env: dict[str, str]) -> None:
    dirs = ("--ksql-dir", str(REPO / "ksql" / "handbook"), "--connectors-dir", str(REPO / "connectors" / "handbook"))
    small = ("--pipeline", "handbook", "--data-dir", str(data_dir), "--customers", "64", "--days", "5")
    result = fraudstream("demo", *small, "--ephemeral", "-n", "300", "--rate", "50", "--duration", "5", *dirs,
                         env=cli_env)  # fmt: skip
    out = " ".join(result.stdout.split())  # rich wraps long lines at the console's width
    assert "Traceback" not in result.stderr
    assert "STREAM HANDBOOK_FEATURES created" in out and "TABLE HANDBOOK_LIVE_QUALITY created" in out
    assert "s3-sink-handbook-features created" in out
    assert "handbook version 1 promoted" in out
    assert "creditcardfraud" not in out.split("ksql/:")[1].split("connectors/:")[0]  # the handbook's statements only
    assert re.search(r"^\[\d+ s\] in [\d,]+ \(", result.stdout, re.MULTILINE), out
    served = re.search(r"handbook_features: ([\d,]+) of ([\d,]+) transactions preprocessed", out)
    scored = re.search(r"handbook-scores: ([\d,]+) transactions scored", out)
    labels = re.search(r"handbook_labels: ([\d,]+) labels sent, each 7 days \(event time\)", out)
    assert served and scored and labels, out
    preprocessed, sent = (int(text.replace(",", "")) for text in served.groups())
    assert sent >= 300  # the first 300 at once, then more at --rate until the view ended
    assert preprocessed == sent == int(scored[1].replace(",", ""))
    assert int(labels[1].replace(",", "")) == sent  # the simulator labels every transaction
    # Every transaction has its score, read back as a consumer would; none is scored twice.
    bootstrap = cli_env["KAFKA_BOOTSTRAP_SERVERS"]
    transactions, scores = keys(bootstrap, "handbook_transactions"), keys(bootstrap, "handbook-scores")
    assert len(transactions) == sent and sorted(scores) == sorted(transactions)
    assert topic_size(bootstrap, "creditcardfraud_source") == 0  # the flagship's pipeline was not run
    assert (
        f"http://127.0.0.1:{cli_env['FRAUDSTREAM_WEB_PORT']}/metrics" in out
    )  # the handbook's worker, beside the stack

    # Again on the running stack: nothing re-created, the model and worker kept, the days after the last ones.
    again = " ".join(
        fraudstream("demo", *small, "-n", "10", "--rate", "0", "--duration", "1", *dirs, env=cli_env).stdout.split()
    )
    assert "STREAM HANDBOOK_FEATURES unchanged" in again
    assert "handbook version 1 is in production" in again
    assert "starting the handbook's stream worker" not in again
    assert "handbook_features: 10 of 10 transactions preprocessed" in again, again
    assert "handbook-scores: 10 transactions scored" in again
    down = fraudstream("down", "--data-dir", str(data_dir), env=cli_env)
    assert "1 worker(s) with it" in down.stdout
    assert not (data_dir / "stack.json").exists()
