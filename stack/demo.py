"""`fraudstream demo`: the main job on the embedded stack, README command 1.

It brings the stack up, applies the `ksql/` preprocessing and the `connectors/` S3 sinks over REST
(as production does), replays payments into the source topic, and shows them coming out of the
preprocessed Avro stream, read the way a downstream consumer would, and landing in the lake.
Scoring joins it when the stream workers land.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from rich.table import Table

from connectors.apply import apply_dir
from connectors.lake import list_objects
from stack.config import Addresses
from stack.embedded import WORKER
from stack.generate import generate_payments
from stack.kafka import consumer_config, end_offsets
from stack.ksqldb.apply import KsqlRest, apply_directory
from stack.payments import SOURCE_TOPIC
from stack.produce import run_with_progress
from stack.supervisor import StackError
from stack.terminal import make_console

console = make_console()

#: The preprocessing's output, as `ksql/020-preprocessed.sql` names it, and the workers' output.
PREPROCESSED_TOPIC = "creditcardfraud_preprocessed_avro"
SCORES_TOPIC = "fraud-scores"

#: The model the workers score with (streams/settings.py's default).
MODEL_NAME = "fraud"


@click.command("demo")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".fraudstream"), show_default=True)
@click.option("--file", "payments_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Replay this CSV (Kaggle or extended layout) instead of generated payments.")  # fmt: skip
@click.option("-n", "--count", type=click.IntRange(min=1), default=10_000, show_default=True, help="Generated payments to replay.")
@click.option("--ksql-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path("ksql"), show_default=True)
@click.option("--connectors-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path("connectors"),
              show_default=True)  # fmt: skip
@click.option("--ephemeral", is_flag=True, help="Keep the broker's data in memory.")
def demo_command(data_dir: Path, payments_file: Path | None, count: int, ksql_dir: Path, connectors_dir: Path, ephemeral: bool) -> None:
    """The whole pipeline: stack up, ksql/ and connectors/ applied, a model, a worker, payments replayed and scored."""
    from stack.cli import start_stack  # the CLI owns how a stack is found or created

    stack = start_stack(data_dir, ephemeral)
    addresses = stack.addresses
    _apply(addresses, ksql_dir, connectors_dir)
    _ensure_production_model(addresses)
    if WORKER not in stack.running or not stack.running[WORKER].healthy():
        console.print("starting a stream worker (Faust, scoring with the production model)...")
        stack.start_service(WORKER)
    before = _size(addresses.bootstrap_servers, PREPROCESSED_TOPIC)
    scored_before = _size(addresses.bootstrap_servers, SCORES_TOPIC)
    source = payments_file if payments_file is not None else generate_payments(count, seed=0)
    summary = run_with_progress(source, total=None if payments_file else count, quiet=False, bootstrap_servers=addresses.bootstrap_servers)
    arrived = _wait_for(addresses.bootstrap_servers, PREPROCESSED_TOPIC, before + summary.acknowledged)
    console.print(
        f"[bold]{PREPROCESSED_TOPIC}[/]: {arrived - before:,} of {summary.acknowledged:,} payments preprocessed "
        f"(unlabelled ones are left out by the statement's WHERE CLASS IS NOT NULL)"
    )
    scored = _wait_for(addresses.bootstrap_servers, SCORES_TOPIC, scored_before + arrived - before, quiet_seconds=30.0)
    console.print(f"[bold]{SCORES_TOPIC}[/]: {scored - scored_before:,} payments scored")
    _show_newest(addresses, PREPROCESSED_TOPIC, ("TIME", "V1", "V2", "AMOUNT", "CLASS"))
    _show_newest(addresses, SCORES_TOPIC, ("score", "threshold", "is_fraud", "model_name", "model_version"))
    _show_lake(addresses, arrived)
    console.print(f"worker metrics: {stack.running[WORKER].address}/metrics; score on demand: POST {stack.running[WORKER].address}/score")
    console.print(f"the stack stays up: `fraudstream status --data-dir {data_dir}`, `fraudstream down --data-dir {data_dir}`")


def _ensure_production_model(addresses: Addresses) -> None:
    """Train, register and promote a first model when the registry has no production version yet."""
    from models.autoencoder import Autoencoder
    from models.datasets import GeneratedSource
    from models.registry import ModelRegistry, RegistryError
    from models.training import train

    registry = ModelRegistry.from_addresses(addresses)
    try:
        version = registry.version(MODEL_NAME)
        console.print(f"model: {MODEL_NAME} version {version['version']} is in production")
        return
    except RegistryError:
        pass
    console.print(f"model: no production {MODEL_NAME!r} yet; training a first autoencoder on generated payments...")
    with tempfile.TemporaryDirectory(prefix="fraudstream-demo-") as output_dir:
        result = train(GeneratedSource(20_000, seed=0, fraud_rate=0.01), Autoencoder(epochs=5), output_dir=output_dir)
        version = registry.register(MODEL_NAME, result.output_dir)["version"]
    registry.promote(MODEL_NAME, version)
    console.print(f"model: {MODEL_NAME} version {version} promoted (test ROC-AUC {result.metrics.roc_auc:.4f})")


def _apply(addresses: Addresses, ksql_dir: Path, connectors_dir: Path) -> None:
    outcomes = apply_directory(KsqlRest(addresses.ksqldb_url), ksql_dir)
    errors = [o for o in outcomes if o.status == "error"]
    if errors:
        raise click.ClickException(f"{errors[0].file}: {errors[0].detail.splitlines()[0]}")
    console.print("ksql/: " + ", ".join(f"{o.statement} {o.status}" for o in outcomes))
    connectors = apply_dir(addresses.connect_url, connectors_dir)
    console.print("connectors/: " + ", ".join(f"{name} {outcome}" for name, outcome in connectors))


def _show_lake(addresses: Addresses, records: int, flush_size: int = 1000, quiet_seconds: float = 20.0) -> None:
    """Wait for the S3 sink to land every full file of the preprocessed topic (flush.size records each), then list them."""
    expected = records // flush_size  # at least; partial files land at the next scheduled rotation
    objects, changed = list_objects(addresses.bucket, PREPROCESSED_TOPIC, endpoint_url=addresses.s3_endpoint_url), time.monotonic()
    while len(objects) < expected and time.monotonic() - changed < quiet_seconds:
        time.sleep(1)
        now = list_objects(addresses.bucket, PREPROCESSED_TOPIC, endpoint_url=addresses.s3_endpoint_url)
        if len(now) != len(objects):
            objects, changed = now, time.monotonic()
    console.print(
        f"lake: {len(objects)} Avro objects of {PREPROCESSED_TOPIC} in s3://{addresses.bucket}/topics/ so far "
        f"({flush_size:,} records each; the rest lands at the sink's next scheduled rotation, within a minute)"
    )
    for obj in objects[:3]:
        console.print(f"  {obj.key}")


def _size(bootstrap: str, topic: str) -> int:
    try:
        return sum(end_offsets(bootstrap, topic).values())
    except LookupError:
        return 0


def _wait_for(bootstrap: str, topic: str, expected: int, quiet_seconds: float = 10.0) -> int:
    """Wait until `topic` holds `expected` records, or stops growing for `quiet_seconds`; return its size."""
    size, changed = _size(bootstrap, topic), time.monotonic()
    while size < expected and time.monotonic() - changed < quiet_seconds:
        time.sleep(0.5)
        now = _size(bootstrap, topic)
        if now != size:
            size, changed = now, time.monotonic()
    return size


def _show_newest(addresses: Addresses, topic: str, columns: tuple[str, ...], rows: int = 5) -> None:
    """The newest records of partition 0 of `topic`, decoded with confluent-kafka's AvroDeserializer."""
    end = end_offsets(addresses.bootstrap_servers, topic).get(0, 0)
    if end == 0:
        return
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": addresses.schema_registry_url}))
    consumer = Consumer(consumer_config(addresses.bootstrap_servers, "fraudstream-demo", enable_auto_commit=False))
    table = Table("key", *columns, title=f"{topic}, newest records")
    try:
        consumer.assign([TopicPartition(topic, 0, max(0, end - rows))])
        for _ in range(min(rows, end)):
            message = consumer.poll(10)
            if message is None or message.error():
                raise StackError(f"could not read back {topic}[0]")
            value = deserialize(message.value(), SerializationContext(topic, MessageField.VALUE))
            cells = (f"{value[c]:.4g}" if isinstance(value[c], float) else str(value[c]) for c in columns)
            table.add_row((message.key() or b"").decode(), *cells)
    finally:
        consumer.close()
    console.print(table)
