"""`fraudstream demo`: the main job on the embedded stack, README command 1.

It brings the stack up, applies the `ksql/` preprocessing and the `connectors/` S3 sinks over REST (as
production does), trains and promotes a first model when there is none, starts a stream worker, and
then produces payments in the background (the first N replayed at once, then a steady trickle) while a
live view shows them preprocessed, scored, flagged and dead-lettered, until Ctrl-C or `--duration`.
It leaves the stack up for the notebooks and says where everything is.

`--pipeline handbook` runs the Fraud Detection Handbook's pipeline the same way instead (its statements,
sink, transactions, model and worker: `fraudstream.demo_handbook`).
"""

from __future__ import annotations

import itertools
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

import click
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from rich.table import Table

from connectors.apply import apply_dir
from connectors.lake import list_objects
from fraudstream.config import Addresses
from fraudstream.credentials import schema_registry_conf
from fraudstream.kafka import PROBE_LOGGING, admin_client, consumer_config, end_offsets, topic_ends
from fraudstream.lifecycle import (
    check_prometheus,
    data_dir_option,
    resolve_data_dir,
    secure_option,
    start_prometheus,
    start_stack,
)
from fraudstream.live import PipelineStats, TopicReader, Topics, reader_fetch_wait_ms, topic_size, watch
from fraudstream.terminal import make_console
from fraudstream.topics import (
    DLQ_SUFFIX,
    HANDBOOK_FEATURES_TOPIC,
    HANDBOOK_LABELS_TOPIC,
    HANDBOOK_MODEL,
    HANDBOOK_SCORES_TOPIC,
    HANDBOOK_TRANSACTIONS_TOPIC,
    LABELS_TOPIC,
    PREPROCESSED_TOPIC,
    SCORES_TOPIC,
    USERS_TOPIC,
)
from producers.generate import generate_payments
from producers.handbook import MIN_CUSTOMERS, Transaction
from producers.labels import Duration
from producers.payments import Payment, PaymentFileError, Rejected, frame_payments, new_run, read_payments, tagged
from producers.replay import BrokerUnavailable, ReplaySummary, replay
from producers.users import produce_users
from stack.embedded import WORKER, EmbeddedStack
from stack.ksqldb.apply import KsqlRest, apply_directory
from stack.ksqldb.kafka_runtime import processing_log_topic
from stack.prometheus import DEFAULT_PROMETHEUS_PORT, PROMETHEUS
from stack.supervisor import RunningService, StackError

if TYPE_CHECKING:
    from models.training import TrainingResult

console = make_console()

#: The model the workers score with (streams/settings.py's default).
MODEL_NAME = "fraud"
#: Generated payments are made this many at a time while the demo keeps producing.
CHUNK = 1000


@dataclass(frozen=True)
class Pipeline:
    """What the demo runs: a pipeline's statements and sinks, its topics, its labels and their delay, its model."""

    name: str
    ksql_dir: Path
    connectors_dir: Path
    topics: Topics
    labels_topic: str
    model: str
    label_delay: str
    """The labels' delay by default, in event time (the Handbook's is a week)."""
    noun: str
    newest: tuple[str, ...]
    """The served columns shown at the end, beside the key."""
    lake: tuple[str, ...]
    """The topics the pipeline's S3 sinks land."""


FLAGSHIP = Pipeline(
    name="creditcardfraud",
    ksql_dir=Path("ksql"),
    connectors_dir=Path("connectors"),
    topics=Topics(),
    labels_topic=LABELS_TOPIC,
    model=MODEL_NAME,
    label_delay="30s",
    noun="payments",
    newest=("HOUR_OF_DAY", "V1", "V2", "AMOUNT"),
    lake=(PREPROCESSED_TOPIC, SCORES_TOPIC),
)
HANDBOOK = Pipeline(
    name="handbook",
    ksql_dir=Path("ksql/handbook"),
    connectors_dir=Path("connectors/handbook"),
    topics=Topics(
        source=HANDBOOK_TRANSACTIONS_TOPIC,
        preprocessed=HANDBOOK_FEATURES_TOPIC,
        scores=HANDBOOK_SCORES_TOPIC,
        dead_letters=(
            HANDBOOK_TRANSACTIONS_TOPIC + DLQ_SUFFIX,
            processing_log_topic(),
            HANDBOOK_FEATURES_TOPIC + DLQ_SUFFIX,
            HANDBOOK_FEATURES_TOPIC + "-s3-dlq",
        ),
    ),
    labels_topic=HANDBOOK_LABELS_TOPIC,
    model=HANDBOOK_MODEL,
    label_delay="7d",
    noun="transactions",
    newest=("TX_AMOUNT", "CUSTOMER_NB_TX_7DAY", "CUSTOMER_AVG_AMOUNT_7DAY", "TERMINAL_RISK_30DAY"),
    lake=(HANDBOOK_FEATURES_TOPIC,),
)
PIPELINES = {pipeline.name: pipeline for pipeline in (FLAGSHIP, HANDBOOK)}

