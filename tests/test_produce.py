"""Replaying payments into the real embedded broker: every line is sent and acknowledged, or rejected and dead-lettered."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import click
import pytest
from click.testing import CliRunner, Result
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    TopicPartition,
)

from fraudstream.kafka import admin_client, end_offsets
from producers import replay as replay_module
from producers.generate import generate_command, generate_payments
from producers.labels import DEFAULT_LABEL_DELAY
from producers.payments import JSON_FIELDS, Payment, format_timestamp, frame_payments, read_payments
from producers.replay import BrokerUnavailable, ReplaySummary, Sender, TokenBucket, produce_command, replay
from stack.supervisor import free_port

KAGGLE_HEADER = ",".join(f'"{name}"' for name in ("Time", *(f"V{i}" for i in range(1, 29)), "Amount", "Class"))


def read_topic(bootstrap: str, topic: str) -> list[Message]:
    """Every record in `topic`, up to the true end of each partition."""
    ends = end_offsets(bootstrap, topic)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{topic}", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING) for partition, end in ends.items() if end])
    records: list[Message] = []
    idle = 0
    try:
        while len(records) < sum(ends.values()) and idle < 30:
            message = consumer.poll(1.0)
            if message is None:
                idle += 1
            elif message.error() is None:
                records.append(message)
                idle = 0
    finally:
        consumer.close()
    assert len(records) == sum(ends.values()), f"read {len(records)} of {sum(ends.values())} records in {topic}"
    return records


def payments_in(records: list[Message]) -> list[Payment]:
    """The DELIMITED values read back as extended-layout lines."""
    items = list(read_payments((record.value().decode() for record in records), "topic"))
    assert all(isinstance(item, Payment) for item in items)
    return items  # type: ignore[return-value]


def file_payments(path) -> list[Payment]:
    with open(path, newline="") as lines:
        return list(read_payments(lines, str(path)))  # type: ignore[arg-type]


def test_a_record_the_broker_failed_with_an_error_it_recovers_from_is_sent_again_until_its_deadline(
    monkeypatch,
):
    # The embedded broker answers UNKNOWN_SERVER_ERROR while its object store is down (the chaos run), which Kafka
    # clients do not retry: the replay sends such a record again. Here nothing listens, so every attempt times
    # out, and the test counts a time-out as such an error.
    monkeypatch.setattr(replay_module, "RESENT_ERRORS", frozenset({KafkaError._MSG_TIMED_OUT}))
    monkeypatch.setattr(replay_module, "RESEND_BACKOFF_SECONDS", 0.05)
    monkeypatch.setattr(replay_module, "RESEND_SECONDS", 5.0)
    summary, heard = ReplaySummary(), []
    sender = Sender(
        {"bootstrap.servers": f"127.0.0.1:{free_port()}", "message.timeout.ms": 200, "log_level": 0}, summary
    )
    sender.produce("t", b"p1", b"v", [("h", b"1")], lambda error, message: heard.append((error.code(), message.key())))
    while sender.flush(5):
        pass
    assert summary.resent >= 1  # sent again until 5 s after the first send, then given up on
    assert heard == [(KafkaError._MSG_TIMED_OUT, b"p1")]  # the caller hears of the last attempt only


def test_token_bucket_waits_for_tokens_at_the_rate():
    now = [0.0]
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(10.0, wait=wait, clock=lambda: now[0])
    for _ in range(21):
        bucket.take()
    assert now[0] == pytest.approx(2.0)  # 1 token at start, then one every 0.1 s
    assert all(seconds == pytest.approx(0.1) for seconds in waits)


def test_token_bucket_allows_a_short_burst_after_idling():
    now = [0.0]
    bucket = TokenBucket(100.0, wait=lambda s: pytest.fail("should not wait"), clock=lambda: now[0])
    now[0] = 5.0
    for _ in range(10):  # a tenth of a second's worth, no more
        bucket.take()
    assert bucket.tokens < 1.0


def test_kaggle_sample_arrives_whole_and_decodes(stack, topic_name, shared_data):
    bootstrap = stack.addresses.bootstrap_servers
    labels_topic = f"{topic_name}-labels"
    summary = replay(
        shared_data / "creditcard_small.csv", bootstrap_servers=bootstrap, topic=topic_name, labels_topic=labels_topic
    )
    assert (summary.read, summary.sent, summary.acknowledged, summary.rejected, summary.failed) == (999, 999, 999, 0, 0)
    assert summary.ok and (summary.labels_sent, summary.labels_acknowledged) == (999, 999)
    assert len(end_offsets(bootstrap, topic_name)) == 4  # created with the default partitions
    records = read_topic(bootstrap, topic_name)
    assert len(records) == 999
    expected = file_payments(shared_data / "creditcard_small.csv")
    assert sorted(r.key().decode() for r in records) == sorted(p.id for p in expected)
    assert all(r.key().decode() == p.id for r, p in zip(records, payments_in(records), strict=True))
    unlabelled = [replace(p, label=None) for p in expected]  # a payment never carries its label
    assert sorted(payments_in(records), key=lambda p: p.id) == sorted(unlabelled, key=lambda p: p.id)
    labels = {r.key().decode(): (json.loads(r.value()), r.timestamp()[1]) for r in read_topic(bootstrap, labels_topic)}
    by_id = {p.id: p for p in expected}
    assert set(labels) == set(by_id)
    for pid, (value, timestamp_ms) in labels.items():
        known = by_id[pid].timestamp + DEFAULT_LABEL_DELAY
        assert value == {"ID": pid, "LABEL": by_id[pid].label, "LABELLED_AT": format_timestamp(known)}
        assert timestamp_ms == round(known.timestamp() * 1000)


def test_replaying_again_gives_the_same_keys(stack, topic_name, shared_data):
    bootstrap = stack.addresses.bootstrap_servers
    for _ in range(2):
        replay(shared_data / "creditcard_extended.csv", bootstrap_servers=bootstrap, topic=topic_name, partitions=2)
    records = read_topic(bootstrap, topic_name)
    keys = [r.key().decode() for r in records]
    assert len(keys) == 20 and sorted(set(keys)) == sorted(str(i) for i in range(1, 11))
    # one key, one partition: every copy of a payment lands where the first did
    assert len({(r.key(), r.partition()) for r in records}) == 10


def test_json_values_carry_the_upper_case_columns(stack, topic_name, shared_data):
    bootstrap = stack.addresses.bootstrap_servers
    summary = replay(
        shared_data / "creditcard_extended.csv", bootstrap_servers=bootstrap, topic=topic_name, value_format="json"
    )
    assert summary.acknowledged == 10
    values = {r.key().decode(): json.loads(r.value()) for r in read_topic(bootstrap, topic_name)}
    assert set(values) == {str(i) for i in range(1, 11)}
    assert all(list(value) == list(JSON_FIELDS) for value in values.values())
    assert values["1"]["USER"] == "Kai" and values["1"]["AMOUNT"] == 149.62 and "CLASS" not in values["1"]


def test_malformed_lines_are_counted_and_dead_lettered(stack, topic_name, tmp_path):
    good = ",".join(["0", *["0.5"] * 28, "1.00", '"0"'])
    lines = [
        KAGGLE_HEADER,
        good,
        ",".join(["1", *["0.5"] * 27, "1.00", '"0"']),  # line 3: a column short
        good,
        ",".join(["2", "oops", *["0.5"] * 27, "1.00", '"0"']),  # line 5: a non-numeric feature
        good,
    ]
    path = tmp_path / "broken.csv"
    path.write_text("\n".join(lines) + "\n")
    bootstrap = stack.addresses.bootstrap_servers
    summary = replay(path, bootstrap_servers=bootstrap, topic=topic_name)
    assert (summary.read, summary.sent, summary.acknowledged, summary.rejected, summary.dead_lettered) == (
        5,
        3,
        3,
        2,
        2,
    )
    assert [(r.line, r.reason) for r in summary.rejections] == [
        (3, "expected 31 columns (kaggle layout), got 30"),
        (5, "V1 'oops' is not a number"),
    ]
    assert sorted(r.key().decode() for r in read_topic(bootstrap, topic_name)) == ["broken-2", "broken-4", "broken-6"]
    dead = sorted(read_topic(bootstrap, f"{topic_name}-dlq"), key=lambda r: int(dict(r.headers())["error.line"]))
    assert [dict(r.headers()) for r in dead] == [
        {
            "error.reason": b"expected 31 columns (kaggle layout), got 30",
            "error.line": b"3",
            "error.file": str(path).encode(),
        },
        {"error.reason": b"V1 'oops' is not a number", "error.line": b"5", "error.file": str(path).encode()},
    ]
    assert [r.value().decode() for r in dead] == [lines[2], lines[4]]


def test_a_line_that_is_not_utf8_is_rejected_alone(stack, topic_name, tmp_path):
    good = ",".join(["0", *["0.5"] * 28, "1.00", '"0"']).encode()
    broken = good.replace(b"1.00", b"1.\xff0")
    path = tmp_path / "latin.csv"
    path.write_bytes(b"\n".join([KAGGLE_HEADER.encode(), good, broken, good]) + b"\n")
    bootstrap = stack.addresses.bootstrap_servers
    summary = replay(path, bootstrap_servers=bootstrap, topic=topic_name)
    assert (summary.sent, summary.acknowledged, summary.rejected, summary.dead_lettered) == (2, 2, 1, 1)
    [rejected] = summary.rejections
    assert rejected.line == 3 and rejected.reason.startswith("not UTF-8: byte 0xff at character ")
    [dead] = read_topic(bootstrap, f"{topic_name}-dlq")
    assert dead.value() == broken  # the line's own bytes, not a re-encoding
    assert dict(dead.headers())["error.line"] == b"3"


def test_limit_stops_after_that_many_payments(stack, topic_name, shared_data):
    bootstrap = stack.addresses.bootstrap_servers
    summary = replay(
        shared_data / "creditcard_small.csv", bootstrap_servers=bootstrap, topic=topic_name, limit=25, rate=5000
    )
    assert (summary.read, summary.sent, summary.acknowledged) == (25, 25, 25)
    keys = sorted(int(r.key().decode().rsplit("-", 1)[1]) for r in read_topic(bootstrap, topic_name))
    assert keys == list(range(2, 27))  # the first 25 data lines


def test_generated_payments_replay_without_a_file(stack, topic_name):
    frame = generate_payments(300, seed=11, fraud_rate=0.01)
    summary = replay(frame, bootstrap_servers=stack.addresses.bootstrap_servers, topic=topic_name)
    assert summary.acknowledged == 300
    back = {p.id: p for p in payments_in(read_topic(stack.addresses.bootstrap_servers, topic_name))}
    assert back == {p.id: replace(p, label=None) for p in frame_payments(frame)}


def test_unreachable_broker_is_named():
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(BrokerUnavailable, match=f"cannot reach Kafka at {address}"):
        replay([], bootstrap_servers=address, topic="nowhere")


# --- the commands ----------------------------------------------------------------------------------


def invoke(command: click.Command, args: list[str], **kwargs: object) -> Result:
    return CliRunner().invoke(command, args, **kwargs)


def test_produce_command_reports_the_summary(stack, topic_name, shared_data):
    bootstrap = stack.addresses.bootstrap_servers
    result = invoke(produce_command, [str(shared_data / "creditcard_extended.csv"), "--topic", topic_name,
                                      "--bootstrap-servers", bootstrap, "--partitions", "1", "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"{topic_name}: read 10, sent 10, acknowledged 10, rejected 0" in result.output
    topic = admin_client(bootstrap).list_topics(topic_name, timeout=10).topics[topic_name]
    assert len(topic.partitions) == 1


def test_produce_command_reads_stdin_and_reports_rejections(stack, topic_name):
    good = ",".join(["0", *["0.5"] * 28, "1.00", ""])
    stdin = "\n".join([KAGGLE_HEADER, good, good + ",extra", good]) + "\n"
    result = invoke(produce_command, ["-", "--topic", topic_name, "--bootstrap-servers", stack.addresses.bootstrap_servers,
                                      "--format", "json", "-q"], input=stdin)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "rejected -:3: expected 31 columns (kaggle layout), got 32" in result.output
    assert "read 3, sent 2, acknowledged 2, rejected 1 (dead-lettered 1 to" in result.output
    values = [json.loads(r.value()) for r in read_topic(stack.addresses.bootstrap_servers, topic_name)]
    run = result.output.split("its id ending in -")[1][:6]
    assert sorted(v["ID"] for v in values) == [f"stdin-2-{run}", f"stdin-4-{run}"]
    assert not any("CLASS" in v for v in values)


def test_produce_stamps_payments_when_sent_with_ids_unique_to_the_run(stack, topic_name, shared_data):
    """Issue 16, items 5 and 6: a replayed recording is sent as new payments (event time = when sent, so
    latency and windows read true; ids unique per run, so a second replay repeats none); the file's own
    time stays in Time; `--keep-file-time` replays the file as it is (a backfill)."""
    bootstrap = stack.addresses.bootstrap_servers
    path = shared_data / "creditcard_small.csv"
    args = [str(path), "--topic", topic_name, "--bootstrap-servers", bootstrap, "--limit", "20", "-q"]
    before = datetime.now(UTC) - timedelta(seconds=1)  # Timestamps are sent to the millisecond
    outputs = [invoke(produce_command, args).output for _ in range(2)]
    after = datetime.now(UTC)
    runs = [output.split("its id ending in -")[1][:6] for output in outputs]
    sent = payments_in(read_topic(bootstrap, topic_name))
    expected = {p.id: p for p in file_payments(path)[:20]}
    assert len({p.id for p in sent}) == 40 and runs[0] != runs[1]
    for payment in sent:
        original = expected[payment.id.rsplit("-", 1)[0]]
        assert payment.id.rsplit("-", 1)[1] in runs
        assert before <= payment.timestamp <= after and payment.time == original.time
        assert payment.features == original.features
    backfill = invoke(produce_command, [*args, "--topic", f"{topic_name}-backfill", "--keep-file-time"])
    assert backfill.exit_code == 0 and "ending in" not in backfill.output
    kept = payments_in(read_topic(bootstrap, f"{topic_name}-backfill"))
    assert {(p.id, p.timestamp) for p in kept} == {(p.id, p.timestamp) for p in expected.values()}


def test_generate_command_to_topic(stack, topic_name):
    result = invoke(generate_command, ["-n", "120", "--seed", "3", "--to-topic", "--topic", topic_name,
                                       "--bootstrap-servers", stack.addresses.bootstrap_servers, "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "read 120, sent 120, acknowledged 120, rejected 0" in result.output
    assert sum(end_offsets(stack.addresses.bootstrap_servers, topic_name).values()) == 120


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/no/such/file.csv"], "'/no/such/file.csv' does not exist"),
        (["-", "--rate", "0"], "--rate"),
        (["-", "--format", "avro"], "'avro' is not one of"),
    ],
)
def test_bad_arguments_are_one_line_errors(args, message):
    result = invoke(produce_command, args)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_unreachable_broker_is_a_one_line_error(shared_data):
    address = f"127.0.0.1:{free_port()}"
    result = invoke(
        produce_command, [str(shared_data / "creditcard_extended.csv"), "--bootstrap-servers", address, "-q"]
    )
    assert result.exit_code == 1 and result.output.startswith(f"Error: cannot reach Kafka at {address}")
    assert len(result.output.strip().splitlines()) == 1


def test_a_file_that_is_no_payment_file_is_a_one_line_error(tmp_path, stack, topic_name):
    path = tmp_path / "other.csv"
    path.write_text("Time,Amount\n1,2\n")
    result = invoke(produce_command, [str(path), "--topic", topic_name, "--bootstrap-servers",
                                      stack.addresses.bootstrap_servers, "-q"])  # fmt: skip
    assert result.exit_code == 1 and "unrecognised header (2 columns)" in result.output


def test_a_payment_the_producer_refuses_stops_the_replay_and_says_why(stack, topic_name):
    payments = list(frame_payments(generate_payments(3, seed=1)))
    payments[1] = replace(payments[1], user="x" * 1_100_000)  # a record over message.max.bytes
    summary = replay(payments, bootstrap_servers=stack.addresses.bootstrap_servers, topic=topic_name)
    assert (summary.read, summary.sent, summary.acknowledged, summary.failed) == (2, 1, 1, 1) and not summary.ok
    assert any("too large" in error for error in summary.errors), summary.errors


def test_a_very_long_malformed_line_is_dead_lettered_cut_to_size(stack, topic_name, tmp_path):
    path = tmp_path / "long.csv"
    long_line = "1,2018-12-18T12:00:00Z,Kai," + "9" * 2_000_000
    path.write_text(long_line + "\n")
    summary = replay(path, bootstrap_servers=stack.addresses.bootstrap_servers, topic=topic_name)
    assert (summary.rejected, summary.dead_lettered, summary.failed) == (1, 1, 0)
    assert summary.rejections[0].reason == "not CSV: field larger than field limit (131072)"
    [dead] = read_topic(stack.addresses.bootstrap_servers, f"{topic_name}-dlq")
    headers = dict(dead.headers())
    assert headers["error.truncated"] == str(len(long_line)).encode() and long_line.startswith(dead.value().decode())
