"""Replay card payments into Kafka: `fraudstream produce FILE`.

`replay()` streams a file (or any iterable of payments) line by line, so the full Kaggle file
never sits in memory. Every line ends up counted: sent and acknowledged by the broker, or rejected
with its line number and reason; rejected lines also go to `<topic>-dlq` with that reason in the
record headers, so that nothing is lost.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

import click
import pandas as pd
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from fraudstream.config import Addresses
from fraudstream.kafka import ensure_topic, producer_config
from fraudstream.options import address_option
from fraudstream.topics import DLQ_SUFFIX, LABELS_TOPIC, SOURCE_TOPIC
from producers.labels import DEFAULT_LABEL_DELAY, Duration, Label, PendingLabels
from producers.payments import (
    DLQ_FILE_HEADER,
    DLQ_LINE_HEADER,
    DLQ_REASON_HEADER,
    DLQ_TRUNCATED_HEADER,
    Payment,
    PaymentFileError,
    Rejected,
    ValueFormat,
    frame_payments,
    new_run,
    raw_bytes,
    read_payments,
    sent_now,
)

logger = logging.getLogger(__name__)

DEFAULT_PARTITIONS = 4
#: How many rejected lines a summary keeps (all of them are logged and dead-lettered).
KEPT_REJECTIONS = 100
#: Dead letters keep at most this much of a rejected line (records are limited to ~1 MB).
DEAD_LETTER_MAX_BYTES = 256 * 1024
#: Progress is reported every this many lines (and at every rejected line).
PROGRESS_EVERY = 200
#: Delivery errors after which the replay sends the record again. A Kafka broker whose log storage fails
#: answers KAFKA_STORAGE_ERROR, which the client retries by itself; the embedded broker answers
#: UNKNOWN_SERVER_ERROR while its object store is down, which clients give up on at once.
RESENT_ERRORS = frozenset({KafkaError.UNKNOWN})
#: How long after its first send a record is still sent again (Kafka's `delivery.timeout.ms`: an object
#: store restarting takes tens of seconds), the first pause before a resend (it doubles), the longest pause.
RESEND_SECONDS, RESEND_BACKOFF_SECONDS, RESEND_BACKOFF_MAX_SECONDS = 120.0, 0.5, 5.0
#: How long to wait for the broker to answer before calling it unreachable.
CONNECT_TIMEOUT = 5.0


#: What replay() reads: a CSV path (`-` for stdin), payments (or rejected lines), or an extended-layout frame.
ReplaySource = str | Path | Iterable[Payment | Rejected] | pd.DataFrame


class BrokerUnavailable(ConnectionError):
    """The broker did not answer; the message names its address."""


@dataclass
class ReplaySummary:
    """What happened to every line read: sent, rejected as malformed, or refused by the producer (in `failed`).

    Of those sent, each is acknowledged by the broker or failed. After the first failure the replay
    stops reading: a broker that refuses or is gone would only make it lose more.
    """

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
    #: Sends again of records the broker failed with an error it recovers from (RESENT_ERRORS); each such
    #: record may be stored twice (the broker may have stored it before failing), as with any retry.
    resent: int = 0
    #: Producers replaced after the broker fenced them (see `Sender`).
    producers_replaced: int = 0
    #: Characters of the input consumed so far (for a progress bar over a file's size).
    position: int = 0
    interrupted: bool = False
    #: Labels of sent payments written to the labels topic, and how many the broker acknowledged.
    labels_sent: int = 0
    labels_acknowledged: int = 0
    #: Labels not sent because the replay was interrupted before they became known.
    labels_pending: int = 0
    #: The tag ending every payment id of a live replay (None: ids as in the source).
    run: str | None = None

    @property
    def ok(self) -> bool:
        return (
            self.failed == 0
            and self.acknowledged == self.sent
            and self.labels_acknowledged == self.labels_sent
            and not self.interrupted
        )


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
            if self.tokens >= 1.0 - 1e-9:  # tolerate rounding: a clock that adds up tenths never reaches 1.0 exactly
                self.tokens = max(0.0, self.tokens - 1.0)
                return
            self._wait((1.0 - self.tokens) / self.rate)


class _DebugLog(logging.LoggerAdapter):
    """librdkafka's own log, demoted to DEBUG: it repeats a connection failure many times a second,
    and every failure that matters already reaches the user as BrokerUnavailable or a delivery error."""

    def log(self, level: int, msg: object, *args: object, **kwargs: object) -> None:
        super().log(logging.DEBUG, msg, *args, **kwargs)  # type: ignore[arg-type]


RDKAFKA_LOG = _DebugLog(logging.getLogger(f"{__name__}.rdkafka"), {})


def existing_topics(producer: Producer, bootstrap_servers: str) -> set[str]:
    """The broker's topics; raises BrokerUnavailable (naming the address) if it does not answer."""
    try:
        metadata = producer.list_topics(timeout=CONNECT_TIMEOUT)
    except KafkaException as error:
        raise BrokerUnavailable(f"cannot reach Kafka at {bootstrap_servers}: {error.args[0].str()}") from None
    return {name for name, topic in metadata.topics.items() if topic.error is None}


