"""`fraudstream connect apply` against the embedded worker: created, then unchanged, then updated."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from connectors.apply import DEFAULT_DIR, connect_apply_command
from connectors.client import ConnectClient
from stack import supervisor
from stack.connect.process import connect_spec
from stack.embedded import EmbeddedStack


@pytest.fixture(scope="module")
def connect_url(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    spec = connect_spec(stack.addresses, supervisor.free_port(), storage_prefix=f"apply-{uuid.uuid4().hex[:8]}-")
    running = supervisor.start(spec, tmp_path_factory.mktemp("apply-logs"))
    try:
        yield spec.address
    finally:
        supervisor.stop(running)


@pytest.fixture
def configs(tmp_path: Path, topic_name: str) -> Path:
    """The shipped connector files, renamed onto this test's topics so that nothing else is sunk."""
    for path in sorted(DEFAULT_DIR.glob("*.json")):
        document = json.loads(path.read_text())
        document["name"] = f"{topic_name}-{document['name']}"
        document["config"]["topics"] = f"{topic_name}-{document['config']['topics']}"
        (tmp_path / path.name).write_text(json.dumps(document))
    return tmp_path


def apply(directory: Path, url: str) -> tuple[int, str]:
    result = CliRunner().invoke(connect_apply_command, [str(directory), "--url", url])
    return result.exit_code, result.output


def test_apply_is_idempotent(connect_url: str, configs: Path, topic_name: str) -> None:
    names = sorted(json.loads(path.read_text())["name"] for path in configs.glob("*.json"))
    code, output = apply(configs, connect_url)
    assert code == 0, output
    assert sorted(output.splitlines()) == sorted(f"{name}: created" for name in names)

    code, output = apply(configs, connect_url)
    assert code == 0 and sorted(output.splitlines()) == sorted(f"{name}: unchanged" for name in names)

    first = sorted(configs.glob("*.json"))[0]
    document = json.loads(first.read_text())
    document["config"]["flush.size"] = "500"
    first.write_text(json.dumps(document))
    code, output = apply(configs, connect_url)
    assert code == 0 and f"{document['name']}: updated" in output.splitlines()
    client = ConnectClient(connect_url)
    try:
        assert client.config(document["name"])["flush.size"] == "500"
        assert client.config(document["name"])["s3.bucket.name"] == "${env:S3_BUCKET}"
        status = client.status(document["name"])
        assert status["connector"]["state"] == "RUNNING", status
    finally:
        client.close()


def test_apply_reports_bad_files_and_refusals_in_one_line(connect_url: str, tmp_path: Path, topic_name: str) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    code, output = apply(tmp_path, connect_url)
    assert code == 1 and "broken.json" in output and "Traceback" not in output

    (tmp_path / "broken.json").write_text(
        json.dumps(
            {
                "name": topic_name,
                "config": {
                    "connector.class": "io.confluent.connect.s3.S3SinkConnector",
                    "topics": topic_name,
                    "flush.size": "zero",
                },
            }
        )
    )
    code, output = apply(tmp_path, connect_url)
    assert code == 1 and "flush.size" in output and len(output.strip().splitlines()) == 1

    code, output = apply(tmp_path, "http://127.0.0.1:9")
    assert code == 1 and "cannot reach Connect" in output
