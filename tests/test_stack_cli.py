"""`fraudstream up`, `status` and `down` as a user runs them, on free ports and a private data directory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import fraudstream
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from fraudstream.kafka import admin_client, consumer_config, end_offsets, producer_config
from stack.supervisor import ServiceSpec, StackError, listens_on, pid_alive, start

pytestmark = pytest.mark.integration  # starts its own servers


def recorded_pids(data_dir: Path) -> list[int]:
    state = json.loads((data_dir / "stack.json").read_text())
    return [service["pid"] for service in state["running"]]


def test_up_down_up_keeps_topics_records_offsets_and_schema_ids(data_dir: Path, cli_env: dict[str, str]) -> None:
    fraudstream("up", "--data-dir", str(data_dir), env=cli_env)
    bootstrap = cli_env["KAFKA_BOOTSTRAP_SERVERS"]
    topic, group = "payments-durable", "durable-group"

    admin = admin_client(bootstrap)
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(timeout=30)
    producer = Producer(producer_config(bootstrap))
    for i in range(300):
        producer.produce(topic, key=str(i), value=f"payment-{i}")
    assert producer.flush(30) == 0
    consumer = Consumer(consumer_config(bootstrap, group, enable_auto_commit=False))
    consumer.assign([TopicPartition(topic, 0, 0)])
    consumer.commit(offsets=[TopicPartition(topic, 0, 42)], asynchronous=False)
    consumer.close()
    registry = SchemaRegistryClient({"url": cli_env["SCHEMA_REGISTRY_URL"]})
    schema = Schema(
        json.dumps({"type": "record", "name": "Payment", "fields": [{"name": "id", "type": "string"}]}), "AVRO"
    )
    schema_id = registry.register_schema(f"{topic}-value", schema)

    status = fraudstream("status", "--data-dir", str(data_dir), env=cli_env)
    assert status.stdout.count("healthy") >= 3
    pids = recorded_pids(data_dir)
    fraudstream("down", "--data-dir", str(data_dir), env=cli_env)
    assert not any(pid_alive(pid) for pid in pids), "down left a service running"

    fraudstream("up", "--data-dir", str(data_dir), env=cli_env)
    assert topic in admin_client(bootstrap).list_topics(timeout=10).topics
    assert sum(end_offsets(bootstrap, topic).values()) == 300
    reader = Consumer(consumer_config(bootstrap, group))
    assert reader.committed([TopicPartition(topic, 0)], timeout=10)[0].offset == 42
    reader.close()
    fresh = SchemaRegistryClient({"url": cli_env["SCHEMA_REGISTRY_URL"]})
    assert json.loads(fresh.get_schema(schema_id).schema_str) == json.loads(schema.schema_str)
    assert fresh.lookup_schema(f"{topic}-value", schema).schema_id == schema_id
    fraudstream("down", "--data-dir", str(data_dir), env=cli_env)


def test_a_busy_port_is_a_one_line_error_naming_it(data_dir: Path, cli_env: dict[str, str]) -> None:
    port = int(cli_env["KAFKA_BOOTSTRAP_SERVERS"].rsplit(":", 1)[1])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = fraudstream("up", "--data-dir", str(data_dir), "--ephemeral", env=cli_env, check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"port {port}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (data_dir / "stack.json").exists() or recorded_pids(data_dir) == []


def test_status_and_down_without_a_stack_say_so_in_one_line(data_dir: Path, cli_env: dict[str, str]) -> None:
    for command in ("status", "down"):
        result = fraudstream(command, "--data-dir", str(data_dir), env=cli_env, check=False)
        assert result.returncode == 1
        assert "fraudstream up" in result.stderr
        assert "Traceback" not in result.stderr


def test_a_missing_binary_is_an_error_naming_it(tmp_path: Path) -> None:
    spec = ServiceSpec(
        name="broker", argv=[str(tmp_path / "no-such-tansu")], ports=[], health_url="tcp://127.0.0.1:1", address=""
    )
    with pytest.raises(StackError, match="no-such-tansu"):
        start(spec, tmp_path)


def test_a_killed_owner_takes_its_stack_with_it(tmp_path: Path) -> None:
    """A stack started from Python (tests, notebooks) dies with its process, even a kill -9 of it."""
    script = (
        "import json, sys, time\n"
        "from stack.embedded import EmbeddedStack\n"
        f"stack = EmbeddedStack.on_free_ports({str(tmp_path)!r}, ephemeral=True, services=('objectstore', 'broker')).start()\n"
        "print(json.dumps([s.pid for s in stack.running.values()]), flush=True)\n"
        "time.sleep(600)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pids = json.loads(owner.stdout.readline())
    assert pids and all(pid_alive(pid) for pid in pids)
    owner.kill()
    owner.wait()
    deadline = time.monotonic() + 90
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(pid_alive(pid) for pid in pids), "services outlived the process that started them"


def test_a_stack_is_found_from_anywhere_and_down_stops_its_workers(
    data_dir: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Items 1-3 of issue 16: `status` and `up` from another directory find the running stack; `fraudstream
    worker` picks free web ports and registers its workers; `down` stops them; `up` says it did not restart them."""
    from models.baseline import LogisticBaseline
    from models.datasets import GeneratedSource
    from models.training import train

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    started = fraudstream("up", "--data-dir", str(data_dir), "--ephemeral", env=cli_env).stdout
    assert "workers: none running" in started
    status = fraudstream("status", env=cli_env, cwd=elsewhere)
    assert f"stack in {data_dir}" in status.stdout
    again = fraudstream("up", env=cli_env, cwd=elsewhere)
    assert f"already running in {data_dir}" in again.stdout
    clash = fraudstream("up", "--data-dir", str(tmp_path / "other"), env=cli_env, cwd=elsewhere, check=False)
    assert clash.returncode == 1 and "Traceback" not in clash.stderr
    assert f"the fraudstream stack in {data_dir} runs there" in clash.stderr

    model = train(GeneratedSource(2_000, seed=1), LogisticBaseline(), output_dir=tmp_path / "model").output_dir
    first = int(cli_env["FRAUDSTREAM_WEB_PORT"])  # the stack's own worker port: reserved for `demo`'s worker
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", first + 1))
        squatter.listen()
        busy = fraudstream("worker", "--web-port", str(first + 1), env=cli_env, cwd=elsewhere, check=False)
        assert busy.returncode == 1 and len(busy.stderr.strip().splitlines()) == 1
        assert f"port {first + 1}" in busy.stderr and "already in use by" in busy.stderr
        log = tmp_path / "worker.log"
        command = subprocess.Popen(
            [sys.executable, "-m", "fraudstream.cli", "worker", "--processes", "2", "--model-dir", str(model)],
            env={**os.environ, **cli_env}, cwd=elsewhere, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 300
            while "worker 2/2" not in log.read_text(errors="replace"):
                assert command.poll() is None, log.read_text(errors="replace")[-3000:]
                assert time.monotonic() < deadline, "the workers did not start"
                time.sleep(0.5)
            lines = [line for line in log.read_text().splitlines() if line.startswith("worker ")]
            ports = [int(line.rsplit(":", 1)[1].split("/")[0]) for line in lines]
            pids = [int(line.split("pid ")[1].split(",")[0]) for line in lines]
            assert first not in ports and first + 1 not in ports
            assert all(listens_on(pid, port) for pid, port in zip(pids, ports))
            listed = fraudstream("status", env=cli_env, cwd=elsewhere).stdout
            assert all(f"worker-{port}" in listed for port in ports)
            stack_pids = recorded_pids(data_dir)
            stopped = fraudstream("down", env=cli_env, cwd=elsewhere).stdout
            assert "2 worker(s)" in stopped
            assert not any(pid_alive(pid) for pid in pids + stack_pids), "down left a process running"
            assert command.wait(60) == 0, log.read_text(errors="replace")[-3000:]
        finally:
            if command.poll() is None:
                command.kill()
    restarted = fraudstream("up", "--data-dir", str(data_dir), "--ephemeral", env=cli_env).stdout
    assert "workers: not restarted; 2 ran before `fraudstream down`" in restarted
    fraudstream("down", "--data-dir", str(data_dir), env=cli_env)