def create_topic(bootstrap_servers: str, topic: str, partitions: int = DEFAULT_PARTITIONS) -> None:
    """Create `topic`; one that already exists (say, created meanwhile by another producer) is fine."""
    ensure_topic(bootstrap_servers, topic, partitions, timeout=CONNECT_TIMEOUT)


Delivery = Callable[[KafkaError | None, Message], None]


class Sender:
    """The replay's producer, kept sending through a broker's failures it recovers from.

    A record the broker failed with one of RESENT_ERRORS is sent again after a pause, with the same key,
    headers and timestamp (a delivery report carries neither of the last two, so each send keeps its own
    arguments). After such an error librdkafka's idempotent producer bumps its epoch locally (KIP-360), which
    the embedded broker does not know and answers with PRODUCER_FENCED, fatal to that producer: then a new
    producer (a new producer id) takes over, and the fenced records are sent again.
    """

    def __init__(self, config: dict[str, object], summary: ReplaySummary) -> None:
        self.config = config
        self.producer = Producer(config)
        self.summary = summary
        self._waiting: list[tuple[float, int, tuple]] = []  # (due, order, the arguments of produce)
        self._order = itertools.count()
        self._fenced = False

    def __len__(self) -> int:
        """Records waiting to be sent again."""
        return len(self._waiting)

    def poll(self, timeout: float) -> None:
        self.producer.poll(timeout)

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]] | None,
        on_delivery: Delivery,
        timestamp_ms: int = 0,
        attempt: int = 0,
        deadline: float | None = None,
    ) -> None:
        """Produce as `_produce` does; `on_delivery` hears of the last attempt only, at most RESEND_SECONDS on."""
        producer = self.producer
        deadline = time.monotonic() + RESEND_SECONDS if deadline is None else deadline

        def delivered(error: KafkaError | None, message: Message) -> None:
            fenced = error is not None and (error.code() == KafkaError.PRODUCER_FENCED or error.fatal())
            pause = min(RESEND_BACKOFF_SECONDS * 2**attempt, RESEND_BACKOFF_MAX_SECONDS)
            due = time.monotonic() + pause
            if error is not None and (fenced or error.code() in RESENT_ERRORS) and due < deadline:
                self._fenced |= fenced and producer is self.producer  # a replaced one's records fail too
                logger.debug("%s: %s; sending the record again in %.1f s", topic, error.str(), pause)
                again = (topic, key, value, headers, on_delivery, timestamp_ms, attempt + 1, deadline)
                heapq.heappush(self._waiting, (due, next(self._order), again))
            else:
                on_delivery(error, message)

        try:
            _produce(self.producer, topic, key, value, headers, delivered, timestamp_ms)
        except KafkaException as error:
            if not error.args[0].fatal():
                raise
            self._replace()
            _produce(self.producer, topic, key, value, headers, delivered, timestamp_ms)

    def send_due(self) -> None:
        """Send again every record whose pause is over (on a new producer if the broker fenced the old one)."""
        if self._fenced:
            self._replace()
        while self._waiting and self._waiting[0][0] <= time.monotonic():
            _, _, arguments = heapq.heappop(self._waiting)
            self.summary.resent += 1
            self.produce(*arguments)

    def flush(self, timeout: float) -> int:
        """What is still in flight or waiting to be sent again, after sending what is due and waiting."""
        self.send_due()
        return self.producer.flush(timeout) + len(self._waiting)

    def _replace(self) -> None:
        fenced, self.producer, self._fenced = self.producer, Producer(self.config), False
        self.summary.producers_replaced += 1
        logger.warning("the broker fenced the producer: sending again on a new one")
        fenced.flush(CONNECT_TIMEOUT)  # the rest of its records fail too, and wait to be sent again


