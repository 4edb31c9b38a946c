"""`fraudstream train / evaluate / models ...` through click's runner, against the session's real stack."""

from __future__ import annotations

import json
import uuid

import pytest
from click.testing import CliRunner

from models.cli import evaluate_command, models_group, train_command
from models.registry import ModelRegistry


@pytest.fixture
def run(stack, tmp_path):
    env = {**stack.addresses.to_env(), "FRAUDSTREAM_MODEL_CACHE": str(tmp_path / "cache")}
    runner = CliRunner()

    def invoke(command, *args: str):
        result = runner.invoke(command, [str(a) for a in args], env=env)
        assert "Traceback" not in result.output
        return result

    return invoke


@pytest.fixture
def name() -> str:
    return f"cli-{uuid.uuid4().hex[:8]}"


def test_train_twice_reproduces_then_promote_gate_rollback_evaluate(run, stack, name, tmp_path):
    args = ("--generated", 3000, "--fraud-rate", 0.03, "--kind", "autoencoder", "--epochs", 2, "--seed", 1, "-n", name)
    first = run(train_command, *args)
    assert first.exit_code == 0, first.output
    assert "epoch 1/2" in first.output and "epoch 2/2" in first.output and "average_precision" in first.output
    assert f"registered {name} version 1 (candidate)" in first.output
    second = run(train_command, *args)
    assert second.exit_code == 0, second.output
    registry = ModelRegistry.from_addresses(stack.addresses, cache_dir=tmp_path / "cache")
    v1, v2 = registry.versions(name)
    assert v1["metrics"] == v2["metrics"] and v1["threshold"] == v2["threshold"]  # same data + seed, same model

    listed = run(models_group, "list", "-n", name)
    assert listed.exit_code == 0 and "candidate" in listed.output
    assert run(models_group, "promote", 1, "-n", name).exit_code == 0
    # an identical model does not *beat* production: refused, in one line
    refused = run(models_group, "promote", 2, "-n", name)
    assert refused.exit_code == 1 and "does not beat production version 1" in refused.output
    assert refused.output.count("\n") == 1
    forced = run(models_group, "promote", 2, "--force", "-n", name)
    assert forced.exit_code == 0 and "(forced)" in forced.output and "version 1 archived" in forced.output
    shown = json.loads(run(models_group, "show", "production", "-n", name).output)
    assert shown["version"] == 2 and shown["history"][-1]["forced"] is True
    back = run(models_group, "rollback", "-n", name)
    assert back.exit_code == 0 and f"{name} version 1 is production again" in back.output

    out = tmp_path / "evaluation"
    evaluated = run(
        evaluate_command,
        "production",
        "--generated",
        1000,
        "--data-seed",
        5,
        "--fraud-rate",
        0.03,
        "--output-dir",
        out,
        "-n",
        name,
    )
    assert evaluated.exit_code == 0, evaluated.output
    card = json.loads((out / "model_card.json").read_text())
    assert card["model"]["version"] == f"{name}:1" and card["dataset"]["rows"] == 1000
    assert {"roc.png", "pr.png", "model_card.md"} <= {p.name for p in out.iterdir()}


def test_train_on_the_lake(run, stack, name, tmp_path):
    """The production path: features in the S3 sink's layout and labels on their topic feed `train --lake`."""
    import io

    import fastavro
    from confluent_kafka import Producer

    from fraudstream.kafka import ensure_topic, producer_config
    from fraudstream.s3 import s3_client
    from models.reference import served_features
    from producers.generate import generate_payments

    def avro_object(part) -> bytes:  # the value columns of the features stream, as ksqlDB writes them
        schema = {
            "type": "record",
            "name": "KsqlDataSourceSchema",
            "fields": [
                {"name": c, "type": "string" if c == "ID" else "long" if c == "EVENT_TIME" else "double"}
                for c in part.columns
            ],
        }
        out = io.BytesIO()
        fastavro.writer(out, fastavro.parse_schema(schema), part.to_dict("records"))
        return out.getvalue()

    topic, frame = f"lake-{name}", generate_payments(2000, seed=8, fraud_rate=0.03)
    served = served_features(frame)
    client = s3_client(stack.addresses.s3_endpoint_url)
    for start in (0, 1000):
        key = f"topics/{topic}/partition=0/{topic}+0+{start:010d}.avro"
        part = served.drop(columns=["Class"]).iloc[start : start + 1000]
        client.put_object(Bucket=stack.addresses.bucket, Key=key, Body=avro_object(part))
    labels_topic = f"{topic}-labels"
    ensure_topic(stack.addresses.bootstrap_servers, labels_topic)
    producer = Producer(producer_config(stack.addresses.bootstrap_servers))
    for pid, label in zip(served["ID"], served["Class"]):
        value = {"ID": pid, "LABEL": int(label), "LABELLED_AT": "2020-01-01T00:00:00Z"}
        producer.produce(labels_topic, key=pid.encode(), value=json.dumps(value).encode())
    assert producer.flush(30) == 0
    result = run(train_command, "--lake", topic, "--labels-topic", labels_topic, "--kind", "baseline", "-n", name)
    assert result.exit_code == 0, result.output
    registry = ModelRegistry.from_addresses(stack.addresses, cache_dir=tmp_path / "cache")
    source = registry.version(name, 1)["dataset"]["source"]
    assert source["kind"] == "served" and source["labels"]["topic"] == labels_topic
    source = source["features"]
    assert source["kind"] == "lake" and [(o["start_offset"], o["end_offset"]) for o in source["objects"]] == [
        (0, 999),
        (1000, 1999),
    ]


def test_baseline_and_recalibrate(run, name):
    trained = run(train_command, "--generated", 2000, "--fraud-rate", 0.03, "--kind", "baseline", "-n", name)
    assert trained.exit_code == 0 and f"registered {name} version 1 (candidate)" in trained.output
    assert "epoch" not in trained.output  # the baseline has no epochs
    done = run(
        models_group,
        "recalibrate",
        1,
        "--generated",
        1000,
        "--data-seed",
        3,
        "--fraud-rate",
        0.03,
        "--target",
        0.01,
        "-n",
        name,
    )
    assert done.exit_code == 0 and "threshold version 2" in done.output


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "give a dataset: --csv FILE, --generated N, --topic TOPIC or --lake TOPIC"),
        (("--generated", 10, "--lake", "t"), "give one dataset, not --generated and --lake"),
        (("--topic", "t", "--offsets", "zero"), "'zero' is not P:START-END"),
        (("--generated", 10, "--offsets", "0:0-5"), "--offsets only applies to --topic"),
        (("--generated", 10, "--kind", "forest"), "'forest' is not one of 'autoencoder', 'logistic-baseline'"),
    ],
)
def test_bad_arguments_are_one_line_usage_errors(run, args, message):
    result = run(train_command, *args)
    assert result.exit_code == 2 and message in result.output


def test_unknown_model_and_version_are_one_line_errors(run, name):
    result = run(models_group, "list", "-n", name)
    assert result.exit_code == 1 and f"no model named {name!r}" in result.output
    result = run(models_group, "show", 3, "-n", name)
    assert result.exit_code == 1 and result.output.startswith("Error: no model named")
    result = run(train_command, "--lake", f"nothing-{name}", "--no-register", "--output-dir", "/tmp/x-" + name)
    assert result.exit_code == 1 and "no Avro or Parquet objects" in result.output
