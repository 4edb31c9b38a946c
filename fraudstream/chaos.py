"""`fraudstream chaos`: the whole durable pipeline under crashes, and what it lost.

Payments are replayed at a steady rate into a throwaway durable stack that runs everything the demo runs
(every statement of `ksql/`, the `connectors/` S3 sinks, a scoring worker) while, at moments drawn from a
seed, one component at a time is killed with SIGKILL and restarted on its own port: the broker, the object
store (SeaweedFS), the ksqlDB server, the Connect worker and the stream worker. Then the run waits for the
pipeline to settle and checks what an operator would:

- every payment the broker acknowledged is on the source topic and has a score; scores of one payment
  beyond the first are counted as duplicates (workers deliver at least once, README "Delivery");
- every record of each sunk topic is in the lake exactly once, offset by offset;
- the windowed aggregate of ksql/070 equals what an uninterrupted run computes from the same source records
  (computed here from them, window by window).
"""

from __future__ import annotations

import csv
import json
import logging
import random
import re
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import click
from rich.table import Table

from fraudstream.config import Addresses
from fraudstream.kafka import committed_offsets, end_offsets, read_topic, topic_ends
from fraudstream.terminal import make_console
from fraudstream.topics import PREPROCESSED_TOPIC, SCORES_TOPIC, SOURCE_TOPIC
from stack.embedded import WORKER, EmbeddedStack
from stack.supervisor import StackError

logger = logging.getLogger(__name__)
console = make_console()

#: What gets killed, each as the stack names it.
COMPONENTS: tuple[str, ...] = ("broker", "objectstore", "ksqldb", "connect", WORKER)
#: The windowed aggregate checked against the source records, and the statement that defines it.
AGGREGATE_TOPIC = "creditcardfraud_user_features"
AGGREGATE_STATEMENT = "070-user-features.sql"
#: How long a restart may keep failing (its port still held, a dependency down) before the run gives up.
RESTART_SECONDS = 120.0


@dataclass(frozen=True)
class Kill:
    at: float  # seconds after the replay starts
    component: str
    down: float  # seconds the component stays dead before its restart


def kill_schedule(seed: int, seconds: float, kills_each: int, components: tuple[str, ...] = COMPONENTS) -> list[Kill]:
    """`kills_each` kills of every component at moments drawn from `seed` over the first 90% of `seconds`,
    each down for 0.5 to 3 s; in time order (they run one after another, so a kill due during the previous
    restart waits for it)."""
    rng = random.Random(seed)
    kills = [
        Kill(round(rng.uniform(0.05, 0.9) * seconds, 1), component, round(rng.uniform(0.5, 3.0), 1))
        for component in components
        for _ in range(kills_each)
    ]
    return sorted(kills, key=lambda kill: kill.at)


@dataclass
class Recovery:
    """One component's kills, and for each the seconds from its restart to healthy again."""

    kills: int = 0
    seconds: list[float] = field(default_factory=list)


