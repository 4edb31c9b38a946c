"""Start the ksqlDB-compatible server as a child process against the session's embedded stack."""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from fraudstream.config import Addresses
from fraudstream.topics import SCORES_TOPIC
from producers.generate import generate_payments
from producers.payments import Payment, frame_payments
from stack import supervisor
from stack.ksqldb.formats import InMemorySchemaRegistry
from stack.supervisor import RunningService, ServiceSpec
from streams.records import SCORE_SCHEMA

KSQL_DIR = Path(__file__).resolve().parents[1] / "ksql"


def server_spec(addresses: Addresses, port: int, service_id: str = "default_") -> ServiceSpec:
    url = f"http://127.0.0.1:{port}"
    argv = [
        sys.executable,
        "-m",
        "stack.ksqldb",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--bootstrap-servers",
        addresses.bootstrap_servers,
        "--schema-registry-url",
        addresses.schema_registry_url,
        "--service-id",
        service_id,
    ]
    return ServiceSpec(
        name=f"ksqldb-{port}", argv=argv, ports=[port], health_url=f"{url}/healthcheck", address=url, start_timeout=90.0
    )


@contextmanager
def running_server(
    addresses: Addresses, log_dir: Path, port: int | None = None, service_id: str | None = None
) -> Iterator[RunningService]:
    """A server of its own `ksql.service.id` (a fresh one by default): it starts with an empty command topic,
    not replaying every statement that earlier tests ran on the session stack."""
    service_id = service_id or f"t{uuid.uuid4().hex[:8]}_"
    service = supervisor.start(server_spec(addresses, port or supervisor.free_port(), service_id), log_dir)
    try:
        yield service
    finally:
        supervisor.stop(service)


def service_id_of(server: RunningService) -> str:
    """The server's `ksql.service.id`, as its /info says: it names the processing log and the query groups."""
    return httpx.get(f"{server.address}/info").json()["KsqlServerInfo"]["ksqlServiceId"]


def registry_with_scores() -> InMemorySchemaRegistry:
    """An in-memory Schema Registry holding the workers' scores schema, as the stack's does from the start
    (ksql/090-live-quality.sql infers the scores' columns from it)."""
    registry = InMemorySchemaRegistry()
    registry.register(f"{SCORES_TOPIC}-value", SCORE_SCHEMA)
    return registry


def prefixed_statements(target: Path, prefix: str, only: tuple[str, ...] | None = None) -> Path:
    """The project's ksql/*.sql (or the files whose names start with one of `only`) with every creditcardfraud_
    name (streams and topics) prefixed, so that a test runs the real statements without touching topics other
    tests or a user's stack use."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(KSQL_DIR.glob("*.sql")):
        if only is not None and not path.name.startswith(only):
            continue
        text = re.sub("creditcardfraud_", f"{prefix}_creditcardfraud_", path.read_text(), flags=re.IGNORECASE)
        (target / path.name).write_text(text)
    return target


def labelled_payments(n: int, seed: int = 7) -> list[Payment]:
    return list(frame_payments(generate_payments(n, seed=seed)))


def read_avro(addresses: Addresses, topic: str, want: int, timeout: float = 60.0) -> list[tuple[str, dict]]:
    """(key, value) of the first `want` records of `topic`, values through confluent-kafka's AvroDeserializer."""
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": addresses.schema_registry_url}))
    consumer = Consumer(
        {
            "bootstrap.servers": addresses.bootstrap_servers,
            "group.id": f"read-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    out: list[tuple[str, dict]] = []
    try:
        while len(out) < want:
            message = consumer.poll(timeout)
            assert message is not None, f"{len(out)} of {want} records in {topic}"
            if message.error() is None:
                value = deserializer(message.value(), SerializationContext(topic, MessageField.VALUE))
                out.append((message.key().decode(), value))
    finally:
        consumer.close()
    return out
