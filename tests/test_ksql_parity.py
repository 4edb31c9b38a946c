"""The notebook path and the production path run the same ksql/ files and produce the same records.

Notebook path: `KSQLAPI(url).ksql(file text)` for each file, as notebooks/01-explore-with-ksql.ipynb does.
Production path: `fraudstream ksql apply DIR` (the click command). Each runs on its own copy of the
topics (every creditcardfraud_ name prefixed), fed the same records into the same partitions; every
output topic must then hold the same keys and decoded values, partition by partition, in order.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from ksqldb_server_helpers import prefixed_statements

from fraudstream.config import Addresses
from fraudstream.kafka import consumer_config, end_offsets, producer_config
from ksql import KSQLAPI
from models.reference import BEHAVIOUR_COLUMNS
from producers.generate import generate_payments
from producers.payments import PAYMENT_COLUMNS
from stack.ksqldb.apply import ksql_group
from stack.ksqldb.kafka_runtime import PARTITIONER

#: Output topic -> how its values are encoded (see ksql/*.sql).
OUTPUTS = {
    "creditcardfraud_preprocessed_avro": "avro",
    "creditcardfraud_anonymised": "json",
    "creditcardfraud_enriched": "json",
}
Record = tuple[bytes | None, Any]


def source_records(n: int) -> list[tuple[bytes, bytes]]:
    """(key, value) of payments (which never carry a label), some fields empty, and one malformed line."""
    frame = generate_payments(n, seed=11, fraud_rate=0.05).astype({"User": object, "Amount": object})
    frame = frame[list(PAYMENT_COLUMNS)]
    frame.loc[frame.index[::5], "User"] = None  # no user: MASK_LEFT of null, IFNULL's default
    frame.loc[frame.index[::7], "Amount"] = None  # no amount: IFNULL's default, a null feature
    records = []
    for row in frame.itertuples(index=False):
        values = ["" if value is None else str(value) for value in row]
        records.append((row.Id.encode(), ",".join(values).encode()))
    records.append((b"bad-1", b"not,a,payment"))
    return records


def produce(addresses: Addresses, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """Partitioned by key as the engine partitions its output (Java's murmur2), so that each output
    partition is fed by one input partition and its order is determined by the input alone."""
    producer = Producer(producer_config(addresses.bootstrap_servers, partitioner=PARTITIONER))
    for key, value in records:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


def wait_for(addresses: Addresses, topic: str, expected: int, timeout: float = 120.0) -> None:
    """Until `topic` holds `expected` records (the persistent queries run in the background)."""
    import time

    deadline = time.monotonic() + timeout
    while (held := sum(end_offsets(addresses.bootstrap_servers, topic).values())) < expected:
        assert time.monotonic() < deadline, f"{topic} holds {held} of {expected} records"
        time.sleep(0.5)


def read_partitions(addresses: Addresses, topic: str, value_format: str) -> dict[int, list[Record]]:
    """Every record of every partition of `topic` up to its end now, values decoded."""
    ends = end_offsets(addresses.bootstrap_servers, topic)
    if value_format == "avro":
        deserializer = AvroDeserializer(SchemaRegistryClient({"url": addresses.schema_registry_url}))
        context = SerializationContext(topic, MessageField.VALUE)

        def decode(value: bytes | None) -> Any:
            return deserializer(value, context)
    else:

        def decode(value: bytes | None) -> Any:
            return None if value is None else json.loads(value)

    consumer = Consumer(
        consumer_config(addresses.bootstrap_servers, f"parity-{uuid.uuid4().hex}", enable_auto_commit=False)
    )
    out: dict[int, list[Record]] = {p: [] for p in ends}
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end > 0])
        pending = {p for p, end in ends.items() if end > 0}
        while pending:
            message = consumer.poll(30)
            assert message is not None, f"no records from {topic} partitions {sorted(pending)}"
            assert message.error() is None, message.error()
            partition = message.partition()
            if message.offset() < ends[partition]:
                out[partition].append((message.key(), decode(message.value())))
            if message.offset() >= ends[partition] - 1:
                pending.discard(partition)
    finally:
        consumer.close()
    return out


def timing_free(partitions: dict[int, list[Record]]) -> dict[int, list[Record]]:
    """Records without the holder's behaviour: those come from a stream-table join with a table that other
    statements build at the same time, so two runs may see it at different moments (ksqlDB promises no
    more; what the join can never see is a later payment, which tests/test_ksqldb_user_history.py holds)."""
    return {
        p: [(key, {k: v for k, v in value.items() if k not in BEHAVIOUR_COLUMNS}) for key, value in records]
        for p, records in partitions.items()
    }


def test_notebook_and_apply_produce_identical_records(stack, tmp_path: Path) -> None:
    addresses = stack.addresses
    run = uuid.uuid4().hex[:8]
    notebook, production = f"pn{run}", f"pa{run}"

    client = KSQLAPI(addresses.ksqldb_url)  # the notebook's way: each file's text, as read
    for path in sorted(prefixed_statements(tmp_path / "notebook", notebook).glob("*.sql")):
        client.ksql(path.read_text())
    result = CliRunner().invoke(
        ksql_group,
        ["--url", addresses.ksqldb_url, "apply", str(prefixed_statements(tmp_path / "production", production))],
    )
    assert result.exit_code == 0, result.output

    records = source_records(300)
    for prefix in (notebook, production):
        produce(addresses, f"{prefix}_creditcardfraud_source", records)
    payments = len(records) - 1  # the malformed line goes to the processing log on both sides
    expected = {  # every payment, on every stream
        "creditcardfraud_preprocessed_avro": payments,
        "creditcardfraud_anonymised": payments,
        "creditcardfraud_enriched": payments,
    }

    for topic, value_format in OUTPUTS.items():
        sides = []
        for prefix in (notebook, production):
            wait_for(addresses, f"{prefix}_{topic}", expected[topic])
            sides.append(read_partitions(addresses, f"{prefix}_{topic}", value_format))
        from_notebook, from_apply = sides
        assert sum(map(len, from_notebook.values())) == expected[topic], topic
        if topic == "creditcardfraud_preprocessed_avro":  # see timing_free
            from_notebook, from_apply = timing_free(from_notebook), timing_free(from_apply)
        assert from_notebook == from_apply, f"{topic} differs between the notebook path and fraudstream ksql apply"

    enriched = [value for part in from_notebook.values() for _, value in part]  # the last topic read: enriched
    assert {"unknown"} <= {value["USER"] for value in enriched}
    assert 0.0 in {value["AMOUNT"] for value in enriched}