Item = Payment | Transaction | Rejected


class Feed(Protocol):
    """What the demo produces: a first batch at once (and what it is, for the view), then more without end.

    The first batch is made when asked (the replay may read it lazily), before the view starts.
    """

    noun: str

    def first(self) -> tuple[Iterable[Item], str]: ...

    def more(self) -> Iterable[Item]: ...


@click.command("demo")
@data_dir_option
@click.option("--pipeline", "pipeline_name", type=click.Choice(list(PIPELINES)), default=FLAGSHIP.name,
              show_default=True, help="The flagship's payments, or the Fraud Detection Handbook's transactions.")  # fmt: skip
@click.option("--file", "payments_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Replay this CSV (Kaggle or extended layout) first instead of N generated payments (flagship only).")  # fmt: skip
@click.option("-n", "--count", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Generated payments (handbook: at most this many simulated transactions) replayed at once at the start.")  # fmt: skip
@click.option("--rate", type=click.FloatRange(min=0), default=200.0, show_default=True,
              help="Generated payments (or transactions) per second after those (0: none).")  # fmt: skip
@click.option("--label-delay", type=Duration(),
              help="How long after a payment its label arrives on the labels topic, in event time "
                   "[default: 30s; handbook: 7d, the Handbook's].")  # fmt: skip
@click.option("--customers", type=click.IntRange(min=MIN_CUSTOMERS), default=100, show_default=True,
              help="Handbook: simulated customers (terminals: twice as many).")  # fmt: skip
@click.option("--days", type=click.IntRange(min=1), default=30, show_default=True,
              help="Handbook: simulated days replayed at once at the start (then a week at a time at --rate).")  # fmt: skip
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds to run the live view [default: until Ctrl-C].",
)
@click.option("--ksql-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The statements [default: ksql; handbook: ksql/handbook].")  # fmt: skip
@click.option("--connectors-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The S3 sinks [default: connectors; handbook: connectors/handbook].")  # fmt: skip
@click.option("--ephemeral", is_flag=True, help="Keep the broker's data in memory.")
@click.option(
    "--prometheus", "with_prometheus", is_flag=True, help="Also start Prometheus (Debian's `prometheus` binary)."
)
@click.option("--prometheus-port", type=click.IntRange(1, 65535), default=DEFAULT_PROMETHEUS_PORT, show_default=True)
@secure_option
def demo_command(
    data_dir: Path | None,
    pipeline_name: str,
    payments_file: Path | None,
    count: int,
    rate: float,
    label_delay: timedelta | None,
    customers: int,
    days: int,
    duration: float | None,
    ksql_dir: Path | None,
    connectors_dir: Path | None,
    ephemeral: bool,
    with_prometheus: bool,
    prometheus_port: int,
    secure: bool | None,
) -> None:
    """The whole pipeline, live: stack up, ksql/ and connectors/ applied, a model, a worker, payments produced and scored."""

    started = time.monotonic()
    pipeline = PIPELINES[pipeline_name]
    if pipeline is HANDBOOK and payments_file is not None:
        raise click.UsageError("--file replays the flagship's payments; the handbook's transactions are simulated")
    ksql_dir = ksql_dir or pipeline.ksql_dir
    connectors_dir = connectors_dir or pipeline.connectors_dir
    for option, directory in (("--ksql-dir", ksql_dir), ("--connectors-dir", connectors_dir)):
        if not directory.is_dir():  # a default, which click did not check: run from the checkout, or give one
            raise click.BadParameter(f"Directory '{directory}' does not exist.", param_hint=f"'{option}'")
    label_delay = label_delay or Duration().convert(pipeline.label_delay, None, None)
    if with_prometheus:
        check_prometheus()  # before starting anything
    data_dir = resolve_data_dir(data_dir)
    stack = start_stack(data_dir, ephemeral, secure=secure)
    if with_prometheus:
        start_prometheus(stack, prometheus_port)
    addresses = stack.addresses
    if pipeline is HANDBOOK:
        worker, feed = _start_handbook(stack, ksql_dir, connectors_dir, customers, days, count)
    else:
        worker, feed = _start_flagship(stack, ksql_dir, connectors_dir, payments_file, count)

    topics, lock = pipeline.topics, threading.Lock()
    stats = PipelineStats(topics, started=started)
    bootstrap = addresses.bootstrap_servers
    before, scored_before = topic_size(bootstrap, topics.preprocessed), topic_size(bootstrap, topics.scores)
    noun = feed.noun
    console.print(f"preparing the first {noun}...")
    first = feed.first()  # made before the view starts: simulating the handbook's first days takes a while
    with TopicReader(
        addresses, stats, lock, fetch_wait_ms=reader_fetch_wait_ms(durable=not stack.ephemeral)
    ):  # reading on while the pipeline catches up, so the first score is seen
        with BackgroundPayments(
            bootstrap, feed, first, rate, label_delay, stats, lock, topics.source, pipeline.labels_topic
        ) as payments:
            deadline = None if duration is None else time.monotonic() + duration
            watch(
                stats,
                lock,
                console,
                until=lambda: payments.failed or (deadline is not None and time.monotonic() >= deadline),
            )
            console.print("stopping the producer...")
        if payments.error:
            raise click.ClickException(payments.error)

        acknowledged = payments.acknowledged
        console.print(f"waiting for the pipeline to process the {acknowledged:,} {noun} sent...")
        arrived = _wait_for(bootstrap, topics.preprocessed, before + acknowledged, quiet_seconds=60.0)
        console.print(f"[bold]{topics.preprocessed}[/]: {arrived - before:,} of {acknowledged:,} {noun} preprocessed")
        labels = sum(summary.labels_acknowledged for summary in payments.summaries)
        console.print(
            f"[bold]{pipeline.labels_topic}[/]: {labels:,} labels sent, each {_duration(label_delay)} "
            f"(event time) after its {noun[:-1]}"
        )
        scored = _wait_for(
            bootstrap, topics.scores, scored_before + arrived - before, quiet_seconds=30.0, first_seconds=180.0
        )
        console.print(f"[bold]{topics.scores}[/]: {scored - scored_before:,} {noun} scored")
        if scored - scored_before < arrived - before:
            console.print(f"[yellow]not every {noun[:-1]} is scored yet[/]: see the worker's log, {worker.log}")
        deadline = time.monotonic() + 10.0  # the reader may be a moment behind the topic's end
        while scored > scored_before and time.monotonic() < deadline:
            with lock:
                if stats.first_score_after is not None:
                    break
            time.sleep(0.1)
    if stats.first_score_after is not None:
        console.print(f"first score {stats.first_score_after:,.1f} s after the demo started")
    _show_newest(addresses, topics.preprocessed, pipeline.newest)
    _show_newest(addresses, topics.scores, ("score", "threshold", "is_fraud", "model_name", "model_version"))
    _show_lake(addresses, pipeline.lake)
    _show_where(stack, data_dir, ksql_dir, worker)


