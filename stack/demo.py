"""`fraudstream demo`: the main job on the embedded stack, README command 1.

For now it brings the stack up, replays payments into the source topic and shows that they
arrived; later stages (KSQL preprocessing, scoring, the lake) join it as they land.
"""

from __future__ import annotations

from pathlib import Path

import click
from confluent_kafka import Consumer, TopicPartition

from stack.embedded import EmbeddedStack
from stack.generate import generate_payments
from stack.kafka import consumer_config, end_offsets
from stack.payments import SOURCE_TOPIC
from stack.produce import run_with_progress
from stack.supervisor import StackError
from stack.terminal import make_console

console = make_console()


@click.command("demo")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".fraudstream"), show_default=True)
@click.option("--file", "payments_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Replay this CSV (Kaggle or extended layout) instead of generated payments.")  # fmt: skip
@click.option("-n", "--count", type=click.IntRange(min=1), default=10_000, show_default=True, help="Generated payments to replay.")
@click.option("--ephemeral", is_flag=True, help="Keep the broker's data in memory.")
def demo_command(data_dir: Path, payments_file: Path | None, count: int, ephemeral: bool) -> None:
    """Start the embedded stack, replay payments into creditcardfraud_source and show that they arrived."""
    from stack.cli import start_stack  # the CLI owns how a stack is found or created

    stack: EmbeddedStack = start_stack(data_dir, ephemeral)
    bootstrap = stack.addresses.bootstrap_servers
    before = _topic_size(bootstrap)
    source = payments_file if payments_file is not None else generate_payments(count, seed=0)
    summary = run_with_progress(source, total=None if payments_file else count, quiet=False, bootstrap_servers=bootstrap)
    after = _topic_size(bootstrap)
    console.print(f"[bold]{SOURCE_TOPIC}[/] now holds {after:,} records ({after - before:,} new; {summary.acknowledged:,} acknowledged)")
    sample = _last_record(bootstrap)
    if sample is not None:
        console.print(f"latest record: key={sample[0]} value={sample[1][:120]}...")
    console.print(f"the stack stays up: `fraudstream status --data-dir {data_dir}`, `fraudstream down --data-dir {data_dir}`")


def _topic_size(bootstrap: str) -> int:
    try:
        return sum(end_offsets(bootstrap, SOURCE_TOPIC).values())
    except LookupError:
        return 0


def _last_record(bootstrap: str) -> tuple[str, str] | None:
    """The newest record of partition 0, read back the way a consumer would."""
    end = end_offsets(bootstrap, SOURCE_TOPIC).get(0, 0)
    if end == 0:
        return None
    consumer = Consumer(consumer_config(bootstrap, "fraudstream-demo", enable_auto_commit=False))
    try:
        consumer.assign([TopicPartition(SOURCE_TOPIC, 0, end - 1)])
        message = consumer.poll(10)
        if message is None or message.error():
            raise StackError(f"could not read back {SOURCE_TOPIC}[0]@{end - 1}")
        return (message.key() or b"").decode(), (message.value() or b"").decode()
    finally:
        consumer.close()