class Killer:
    """Kills and restarts a stack's components on a schedule, and restarts any found dead meanwhile.

    Call it from the thread that started the stack: a restarted service gets SIGTERM when the thread that
    started it ends (`stack.supervisor.start`).
    """

    def __init__(self, stack: EmbeddedStack, on_kill: Callable[[Kill], None] | None = None) -> None:
        self.stack = stack
        self.on_kill = on_kill
        self.recoveries: dict[str, Recovery] = {}
        #: Components found dead that were not killed (they died of another's kill), restarted too.
        self.collateral = Counter[str]()

    def run(self, schedule: list[Kill], until_done: Callable[[], bool]) -> None:
        """Each kill at its moment (seconds from now), one after another; then wait for `until_done`."""
        began = time.monotonic()
        for kill in schedule:
            time.sleep(max(0.0, began + kill.at - time.monotonic()))
            self.kill(kill)
        while not until_done():
            self.revive()
            time.sleep(0.5)

    def kill(self, kill: Kill) -> None:
        if self.on_kill is not None:
            self.on_kill(kill)
        logger.info("chaos: kill -9 %s for %.1f s", kill.component, kill.down)
        self.stack.stop_service(kill.component, kill=True)
        time.sleep(kill.down)
        recovery = self.recoveries.setdefault(kill.component, Recovery())
        recovery.kills += 1
        recovery.seconds.append(self._restart(kill.component))
        self.revive()

    def revive(self) -> None:
        """Restart any component that died without being killed, and count it."""
        for name, service in list(self.stack.running.items()):
            if not service.alive():
                logger.warning("chaos: %s died on its own; restarting it", name)
                self.collateral[name] += 1
                self.stack.stop_service(name, kill=True)
                self._restart(name)

    def _restart(self, component: str) -> float:
        """Start `component` again, retrying a bounded time (its port not yet released, a dependency still
        coming back); the seconds until it was healthy."""
        restarted = time.monotonic()
        while True:
            try:
                self.stack.start_service(component)
                return time.monotonic() - restarted
            except StackError as error:
                if time.monotonic() - restarted > RESTART_SECONDS:
                    raise StackError(f"{component} did not come back after a kill: {error}") from None
                logger.warning("chaos: %s not back yet (%s); trying again", component, error)
                time.sleep(1.0)


@dataclass(frozen=True)
class LakeCheck:
    """A sunk topic against the lake: every offset of the topic should be in exactly one object."""

    topic: str
    records: int
    landed: int
    missing: int
    duplicates: int
    dead_lettered: int  # records of the connector's dead-letter topic: what it could not convert


def lake_check(addresses: Addresses, sink: Sink, topic: str) -> LakeCheck:
    from connectors.lake import list_objects, read_object

    ends = end_offsets(addresses.bootstrap_servers, topic, timeout=60.0)
    dead = (
        sum(end_offsets(addresses.bootstrap_servers, sink.dead_letters, timeout=60.0).values())
        if sink.dead_letters
        else 0
    )
    copies = Counter[tuple[int, int]]()
    for obj in list_objects(addresses.bucket, topic, endpoint_url=addresses.s3_endpoint_url):
        count = len(read_object(addresses.bucket, obj, addresses.s3_endpoint_url))
        copies.update((obj.partition, offset) for offset in range(obj.start_offset, obj.start_offset + count))
    expected = {(partition, offset) for partition, end in ends.items() for offset in range(end)}
    return LakeCheck(
        topic,
        records=len(expected),
        landed=sum(copies.values()),
        missing=len(expected - copies.keys()),
        duplicates=sum(count - 1 for count in copies.values()),
        dead_lettered=dead,
    )


@dataclass(frozen=True)
class AggregateCheck:
    """The windowed aggregate's last value per (key, window) against the offline computation."""

    windows: int
    differing: int
    examples: list[str]


def hopping_window(statement: str) -> tuple[int, int]:
    """(size, advance) in milliseconds of the statement's WINDOW HOPPING clause, read by the engine's parser."""
    from stack.ksqldb.windows import parse_window

    match = re.search(r"WINDOW\s+(HOPPING\s*\([^)]*\))", statement, re.IGNORECASE)
    if match is None:
        raise ValueError("no WINDOW HOPPING clause in the statement")
    spec = parse_window(match.group(1))
    return spec.size, spec.advance


def offline_user_windows(payments: list[tuple[str, int, float]], size: int, advance: int) -> dict:
    """COUNT(*), SUM(AMOUNT), MAX(AMOUNT) per (user, window start) of hopping windows over (user, ms, amount),
    as ksql/070 computes them from ksql/040's enriched stream (a missing user is 'unknown', a missing amount 0)."""
    windows: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0, 0.0, float("-inf")])
    for user, ts, amount in payments:
        start = ts - ts % advance
        while start > ts - size:
            if start >= 0:
                totals = windows[(user, start)]
                totals[0] += 1
                totals[1] += amount
                totals[2] = max(totals[2], amount)
            start -= advance
    return windows