def _start_flagship(
    stack: EmbeddedStack, ksql_dir: Path, connectors_dir: Path, payments_file: Path | None, count: int
) -> tuple[RunningService, Feed]:
    """Statements, sinks, card holders, a production model and the stack's worker; the payments to send."""
    addresses = stack.addresses
    promote = _first_model(addresses, MODEL_NAME, "a first autoencoder on generated payments", _first_autoencoder)
    _apply(addresses, ksql_dir, connectors_dir)
    try:
        console.print(
            f"{USERS_TOPIC}: {produce_users(addresses.bootstrap_servers)} card holders written (the USERS table)"
        )
    except BrokerUnavailable as error:
        raise click.ClickException(str(error)) from None
    promote()
    if WORKER not in stack.running or not stack.running[WORKER].healthy():
        console.print("starting a stream worker (Faust, scoring with the production model)...")
        stack.start_service(WORKER)
    return stack.running[WORKER], PaymentFeed(payments_file, count)


def _start_handbook(
    stack: EmbeddedStack, ksql_dir: Path, connectors_dir: Path, customers: int, days: int, count: int
) -> tuple[RunningService, Feed]:
    """Statements, sink, a production model and the handbook's worker; the transactions to send."""
    from fraudstream.demo_handbook import HISTORY_DAYS, TransactionFeed, ensure_worker, resume_date, train_first_model
    from streams.records import register_score_schema

    addresses = stack.addresses
    # ksql/handbook/090 reads the scores: their schema first, as the stack registers the flagship's.
    register_score_schema(
        SchemaRegistryClient(schema_registry_conf(addresses.schema_registry_url)), HANDBOOK_SCORES_TOPIC
    )
    start = resume_date(addresses.bootstrap_servers)
    what = f"the supervised baseline on the offline features of the {HISTORY_DAYS} simulated days before {start}"
    _apply(addresses, ksql_dir, connectors_dir)
    # Not in the background: the simulator's chatter is silenced by redirecting the process's stdout.
    _first_model(addresses, HANDBOOK_MODEL, what, lambda out: train_first_model(customers, start, out))()
    try:
        worker = ensure_worker(stack, console)
    except StackError as error:
        raise click.ClickException(str(error)) from None
    return worker, TransactionFeed(customers, days, count, start)


