"""Replay card payments into Kafka: `fraudstream produce FILE`.

`replay()` streams a file (or any iterable of payments) line by line, so the full Kaggle file
never sits in memory. Every line ends up counted: sent and acknowledged by the broker, or rejected
with its line number and reason; rejected lines also go to `<topic>-dlq` with that reason in the
record headers, so that nothing is lost.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import click
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import NewTopic
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from stack.config import Addresses
from stack.kafka import admin_client, producer_config
from stack.payments import (
    DLQ_FILE_HEADER,
    DLQ_LINE_HEADER,
    DLQ_REASON_HEADER,
    DLQ_SUFFIX,
    SOURCE_TOPIC,
    Payment,
    PaymentFileError,
    Rejected,
    ValueFormat,
    read_payments,
)

logger = logging.getLogger(__name__)

DEFAULT_PARTITIONS = 4
#: How many rejected lines a summary keeps (all of them are logged and dead-lettered).
KEPT_REJECTIONS = 100
#: How long to wait for the broker to answer before calling it unreachable.
CONNECT_TIMEOUT = 10.0


class BrokerUnavailable(ConnectionError):
    """The broker did not answer; the message names its address."""


@dataclass
class ReplaySummary:
    """What happened to every line: read = sent + rejected (+ lines left when interrupted)."""

    read: int = 0
    sent: int = 0
    acknowledged: int = 0
    failed: int = 0
    rejected: int = 0
    dead_lettered: int = 0
    #: The first KEPT_REJECTIONS rejected lines, for the report.
    rejections: list[Rejected] = field(default_factory=list)
    #: Delivery errors by message (the broker refused or timed out), counted in `failed`.
    errors: dict[str, int] = field(default_factory=dict)
    #: Characters of the input consumed so far (for a progress bar over a file's size).
    position: int = 0
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.acknowledged == self.sent and not self.interrupted


class TokenBucket:
    """Paces events to `rate` per second, allowing bursts of up to a tenth of a second's worth."""

    def __init__(
        self,
        rate: float,
        wait: Callable[[float], object] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.rate = rate
        self.capacity = max(1.0, rate / 10)
        self.tokens = 1.0
        self._wait = wait
        self._clock = clock
        self._last = clock()

    def take(self) -> None:
        """Block (through `wait`, which may return early) until one event may go."""
        while True:
            now = self._clock()
            self.tokens = min(self.capacity, self.tokens + (now - self._last) * self.rate)
            self._last = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return
            self._wait((1.0 - self.tokens) / self.rate)


def ensure_topic(bootstrap_servers: str, topic: str, partitions: int = DEFAULT_PARTITIONS) -> bool:
    """Create `topic` unless it exists; True if it was created. Raises BrokerUnavailable if nobody answers."""
    admin = admin_client(bootstrap_servers)
    try:
        existing = admin.list_topics(timeout=CONNECT_TIMEOUT).topics
    except KafkaException as error:
        raise BrokerUnavailable(f"cannot reach Kafka at {bootstrap_servers}: {error.args[0].str()}") from None
    if topic in existing and existing[topic].error is None:
        return False
    future = admin.create_topics([NewTopic(topic, num_partitions=partitions)], operation_timeout=CONNECT_TIMEOUT)[topic]
    try:
        future.result(timeout=CONNECT_TIMEOUT)
    except KafkaException as error:
        if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise
        return False
    logger.info("created topic %s with %d partitions", topic, partitions)
    return True


def replay(
    source: str | Path | Iterable[Payment | Rejected],
    *,
    bootstrap_servers: str | None = None,
    topic: str = SOURCE_TOPIC,
    value_format: ValueFormat | str = ValueFormat.DELIMITED,
    rate: float | None = None,
    limit: int | None = None,
    partitions: int = DEFAULT_PARTITIONS,
    dead_letters: bool = True,
    on_progress: Callable[[ReplaySummary], None] | None = None,
) -> ReplaySummary:
    """Send payments to `topic`, keyed by Id; return what happened to each line.

    `source` is a file path (`-` for stdin) in either CSV layout, or payments already parsed.
    `limit` caps the payments sent; `rate` paces them (events per second). Rejected lines are
    logged with their line numbers and, with `dead_letters`, written to `<topic>-dlq` with the
    raw line as value and reason, line and file in headers. Ctrl-C stops reading and still waits
    for the broker to acknowledge what was sent (the summary says `interrupted`).
    """
    bootstrap_servers = bootstrap_servers or Addresses.from_env().bootstrap_servers
    value_format = ValueFormat(value_format)
    dlq_topic = topic + DLQ_SUFFIX
    summary = ReplaySummary()
    ensure_topic(bootstrap_servers, topic, partitions)
    producer = Producer(producer_config(bootstrap_servers))
    bucket = TokenBucket(rate, wait=producer.poll) if rate else None
    dlq_ready = False

    def delivered(error: KafkaError | None, message: Message) -> None:
        if error is None:
            summary.acknowledged += 1
        else:
            summary.failed += 1
            summary.errors[error.str()] = summary.errors.get(error.str(), 0) + 1
            logger.error("payment %r not delivered: %s", (message.key() or b"").decode(), error.str())

    def dead_lettered(error: KafkaError | None, message: Message) -> None:
        if error is None:
            summary.dead_lettered += 1
        else:
            logger.error("dead letter not delivered: %s", error.str())

    with ExitStack() as stack:
        items = _items(source, stack, summary)
        try:
            for item in items:
                if limit is not None and summary.sent >= limit:
                    break
                summary.read += 1
                if isinstance(item, Rejected):
                    summary.rejected += 1
                    if len(summary.rejections) < KEPT_REJECTIONS:
                        summary.rejections.append(item)
                    logger.info("rejected %s", item)
                    if dead_letters:
                        if not dlq_ready:
                            ensure_topic(bootstrap_servers, dlq_topic, partitions=1)
                            dlq_ready = True
                        _produce(producer, dlq_topic, None, item.text.encode(), dead_lettered, _dlq_headers(item))
                else:
                    if bucket is not None:
                        bucket.take()
                    _produce(producer, topic, item.key(), item.encode(value_format), delivered)
                    summary.sent += 1
                producer.poll(0)
                if on_progress is not None:
                    on_progress(summary)
        except KeyboardInterrupt:
            summary.interrupted = True
            logger.warning("interrupted: waiting for %d records in flight", len(producer))
        while producer.flush(1.0) > 0:
            if on_progress is not None:
                on_progress(summary)
    if on_progress is not None:
        on_progress(summary)
    logger.info(
        "replayed into %s: read %d, sent %d, acknowledged %d, rejected %d",
        topic, summary.read, summary.sent, summary.acknowledged, summary.rejected,
    )  # fmt: skip
    return summary


def _items(
    source: str | Path | Iterable[Payment | Rejected], stack: ExitStack, summary: ReplaySummary
) -> Iterator[Payment | Rejected]:
    if not isinstance(source, (str, Path)):
        return iter(source)
    name = str(source)
    stream: TextIO = sys.stdin if name == "-" else stack.enter_context(open(name, encoding="utf-8", newline=""))
    return read_payments(_counting(stream, summary), "-" if name == "-" else name)


def _counting(lines: Iterable[str], summary: ReplaySummary) -> Iterator[str]:
    for line in lines:
        summary.position += len(line)
        yield line


def _produce(
    producer: Producer,
    topic: str,
    key: bytes | None,
    value: bytes,
    on_delivery: Callable[[KafkaError | None, Message], None],
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    """Produce, waiting for room when the local queue is full rather than failing."""
    while True:
        try:
            producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.1)


def _dlq_headers(rejected: Rejected) -> list[tuple[str, bytes]]:
    return [
        (DLQ_REASON_HEADER, rejected.reason.encode()),
        (DLQ_LINE_HEADER, str(rejected.line).encode()),
        (DLQ_FILE_HEADER, rejected.source.encode()),
    ]


# --- CLI -------------------------------------------------------------------------------------------


def run_with_progress(
    source: str | Path | Iterable[Payment | Rejected], *, total: int | None, quiet: bool, **options: object
) -> ReplaySummary:
    """replay() behind a rich progress bar (when on a terminal), then the summary; shared by produce and generate."""
    console = Console(stderr=True)
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[counts]}"),
               TimeRemainingColumn()]  # fmt: skip
    if total is not None and not isinstance(source, (str, Path)):
        columns.insert(2, MofNCompleteColumn())
    progress = Progress(*columns, console=console, disable=quiet or not console.is_terminal, transient=False)
    by_size = isinstance(source, (str, Path)) and str(source) != "-"
    task = progress.add_task("producing", total=total, counts="")
    shown_rejections = 0

    def update(summary: ReplaySummary) -> None:
        nonlocal shown_rejections
        for rejected in summary.rejections[shown_rejections:]:
            console.print(f"[yellow]rejected[/] {escape(str(rejected))}", highlight=False)
        shown_rejections = len(summary.rejections)
        progress.update(
            task,
            completed=summary.position if by_size else summary.read,
            counts=f"sent {summary.sent:,} acked {summary.acknowledged:,} rejected {summary.rejected:,}",
        )

    try:
        with progress:
            summary = replay(source, on_progress=update, **options)  # type: ignore[arg-type]
    except (BrokerUnavailable, PaymentFileError) as error:
        raise click.ClickException(str(error)) from None
    except KafkaException as error:
        raise click.ClickException(f"Kafka: {error.args[0].str()}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise click.ClickException(f"cannot read {source}: {error}") from None
    if summary.rejected > len(summary.rejections):
        console.print(f"[yellow]... and {summary.rejected - len(summary.rejections):,} more rejected lines[/]")
    topic = options.get("topic", SOURCE_TOPIC)
    click.echo(
        f"{topic}: read {summary.read:,}, sent {summary.sent:,}, acknowledged {summary.acknowledged:,}, "
        f"rejected {summary.rejected:,}"
        + (f" (dead-lettered {summary.dead_lettered:,} to {topic}{DLQ_SUFFIX})" if summary.rejected else "")
        + (f", failed {summary.failed:,}: {'; '.join(summary.errors)}" if summary.failed else "")
        + (" (interrupted)" if summary.interrupted else "")
    )
    if not summary.ok:
        raise click.exceptions.Exit(1)
    return summary


def kafka_options(function: Callable) -> Callable:
    """The options produce and generate share for writing to a topic."""
    for option in reversed(
        [
            click.option("--topic", default=SOURCE_TOPIC, show_default=True, help="Topic to write payments to."),
            click.option(
                "--format", "value_format", type=click.Choice([f.value for f in ValueFormat], case_sensitive=False),
                default=ValueFormat.DELIMITED.value, show_default=True, help="Record value format.",
            ),
            click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="Events per second (default: as fast as possible)."),
            click.option("--partitions", type=click.IntRange(min=1), default=DEFAULT_PARTITIONS, show_default=True,
                         help="Partitions of the topic if it has to be created."),
            click.option("--bootstrap-servers", envvar="KAFKA_BOOTSTRAP_SERVERS", default=None,
                         help="Kafka address [default: $KAFKA_BOOTSTRAP_SERVERS or the embedded stack's]."),
            click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
        ]
    ):  # fmt: skip
        function = option(function)
    return function


@click.command("produce")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@kafka_options
@click.option("--limit", type=click.IntRange(min=0), help="Send at most this many payments.")
@click.option("--dlq/--no-dlq", default=True, show_default=True, help="Write rejected lines to <topic>-dlq.")
def produce_command(
    file: str,
    topic: str,
    value_format: str,
    rate: float | None,
    partitions: int,
    bootstrap_servers: str | None,
    quiet: bool,
    limit: int | None,
    dlq: bool,
) -> None:
    """Replay card payments from FILE (Kaggle or extended CSV layout; `-` for stdin) into Kafka."""
    total = None if file == "-" else Path(file).stat().st_size
    run_with_progress(
        file,
        total=total,
        quiet=quiet,
        bootstrap_servers=bootstrap_servers,
        topic=topic,
        value_format=value_format,
        rate=rate,
        limit=limit,
        partitions=partitions,
        dead_letters=dlq,
    )