def replay(
    source: ReplaySource,
    *,
    bootstrap_servers: str | None = None,
    topic: str = SOURCE_TOPIC,
    value_format: ValueFormat | str = ValueFormat.DELIMITED,
    rate: float | None = None,
    limit: int | None = None,
    partitions: int = DEFAULT_PARTITIONS,
    dead_letters: bool = True,
    labels_topic: str | None = LABELS_TOPIC,
    label_delay: timedelta = DEFAULT_LABEL_DELAY,
    on_progress: Callable[[ReplaySummary], None] | None = None,
    live: bool = False,
    run: str | None = None,
) -> ReplaySummary:
    """Send payments to `topic`, keyed by Id, and their labels to `labels_topic` later; return what happened.

    `source` is a file path (`-` for stdin) in either CSV layout, payments already parsed, or a frame
    with the extended layout's columns (such as `generate_payments` returns).
    `limit` caps the payments sent; `rate` paces them (events per second). Rejected lines are
    logged with their line numbers and, with `dead_letters`, written to `<topic>-dlq` with the
    raw line as value and reason, line and file in headers. Ctrl-C stops reading and still waits
    for the broker to acknowledge what was sent (the summary says `interrupted`).

    A payment never carries its label. A labelled payment's label goes to `labels_topic` (None: nowhere)
    once the replay's event time (the latest payment timestamp sent) reaches the payment's time plus
    `label_delay`, stamped with that moment, and before any later payment (so that a statement reading
    both topics in arrival order knows, at each payment, every label known by then); when the source ends,
    the labels still held are sent with their own (later) times, since they will be known then. An interrupted replay sends none of those.

    With `live` (what `fraudstream produce` does unless `--keep-file-time`), each payment is stamped with
    the moment it is sent and its id ends in `-<run>` (`run`, else a new tag), as a new payment would;
    without it the source's timestamps and ids go as they are (a backfill; replaying again repeats the keys).
    """
    bootstrap_servers = bootstrap_servers or Addresses.from_env().bootstrap_servers
    value_format = ValueFormat(value_format)
    dlq_topic = topic + DLQ_SUFFIX
    summary = ReplaySummary(run=(run or new_run()) if live else None)
    sender = Sender(producer_config(bootstrap_servers, logger=RDKAFKA_LOG), summary)
    topics = existing_topics(sender.producer, bootstrap_servers)
    if topic not in topics:
        create_topic(bootstrap_servers, topic, partitions)
    bucket = TokenBucket(rate, wait=sender.poll) if rate else None
    pending = PendingLabels(label_delay)
    clock: datetime | None = None  # the replay's event time: the latest payment timestamp sent
    if labels_topic is not None and labels_topic not in topics:
        create_topic(bootstrap_servers, labels_topic, partitions)

    def delivered(error: KafkaError | None, message: Message) -> None:
        if error is None:
            summary.acknowledged += 1
        else:
            _failed(summary, error, f"payment {(message.key() or b'').decode()!r}")

    def label_delivered(error: KafkaError | None, message: Message) -> None:
        if error is None:
            summary.labels_acknowledged += 1
        else:
            _failed(summary, error, f"label of payment {(message.key() or b'').decode()!r}")

    def send_labels(labels: Iterable[Label]) -> None:
        for label in labels:
            sender.produce(labels_topic, label.key(), label.encode(), None, label_delivered, label.timestamp_ms)
            summary.labels_sent += 1

    def dead_lettered(error: KafkaError | None, message: Message) -> None:
        if error is None:
            summary.dead_lettered += 1
        else:
            _failed(summary, error, f"dead letter of line {dict(message.headers() or [])[DLQ_LINE_HEADER].decode()}")

    with ExitStack() as files:
        items = _items(source, files, summary)
        try:
            for item in items:
                if limit is not None and summary.sent >= limit:
                    break
                if summary.failed:  # the broker refuses or is gone: sending more would only lose more
                    logger.error("stopping after a delivery failure: %s", "; ".join(summary.errors))
                    break
                summary.read += 1
                if isinstance(item, Rejected):
                    summary.rejected += 1
                    if len(summary.rejections) < KEPT_REJECTIONS:
                        summary.rejections.append(item)
                    logger.info("rejected %s", item)
                    if dead_letters:
                        if dlq_topic not in topics:
                            create_topic(bootstrap_servers, dlq_topic, partitions=1)
                            topics.add(dlq_topic)
                        sender.produce(dlq_topic, None, *_dead_letter(item), dead_lettered)
                else:
                    if bucket is not None:
                        bucket.take()
                    if summary.run is not None:
                        item = sent_now(item, summary.run)
                    if labels_topic is not None:  # labels known by this payment's time go out before it
                        send_labels(pending.due(item.timestamp))
                    try:
                        sender.produce(topic, item.key(), item.encode(value_format), None, delivered)
                    except KafkaException as error:  # refused before sending, e.g. larger than message.max.bytes
                        _failed(summary, error.args[0], f"payment {item.id!r}")
                        continue
                    summary.sent += 1
                    if labels_topic is not None:
                        pending.hold(item)
                        clock = item.timestamp if clock is None else max(clock, item.timestamp)
                        send_labels(pending.due(clock))
                sender.poll(0)
                sender.send_due()
                if on_progress is not None and (summary.read % PROGRESS_EVERY == 0 or isinstance(item, Rejected)):
                    on_progress(summary)
            send_labels(pending.drain())
        except KeyboardInterrupt:
            summary.interrupted = True
            summary.labels_pending = len(pending)
            logger.warning("interrupted: waiting for %d records in flight", len(sender.producer) + len(sender))
        while sender.flush(1.0) > 0:
            if on_progress is not None:
                on_progress(summary)
    if on_progress is not None:
        on_progress(summary)
    logger.info(
        "replayed into %s: read %d, sent %d, acknowledged %d, rejected %d",
        topic, summary.read, summary.sent, summary.acknowledged, summary.rejected,
    )  # fmt: skip
    return summary