def source_payments(records: list) -> list[tuple[str, int, float]]:
    """(user, event time in ms, amount) of each DELIMITED source record (ksql/010's columns)."""
    from producers.payments import parse_timestamp

    payments = []
    for row in csv.reader(record.value().decode() for record in records):
        ts = int(parse_timestamp(row[1]).timestamp() * 1000)
        payments.append((row[2] or "unknown", ts, float(row[-1]) if row[-1] else 0.0))
    return payments


def aggregate_check(addresses: Addresses, source: list, statement: str) -> AggregateCheck:
    from stack.ksqldb.windows import WindowInfo, decode_windowed_key

    size, advance = hopping_window(statement)
    expected = offline_user_windows(source_payments(source), size, advance)
    latest: dict[tuple[str, int], dict] = {}
    for record in read_topic(addresses.bootstrap_servers, AGGREGATE_TOPIC):  # in offset order: the last wins
        key, start, _ = decode_windowed_key(record.key(), WindowInfo("HOPPING", size))
        latest[(key.decode(), start)] = json.loads(record.value())
    differing = []
    for window in expected.keys() | latest.keys():
        want, got = expected.get(window), latest.get(window)
        if want is None or got is None or not _same(want, got):
            differing.append(f"{window}: expected {want}, found {got}")
    return AggregateCheck(len(expected), len(differing), sorted(differing)[:5])


def _same(want: list[float], got: dict) -> bool:
    count, total, biggest = want
    return (
        got.get("PAYMENTS_1H") == count
        and abs(got.get("AMOUNT_1H", float("nan")) - total) <= 1e-6 * max(1.0, abs(total))
        and got.get("MAX_AMOUNT_1H") == biggest
    )


@dataclass(frozen=True)
class ChaosReport:
    payments: int
    acknowledged: int
    on_source: int
    lost_at_broker: int  # acknowledged, yet not on the source topic
    source_duplicates: int  # records of the source topic beyond one per payment (producer retries)
    scored: int  # payments with at least one score
    unscored: int  # on the source topic, yet without a score
    duplicate_scores: int
    lake: list[LakeCheck]
    aggregate: AggregateCheck
    recoveries: dict[str, Recovery]
    collateral: Counter[str]
    settled_seconds: float
    behind: str | None  # what was still behind when the settle time ran out; None: everything caught up

    @property
    def caught_up(self) -> bool:
        return self.behind is None

    @property
    def lost(self) -> int:
        return self.lost_at_broker + self.unscored + sum(check.missing for check in self.lake)


@dataclass(frozen=True)
class Sink:
    """A connector of `connectors/`: the topics it lands in the lake, and its dead-letter topic."""

    name: str
    topics: list[str]
    dead_letters: str | None


def sinks(connectors_dir: Path) -> list[Sink]:
    """The connector configs of `connectors_dir`."""
    found = []
    for path in sorted(connectors_dir.glob("*.json")):
        body = json.loads(path.read_text())
        config = body.get("config", {})
        topics = [topic.strip() for topic in config.get("topics", "").split(",") if topic.strip()]
        found.append(Sink(body["name"], topics, config.get("errors.deadletterqueue.topic.name") or None))
    return found


def settle(
    addresses: Addresses, sunk: list[Sink], payments: int, quiet: float, at_most: float, killer: Killer
) -> tuple[float, str | None]:
    """Wait until every payment reached the scores and the sinks committed every record they read, and nothing
    has moved for `quiet` seconds (the aggregate's last updates); at most `at_most` seconds. Returns the wait
    and, if it ran out, what was still behind (or the last error reading it, such as a partition whose end
    no fetch reached)."""
    bootstrap = addresses.bootstrap_servers
    watched = {SOURCE_TOPIC, PREPROCESSED_TOPIC, SCORES_TOPIC, AGGREGATE_TOPIC}
    watched |= {topic for sink in sunk for topic in sink.topics}
    began = time.monotonic()
    last, changed, behind = None, began, "nothing read yet"
    while time.monotonic() - began < at_most:
        killer.revive()
        try:
            ends = topic_ends(bootstrap, sorted(watched), timeout=30.0)
            behind = _behind(bootstrap, sunk, payments, ends)
        except Exception as error:  # noqa: BLE001 - a loaded broker may time out: ask again, say so if it lasts
            behind = f"{type(error).__name__}: {error}"
            logger.info("chaos: not settled yet: %s", behind)
            time.sleep(2.0)
            continue
        if ends != last:
            last, changed = ends, time.monotonic()
        if behind is None and time.monotonic() - changed >= quiet:
            break
        time.sleep(2.0)
    return time.monotonic() - began, behind


