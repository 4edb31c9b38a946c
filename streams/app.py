"""The Faust app: `faust -A streams.app worker` (or `fraudstream worker`), configured from the environment.

One agent scores the preprocessed stream a partition-batch at a time (streams/batching.py explains how
records reach it in batches); timers watch lag and the registry; a task follows `model-updates`; the
web server (127.0.0.1 by default) serves `POST /score` and `/metrics`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.sensors.prometheus import setup_prometheus_sensors
from threadpoolctl import threadpool_limits

from fraudstream.basicauth import BasicAuth
from fraudstream.credentials import Credentials
from fraudstream.kafka import AIOKAFKA_GROUP_DEFAULTS, end_offsets
from fraudstream.requestbody import BadBody, read_json
from fraudstream.tls import server_context
from fraudstream.topics import MODEL_UPDATES_TOPIC, ModelUpdate
from streams import metrics
from streams.batching import BatchApp, RawBatch
from streams.hotswap import ModelHolder
from streams.modelsource import DirectorySource, ModelSource, RegistrySource
from streams.quality import QualityUnavailable, publish, read_live_quality
from streams.scoring import Pipeline, Scored
from streams.settings import WorkerSettings
from streams.stalls import StallWatch

logger = logging.getLogger(__name__)

#: httpx (the Schema Registry client, the live-quality pull query) logs every request at INFO.
logging.getLogger("httpx").setLevel(logging.WARNING)

settings = WorkerSettings.from_env()
#: One thread scores. BLAS threads spin-waiting between small matrix products doubled the worker's CPU per
#: event at batches of 5,000, taking it from the agent and the broker.
threadpool_limits(1)
settings.data_dir.mkdir(parents=True, exist_ok=True)


def model_source(settings: WorkerSettings) -> ModelSource:
    if settings.model_dir is not None:
        return DirectorySource(settings.model_dir, settings.model_name)
    from models.registry import ModelRegistry

    return RegistrySource(ModelRegistry.from_addresses(settings.addresses), settings.model_name)


def broker_credentials(credentials: Credentials) -> faust.SASLCredentials | faust.SSLCredentials | None:
    """Faust's form of the SASL and TLS settings (fraudstream.credentials), or None against an open broker.

    Faust speaks SASL_SSL when its SASL credentials carry an SSL context, SSL with SSL credentials alone.
    """
    context = credentials.ssl_context() if credentials.tls else None
    if credentials.sasl_username is None:
        return None if context is None else faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=credentials.sasl_username,
        password=credentials.sasl_password,
        mechanism=credentials.sasl_mechanism,
        ssl_context=context,
    )


app = BatchApp(
    settings.group,
    broker=[f"kafka://{server}" for server in settings.addresses.bootstrap_servers.split(",")],
    broker_credentials=broker_credentials(settings.credentials),
    max_batch=settings.max_batch,
    web_host=settings.web_host,
    web_bind=settings.web_host,
    web_port=settings.web_port,
    web_ssl_context=server_context(),  # https when the environment names a certificate (fraudstream.tls)
    datadir=str(settings.data_dir / f"{settings.group}-{settings.web_port}"),
    broker_session_timeout=AIOKAFKA_GROUP_DEFAULTS["session_timeout_ms"] / 1000,
    broker_heartbeat_interval=AIOKAFKA_GROUP_DEFAULTS["heartbeat_interval_ms"] / 1000,
    broker_commit_interval=settings.commit_seconds,
    broker_commit_every=10_000,
    consumer_auto_offset_reset="earliest",
    topic_disable_leader=True,
    producer_acks=-1,
)
setup_prometheus_sensors(app, name_prefix="faust")
#: The web port (POST /score, /metrics) asks for HTTP basic authentication when a password file is set.
web_auth = BasicAuth.from_env("fraudstream-worker")
if web_auth is not None:
    app.web.web_app.middlewares.append(web_auth.middleware({"error_code": 401, "message": "Unauthorized"}))

source = model_source(settings)
holder = ModelHolder(source, settings.budget_ms / 1000, warmup_rows=settings.max_batch, shadow=settings.shadow)
pipeline = Pipeline(settings, holder)
input_topic = app.batch_topic(settings.input_topic)

#: Next offset to score per input partition (lag), and how long data has waited on each (the stall watchdog).
progress: dict[Any, int] = {}
stalls = StallWatch(settings.stall_seconds)


#: Batches scored and not yet acknowledged by the broker: the agent waits for room, so at most this many are
#: scored again after a crash. Between the steps, batches wait in order: to be sent, then to be acknowledged.
unacknowledged = asyncio.Semaphore(settings.inflight)
to_send: asyncio.Queue[tuple[RawBatch, Scored | None]] = asyncio.Queue()
to_acknowledge: asyncio.Queue[tuple[RawBatch, Scored | None]] = asyncio.Queue()


@app.agent(input_topic)
async def score(batches: Any) -> None:
    """Score each batch; `send` hands it to the producer and `acknowledge` commits it once the broker has it."""
    await pipeline.start()
    tune_gc()
    async for batch in batches:
        await unacknowledged.acquire()
        try:
            scored: Scored | None = await pipeline.prepare(batch)
        except Exception:  # e.g. the registry unreachable: `acknowledge` retries the whole batch
            if app.should_stop:
                raise
            logger.exception("batch of %d records could not be scored; retrying", len(batch))
            scored = None
        to_send.put_nowait((batch, scored))


def tune_gc() -> None:
    """Garbage collection for a worker that holds tens of thousands of records in flight, none of them in cycles.

    With CPython's default threshold (a young collection every 700 allocations) the collector walks every
    fetched record several times; collections every 50,000 allocations cut aiokafka's CPU per record by a
    third. What start-up loaded (the model, TensorFlow's modules) is frozen: never garbage, never walked.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


@app.task
async def send() -> None:
    """In scoring order: hand each batch's outputs to the producer (waiting while it is full)."""
    while not app.should_stop:
        batch, scored = await to_send.get()
        if scored is not None:
            try:
                await pipeline.send(scored)
            except Exception:  # broker trouble: `acknowledge` retries the whole batch
                if app.should_stop:
                    raise
                logger.exception("batch of %d records could not be sent; retrying", len(batch))
                scored = None
        to_acknowledge.put_nowait((batch, scored))


@app.task
async def acknowledge() -> None:
    """In scoring order: wait for a batch's acks, then give its offsets to the commit."""
    while not app.should_stop:
        batch, scored = await to_acknowledge.get()
        try:
            if scored is None:
                raise RuntimeError("not sent")
            await pipeline.complete(scored)
        except Exception:
            await _process_with_retry(batch)
        now = time.monotonic()
        for tp in app.consumer.ack_batch(batch):
            progress[tp] = batch.span(tp)[1] + 1
            stalls.progressed(tp, now)
        unacknowledged.release()


async def _process_with_retry(batch: RawBatch) -> None:
    """Score and send a batch again until every output is acknowledged (scores may repeat, none are lost)."""
    delay = 0.1
    while True:
        try:
            await pipeline.process(batch)
            return
        except Exception:
            if app.should_stop:
                raise
            logger.exception("batch of %d records failed; retrying in %.1f s", len(batch), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


@app.timer(interval=1.0)
async def watch_lag() -> None:
    """Lag per partition from the fetch high watermark (never ListOffsets: it is wrong on the embedded broker)."""
    consumer = app.consumer
    now = time.monotonic()
    stalled = 0
    for tp in consumer.assignment():
        if tp.topic != settings.input_topic:
            continue
        high = consumer.highwater(tp)
        done = progress.get(tp, consumer._committed_offset.get(tp))  # Faust's committed position until we score
        if high is None or done is None:
            continue
        lag = max(high - done, 0)
        metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)
        # judged once a model is loaded: a worker still loading TensorFlow and its model is starting, not stalled
        waited = stalls.observe(tp, lag, now) if holder.current is not None else None
        if waited is not None:
            stalled += 1
            logger.warning("partition %s stalled: lag %d and no progress for %.0f s", tp, lag, waited)
    metrics.STALLED.set(stalled)


#: What kept the live-quality table from being read last time (said once in the log, not every interval).
quality_problem: str | None = None


@app.timer(interval=settings.quality_seconds)
async def watch_quality() -> None:
    """Live precision and recall from the statements' table (ksql/090-live-quality.sql), as gauges."""
    global quality_problem
    try:
        rows = await asyncio.get_running_loop().run_in_executor(
            None, read_live_quality, settings.addresses.ksqldb_url, settings.quality_table
        )
    except QualityUnavailable as error:
        if str(error) != quality_problem:
            logger.info("no live quality yet: %s", error)
            quality_problem = str(error)
        return
    quality_problem = None
    publish(rows)


@app.timer(interval=settings.poll_seconds)
async def poll_registry() -> None:
    """The fallback to `model-updates`: ask the registry which version is production now."""
    await check_registry()


async def check_registry() -> None:
    if holder.current is None:
        return
    try:
        version, threshold_version = await asyncio.get_running_loop().run_in_executor(None, source.production)
    except Exception as error:
        logger.warning("registry poll failed: %r", error)
        return
    await holder.switch_to(version, threshold_version)
    await holder.refresh_shadow()


@app.task
async def follow_model_updates() -> None:
    """Switch models on `model-updates` events, read from the true end of the topic at startup."""
    if settings.model_dir is not None:
        return
    await pipeline.start()
    loop = asyncio.get_running_loop()
    try:
        start = (
            await loop.run_in_executor(None, end_offsets, settings.addresses.bootstrap_servers, MODEL_UPDATES_TOPIC)
        ).get(0, 0)
    except LookupError:
        start = 0  # created later: every event in it is news
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.addresses.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        **settings.credentials.aiokafka(),
    )
    await consumer.start()
    try:
        tp = TopicPartition(MODEL_UPDATES_TOPIC, 0)
        consumer.assign([tp])
        consumer.seek(tp, start)
        await check_registry()  # anything promoted between loading the model and positioning here
        while not app.should_stop:
            fetched = await consumer.getmany(timeout_ms=1000)
            for record in fetched.get(tp, []):
                try:
                    event = ModelUpdate.from_json(record.value)
                except ValueError as error:
                    logger.warning("ignoring a %s record at offset %d: %s", MODEL_UPDATES_TOPIC, record.offset, error)
                    continue
                if event.model != settings.model_name:
                    continue
                if event.stage == "production":
                    await holder.switch_to(event.version, event.threshold_version)
                elif event.stage == "candidate":
                    await holder.refresh_shadow()
    finally:
        await consumer.stop()


@app.page("/score")
class ScoreView(faust.web.View):
    """Synchronous scoring of JSON records with the stream's model and code path."""

    async def post(self, request: faust.web.Request) -> faust.web.Response:
        try:
            body = await read_json(request)  # type: ignore[arg-type]
        except BadBody as error:
            return self.json({"error_code": error.status, "message": error.message}, status=error.status)
        await pipeline.start()
        try:
            return self.json(pipeline.score_rows(body))
        except ValueError as error:
            return self.json({"error_code": 400, "message": str(error)}, status=400)