class PaymentFeed:
    """The flagship's payments: a file's, or `count` generated ones; then generated ones without end, each
    chunk going on in time from the last (a chunk that started again at the same moment would put every
    card holder's payments on top of each other). Ids are made unique to the run, so a second demo repeats none.

    The generator's own timeline, not the moment each is sent: the first model learnt the hours and the card
    holders' pace of that timeline, and a burst stamped "now" is a different population (its drift metrics
    said so: hour-of-day PSI 14, every payment flagged).
    """

    noun = "payments"

    def __init__(self, payments_file: Path | None, count: int) -> None:
        self.payments_file = payments_file
        self.count = count
        self.run = new_run()
        self._start = 0.0  # where generated payments go on in time (a file's own timeline is its own)

    def first(self) -> tuple[Iterable[Item], str]:
        if self.payments_file is not None:
            return self._tagged(self._read(self.payments_file)), f"replaying {self.payments_file.name}"
        frame = generate_payments(self.count, seed=0)
        self._start = float(frame["Time"].max()) + 1.0 if len(frame) else 0.0
        return self._tagged(frame_payments(frame)), f"replaying {self.count:,} generated payments"

    def more(self) -> Iterable[Item]:
        start = self._start
        for seed in itertools.count(1):
            frame = generate_payments(CHUNK, seed=seed, start_seconds=start)
            start = float(frame["Time"].max()) + 1.0
            yield from self._tagged(frame_payments(frame))

    @staticmethod
    def _read(path: Path) -> Iterator[Payment | Rejected]:
        with open(path, encoding="utf-8", newline="") as lines:
            yield from read_payments(lines, str(path))

    def _tagged(self, payments: Iterable[Payment | Rejected]) -> Iterator[Item]:
        return (tagged(p, self.run) if isinstance(p, Payment) else p for p in payments)