def _behind(bootstrap: str, sunk: list[Sink], payments: int, ends: dict[str, dict[int, int]]) -> str | None:
    """What has not caught up yet: the preprocessed payments or their scores, or a sink's committed offsets."""
    for topic in (PREPROCESSED_TOPIC, SCORES_TOPIC):
        if (records := sum(ends[topic].values())) < payments:
            return f"{topic}: {records:,} of {payments:,} payments"
    for sink in sunk:
        for topic in sink.topics:
            committed = committed_offsets(bootstrap, f"connect-{sink.name}", topic, timeout=30.0)
            late = {p: end for p, end in ends[topic].items() if committed.get(p, 0) < end}
            if late:
                return f"{sink.name}: {topic} committed {committed} of {late}"
    return None


def run_chaos(
    stack: EmbeddedStack,
    payments: int,
    rate: float,
    schedule: list[Kill],
    connectors_dir: Path,
    ksql_dir: Path,
    seed: int = 7,
    settle_seconds: float = 900.0,
    on_kill: Callable[[Kill], None] | None = None,
) -> ChaosReport:
    """Replay `payments` generated payments at `rate` into a stack running the whole pipeline while `schedule`
    kills and restarts its components; then settle and check (the module's docstring says what)."""
    from producers.generate import generate_payments
    from producers.replay import new_run, replay

    addresses = stack.addresses
    frame = generate_payments(payments, seed=seed)
    run = new_run()
    killer = Killer(stack, on_kill)
    with ThreadPoolExecutor(1, thread_name_prefix="fraudstream-chaos-replay") as pool:
        replaying = pool.submit(
            replay, frame, bootstrap_servers=addresses.bootstrap_servers, live=True, rate=rate, run=run
        )
        killer.run(schedule, until_done=replaying.done)
        summary = replaying.result()
    sunk = sinks(connectors_dir)
    settled, behind = settle(addresses, sunk, summary.acknowledged, quiet=20.0, at_most=settle_seconds, killer=killer)
    source = read_topic(addresses.bootstrap_servers, SOURCE_TOPIC)
    on_source = {record.key().decode() for record in source}
    acknowledged = {f"{payment}-{run}" for payment in frame["Id"]} if not summary.failed else on_source
    scores = Counter(record.key().decode() for record in read_topic(addresses.bootstrap_servers, SCORES_TOPIC))
    return ChaosReport(
        payments=payments,
        acknowledged=summary.acknowledged,
        on_source=len(on_source),
        lost_at_broker=len(acknowledged - on_source),
        source_duplicates=len(source) - len(on_source),
        scored=len(on_source & scores.keys()),
        unscored=len(on_source - scores.keys()),
        duplicate_scores=sum(count - 1 for count in scores.values()),
        lake=[lake_check(addresses, sink, topic) for sink in sunk for topic in sink.topics],
        aggregate=aggregate_check(addresses, source, (ksql_dir / AGGREGATE_STATEMENT).read_text()),
        recoveries=killer.recoveries,
        collateral=killer.collateral,
        settled_seconds=settled,
        behind=behind,
    )


@contextmanager
def chaos_stack(data_dir: Path, ksql_dir: Path, connectors_dir: Path, model_dir: Path) -> Iterator[EmbeddedStack]:
    """A durable stack on free ports in `data_dir` running the whole demo pipeline with one scoring worker."""
    from fraudstream.bench.latency import prepare_pipeline

    with EmbeddedStack.on_free_ports(data_dir) as stack:
        prepare_pipeline(stack.addresses, ksql_dir, connectors_dir, model_dir)
        stack.start_service(WORKER)
        yield stack