def _failed(summary: ReplaySummary, error: KafkaError, what: str) -> None:
    summary.failed += 1
    summary.errors[error.str()] = summary.errors.get(error.str(), 0) + 1
    logger.error("%s not delivered: %s", what, error.str())


def _items(source: ReplaySource, files: ExitStack, summary: ReplaySummary) -> Iterator[Payment | Rejected]:
    if isinstance(source, pd.DataFrame):
        return frame_payments(source)
    if not isinstance(source, (str, Path)):
        return iter(source)
    name = str(source)
    if name == "-":
        sys.stdin.reconfigure(encoding="utf-8", errors="surrogateescape")
        stream: TextIO = sys.stdin
    else:  # a line that is not UTF-8 is rejected on its own, not the whole file
        stream = files.enter_context(open(name, encoding="utf-8", errors="surrogateescape", newline=""))
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
    headers: list[tuple[str, bytes]] | None,
    on_delivery: Callable[[KafkaError | None, Message], None],
    timestamp_ms: int = 0,
) -> None:
    """Produce (timestamp 0: the producer's clock), waiting for room when the local queue is full rather than failing."""
    while True:
        try:
            producer.produce(
                topic, value=value, key=key, headers=headers, on_delivery=on_delivery, timestamp=timestamp_ms
            )
            return
        except BufferError:
            producer.poll(0.1)