class BackgroundPayments:
    """What `feed` makes, produced in a thread while the view runs: the first batch as fast as the broker takes
    it, then more at `rate` per second until stopped. Stopping waits for what was sent to be acknowledged."""

    def __init__(
        self,
        bootstrap_servers: str,
        feed: Feed,
        first: tuple[Iterable[Item], str],
        rate: float,
        label_delay: timedelta,
        stats: PipelineStats,
        lock: threading.Lock,
        topic: str,
        labels_topic: str,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.feed = feed
        self.first = first
        self.rate = rate
        self.label_delay = label_delay
        self.stats = stats
        self.lock = lock
        self.topic = topic
        self.labels_topic = labels_topic
        self.summaries: list[ReplaySummary] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fraudstream-demo-producer", daemon=True)

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def acknowledged(self) -> int:
        return sum(summary.acknowledged for summary in self.summaries)

    def __enter__(self) -> BackgroundPayments:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        noun = self.feed.noun
        try:
            self._replay(*self.first)
            if self.rate > 0 and not self._stop.is_set():
                self._replay(self.feed.more(), f"generating {self.rate:,.0f} {noun}/s", rate=self.rate)
            self._set_producing("done")
        except (BrokerUnavailable, PaymentFileError, OSError, UnicodeDecodeError, ValueError) as error:
            self.error = f"producing {noun}: {error}"
        except KafkaException as error:
            self.error = f"producing {noun}: Kafka: {error.args[0].str()}"
        if self.error:
            self._set_producing("failed")

    def _replay(self, items: Iterable[Item], what: str, rate: float | None = None) -> None:
        self._set_producing(what)
        sent_before = self.stats.sent

        def progress(summary: ReplaySummary) -> None:
            with self.lock:
                self.stats.sent = sent_before + summary.sent

        # Each on its feed's own timeline (the live view's latency runs from each record's Kafka timestamp, the
        # moment it was sent); each label follows its payment by the delay in that timeline.
        summary = replay(
            self._until_stopped(items),
            bootstrap_servers=self.bootstrap_servers,
            topic=self.topic,
            labels_topic=self.labels_topic,
            rate=rate,
            label_delay=self.label_delay,
            on_progress=progress,
        )
        self.summaries.append(summary)
        if summary.failed:
            self.error = f"producing {self.feed.noun}: {'; '.join(summary.errors)}"

    def _until_stopped(self, payments: Iterable[Item]) -> Iterator[Item]:
        for payment in payments:
            if self._stop.is_set():
                return
            yield payment

    def _set_producing(self, what: str) -> None:
        with self.lock:
            self.stats.producing = what


def _duration(delay: timedelta) -> str:
    seconds = delay.total_seconds()
    if seconds >= 86_400:
        return f"{seconds / 86_400:,.4g} days"
    return f"{seconds:,.0f} s" if seconds < 3600 else f"{seconds / 3600:,.1f} h"


def _first_model(
    addresses: Addresses, name: str, what: str, train_first: Callable[[Path], TrainingResult]
) -> Callable[[], None]:
    """When the registry has no production version of ``name``, start training one (``what``) in the background,
    so that it overlaps applying the statements; the returned call waits for it, registers and promotes it."""
    from models.registry import ModelRegistry, RegistryError

    registry = ModelRegistry.from_addresses(addresses)
    try:
        version = registry.version(name)
        console.print(f"model: {name} version {version['version']} is in production")
        return lambda: None
    except RegistryError:
        pass
    console.print(f"model: no production {name!r} yet; training {what}...")
    output_dir = Path(tempfile.mkdtemp(prefix="fraudstream-demo-"))
    pool = ThreadPoolExecutor(1, thread_name_prefix="fraudstream-first-model")
    training = pool.submit(train_first, output_dir)
    pool.shutdown(wait=False)  # the thread ends with the training

    def promote() -> None:
        try:
            result = training.result()
            version = registry.register(name, result.output_dir, note=f"fraudstream demo: {what}")["version"]
        finally:
            shutil.rmtree(output_dir, ignore_errors=True)
        registry.promote(name, version)
        metrics = result.metrics
        console.print(
            f"model: {name} version {version} promoted (test ROC-AUC {metrics.roc_auc:.4f}, "
            f"average precision {metrics.average_precision:.4f})"
        )

    return promote


def _first_autoencoder(output_dir: Path) -> TrainingResult:
    from models.autoencoder import Autoencoder
    from models.datasets import GeneratedSource
    from models.training import train

    return train(GeneratedSource(20_000, seed=0, fraud_rate=0.01), Autoencoder(epochs=5), output_dir=output_dir)


def _apply(addresses: Addresses, ksql_dir: Path, connectors_dir: Path) -> None:
    outcomes = apply_directory(KsqlRest(addresses.ksqldb_url), ksql_dir)
    errors = [o for o in outcomes if o.status == "error"]
    if errors:
        raise click.ClickException(f"{errors[0].file}: {errors[0].detail.splitlines()[0]}")
    console.print("ksql/: " + ", ".join(f"{o.statement} {o.status}" for o in outcomes))
    connectors = apply_dir(addresses.connect_url, connectors_dir)
    console.print("connectors/: " + ", ".join(f"{name} {outcome}" for name, outcome in connectors))


def _show_lake(addresses: Addresses, topics: Iterable[str]) -> None:
    """What the S3 sinks have landed so far (a file per flush.size records, the rest at the next scheduled rotation)."""
    for topic in topics:
        objects = list_objects(addresses.bucket, topic, endpoint_url=addresses.s3_endpoint_url)
        console.print(
            f"lake: {len(objects)} objects of {topic} in s3://{addresses.bucket}/topics/{topic}/ so far "
            "(the rest lands at the sink's next scheduled rotation, within a minute)"
        )
        for obj in objects[:2]:
            console.print(f"  {obj.key}")


def _wait_for(
    bootstrap: str, topic: str, expected: int, quiet_seconds: float = 10.0, first_seconds: float | None = None
) -> int:
    """Wait until `topic` holds `expected` records, or stops growing for `quiet_seconds`; return its size.

    Until it first grows, the wait is `first_seconds` (when given): a worker still loading its model on a
    busy machine writes nothing for a while, and is not stuck.
    """
    size, changed, grown = topic_size(bootstrap, topic), time.monotonic(), False
    while size < expected and time.monotonic() - changed < (
        quiet_seconds if grown or first_seconds is None else first_seconds
    ):
        time.sleep(0.5)
        now = topic_size(bootstrap, topic)
        if now != size:
            size, changed, grown = now, time.monotonic(), True
    return size


def _show_newest(addresses: Addresses, topic: str, columns: tuple[str, ...], rows: int = 5) -> None:
    """The newest records of partition 0 of `topic`, decoded with confluent-kafka's AvroDeserializer."""
    end = end_offsets(addresses.bootstrap_servers, topic).get(0, 0)
    if end == 0:
        return
    deserialize = AvroDeserializer(SchemaRegistryClient(schema_registry_conf(addresses.schema_registry_url)))
    consumer = Consumer(
        consumer_config(addresses.bootstrap_servers, "fraudstream-demo", enable_auto_commit=False) | PROBE_LOGGING
    )
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


#: What each service is, for the closing summary.
SERVICE_ROLES = {
    "objectstore": "S3 API (SeaweedFS): lake, model registry, broker log",
    "broker": "Kafka bootstrap servers",
    "schema-registry": "Schema Registry REST, /metrics",
    "ksqldb": "ksqlDB REST (KSQLAPI in notebooks, `fraudstream ksql`)",
    "connect": "Kafka Connect REST, /metrics",
    WORKER: "stream worker",
    f"{WORKER}-handbook": "the handbook pipeline's stream worker",
    PROMETHEUS: "Prometheus UI and API",
}


def jupyter_command(notebooks: Path) -> str:
    """How to open the notebooks with the Jupyter beside this interpreter, installing JupyterLab first if it is missing."""
    bin_dir = Path(sys.executable).parent
    command = f"{bin_dir / 'jupyter'} lab {notebooks}/"
    return command if (bin_dir / "jupyter-lab").exists() else f"{bin_dir / 'pip'} install jupyterlab && {command}"


def _show_where(stack: EmbeddedStack, data_dir: Path, ksql_dir: Path, worker: RunningService) -> None:
    """Where everything is, now that the demo leaves the stack running."""
    console.rule("the stack stays up")
    services = Table("service", "address", "what", title="services")
    for row in stack.status():
        services.add_row(
            row.name, row.address or "-", SERVICE_ROLES.get(row.name, "") + ("" if row.healthy else " [red](down)[/]")
        )
    if worker.alive():
        services.add_row("", f"{worker.address}/metrics", "the worker's Prometheus metrics")
        services.add_row("", f"POST {worker.address}/score", "score JSON payments on demand")
    prometheus = stack.running.get(PROMETHEUS)
    if prometheus is not None:
        services.add_row("", f"{prometheus.address}/targets", "what Prometheus scrapes")
    console.print(services)
    bootstrap = stack.addresses.bootstrap_servers
    topics = Table("topic", "records", title="topics")
    names = sorted(name for name in admin_client(bootstrap).list_topics(timeout=10).topics if not name.startswith("_"))
    for name, ends in topic_ends(bootstrap, names).items():
        topics.add_row(name, f"{sum(ends.values()):,}")
    console.print(topics)
    # the notebooks sit beside ksql/ (the handbook's statements are one folder deeper)
    notebooks = next((d / "notebooks" for d in ksql_dir.resolve().parents if (d / "notebooks").is_dir()),
                     ksql_dir.parent / "notebooks")  # fmt: skip
    console.print(f"notebooks: {jupyter_command(notebooks)}")
    if stack.addresses != Addresses():
        console.print("  (the notebooks and clients find this stack through these variables:)")
        for name, value in stack.addresses.to_env().items():
            console.print(f"  export {name}={value}")
    console.print(f"status: fraudstream status --data-dir {data_dir}; logs: {stack.data_dir / 'logs'}")
    console.print(f"stop it: fraudstream down --data-dir {data_dir}")