def report_tables(report: ChaosReport) -> list[Table]:
    """The kills (component, kills, seconds from restart to healthy, deaths it caused) and what was lost."""
    kills = Table("component", "kills", "recovery p50 (s)", "recovery max (s)", "also died", title="kills survived")
    for name, recovery in sorted(report.recoveries.items()):
        kills.add_row(
            name,
            str(recovery.kills),
            f"{statistics.median(recovery.seconds):.1f}",
            f"{max(recovery.seconds):.1f}",
            str(report.collateral.get(name, 0)),
        )
    caption = "" if report.caught_up else f"not caught up after {report.settled_seconds:.0f} s: {report.behind}"
    outcome = Table("check", "records", "lost", "duplicates", "dead letters", title="what the pipeline kept",
                    caption=caption)  # fmt: skip
    outcome.add_row(
        "payments acknowledged -> on the source topic",
        f"{report.acknowledged:,}",
        f"{report.lost_at_broker:,}",
        f"{report.source_duplicates:,}",
        "",
    )
    outcome.add_row(
        "payments -> a score", f"{report.on_source:,}", f"{report.unscored:,}", f"{report.duplicate_scores:,}", ""
    )
    for check in report.lake:
        outcome.add_row(
            f"{check.topic} -> lake",
            f"{check.records:,}",
            f"{check.missing:,}",
            f"{check.duplicates:,}",
            f"{check.dead_lettered:,}",
        )
    outcome.add_row(
        f"{AGGREGATE_TOPIC} windows = uninterrupted",
        f"{report.aggregate.windows:,}",
        f"{report.aggregate.differing:,} differ",
        "",
        "",
    )
    return [kills, outcome]


@click.command("chaos")
@click.option("-n", "--payments", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=250.0, show_default=True,
              help="Payments offered per second.")  # fmt: skip
@click.option("--kills", type=click.IntRange(min=0), default=2, show_default=True,
              help="Kills of each component during the replay.")  # fmt: skip
@click.option("--seed", type=int, default=7, show_default=True, help="Draws the payments and the kill moments.")
@click.option("--settle", type=click.FloatRange(min=0), default=900.0, show_default=True,
              help="Seconds to wait, at most, for the pipeline to catch up after the replay.")  # fmt: skip
@click.option("--ksql-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path("ksql"),
              show_default=True)  # fmt: skip
@click.option("--connectors-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=Path("connectors"), show_default=True)  # fmt: skip
def chaos_command(
    payments: int, rate: float, kills: int, seed: int, settle: float, ksql_dir: Path, connectors_dir: Path
) -> None:
    """Replay payments through a throwaway durable pipeline while killing (kill -9) and restarting the broker,
    the object store, ksqlDB, Connect and the stream worker; report what was lost (exit 1 if anything)."""
    import tempfile

    from fraudstream.bench.latency import train_bench_model

    schedule = kill_schedule(seed, payments / rate, kills)
    with tempfile.TemporaryDirectory(prefix="fraudstream-chaos-") as work:
        console.print("training a small model for the run...")
        model = train_bench_model(Path(work) / "model")
        console.print("starting a throwaway durable stack with the whole pipeline...")
        with chaos_stack(Path(work) / "data", ksql_dir, connectors_dir, model) as stack:
            console.print(f"replaying {payments:,} payments at {rate:,.0f}/s with {len(schedule)} kills...")
            report = run_chaos(
                stack,
                payments,
                rate,
                schedule,
                connectors_dir,
                ksql_dir,
                seed=seed,
                settle_seconds=settle,
                on_kill=lambda kill: console.print(f"  {kill.at:6.1f} s: kill -9 {kill.component}"),
            )
    for table in report_tables(report):
        console.print(table)
    for example in report.aggregate.examples:
        console.print(f"  differs: {example}")
    if report.lost or report.aggregate.differing or any(check.duplicates for check in report.lake):
        raise SystemExit(1)