def _dead_letter(rejected: Rejected) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The raw line as value (cut to fit a record; then a header gives its full length) and why, in headers."""
    value = raw_bytes(rejected.text)
    headers = [
        (DLQ_REASON_HEADER, rejected.reason.encode()),
        (DLQ_LINE_HEADER, str(rejected.line).encode()),
        (DLQ_FILE_HEADER, rejected.source.encode()),
    ]
    if len(value) > DEAD_LETTER_MAX_BYTES:
        headers.append((DLQ_TRUNCATED_HEADER, str(len(value)).encode()))
        value = value[:DEAD_LETTER_MAX_BYTES]
    return value, headers


# --- CLI -------------------------------------------------------------------------------------------


def run_with_progress(source: ReplaySource, *, total: int | None, quiet: bool, **options: object) -> ReplaySummary:
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
    labels_topic = options.get("labels_topic", LABELS_TOPIC)
    click.echo(
        f"{topic}: read {summary.read:,}, sent {summary.sent:,}, acknowledged {summary.acknowledged:,}, "
        f"rejected {summary.rejected:,}"
        + (f" (dead-lettered {summary.dead_lettered:,} to {topic}{DLQ_SUFFIX})" if summary.rejected else "")
        + (f", failed {summary.failed:,} ({'; '.join(summary.errors)}; stopped there)" if summary.failed else "")
        + (f", sent again {summary.resent:,} (the broker failed them and recovered)" if summary.resent else "")
        + (" (interrupted)" if summary.interrupted else "")
    )
    if summary.run is not None and summary.sent:
        click.echo(
            f"each payment stamped when sent, its id ending in -{summary.run} (this run); "
            "--keep-file-time sends the file's own times and ids"
        )
    if summary.labels_sent or summary.labels_pending:
        click.echo(
            f"{labels_topic}: labels sent {summary.labels_sent:,}, acknowledged {summary.labels_acknowledged:,}"
            + (
                f", {summary.labels_pending:,} not yet known when interrupted (not sent)"
                if summary.labels_pending
                else ""
            )
        )
    if not summary.ok:
        raise click.exceptions.Exit(1)
    return summary


def kafka_options(function: Callable) -> Callable:
    """The options produce and generate share for writing to a topic."""
    options = [
        click.option("--topic", default=SOURCE_TOPIC, show_default=True, help="Topic to write payments to."),
        click.option(
            "--format",
            "value_format",
            type=click.Choice([f.value for f in ValueFormat], case_sensitive=False),
            default=ValueFormat.DELIMITED.value,
            show_default=True,
            help="Record value format.",
        ),
        click.option(
            "--rate",
            type=click.FloatRange(min=0, min_open=True),
            help="Events per second [default: as fast as possible].",
        ),
        click.option(
            "--partitions",
            type=click.IntRange(min=1),
            default=DEFAULT_PARTITIONS,
            show_default=True,
            help="Partitions of the topic if it has to be created.",
        ),
        click.option(
            "--labels-topic",
            default=LABELS_TOPIC,
            show_default=True,
            help="Where labels go once known (a payment never carries its label).",
        ),
        click.option(
            "--label-delay",
            type=Duration(),
            default="7d",
            show_default=True,
            help="How long after a payment its label becomes known, in event time (7d, 36h, 30s, 0).",
        ),
        click.option(
            "--keep-file-time",
            is_flag=True,
            help="Send each payment with its own Timestamp and Id (a backfill) [default: stamped when sent, "
            "with an id unique to this run; the file's time stays in Time].",
        ),
        address_option("bootstrap_servers"),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
    ]
    for option in reversed(options):
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
    labels_topic: str,
    label_delay: timedelta,
    keep_file_time: bool,
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
        labels_topic=labels_topic,
        label_delay=label_delay,
        live=not keep_file_time,
    )
