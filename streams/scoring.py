"""Scoring one batch in three steps: `prepare` (decode, validate, score, encode), `send`, `complete` (acks).

One `Pipeline` per worker. streams/app.py runs the steps as a pipeline: the agent prepares batch k+1 while
batch k waits for room in the producer (aiokafka sends one request per broker at a time) and batch k-1 for
its acknowledgements. The scores of a batch go out as producer batches (aiokafka `send_batch`, one per
output partition run), and the batch's input offsets are given to Faust's commit only after the broker
acknowledged every score and dead letter of the batch: at least once, with at most the batches in flight
and those acknowledged since the last commit scored twice after a crash.

Output partition: when `fraud-scores` has as many partitions as the input (the default, it is created so),
a score goes to its payment's input partition: the same key always lands on the same partition, so
consumers keep per-key order without hashing every key in Python. Otherwise Kafka's murmur2 of the key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import numpy as np
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from confluent_kafka import KafkaException

from fraudstream.kafka import admin_client, ensure_topic
from fraudstream.statements import statements_hash
from streams import metrics
from streams.batching import RawBatch
from streams.dlq import DeadLetters
from streams.drift import DriftMonitor
from streams.hotswap import ModelHolder
from streams.modelsource import ScoringModel
from streams.records import (
    DECODE,
    HEADER,
    SCORING,
    Decoded,
    RecordError,
    ScoreEncoder,
    WriterLayout,
    decode_batch,
    parse_json_rows,
    register_score_schema,
    schema_id,
)
from streams.settings import WorkerSettings

logger = logging.getLogger(__name__)

KSQL_HASH = statements_hash()
"""The identity of the preprocessing statements the scored records went through (lineage)."""


def ensure_topics(bootstrap: str, source: str, names: Sequence[str], timeout: float = 30.0) -> int:
    """Create missing output topics with the input's partition count; returns that count. A broker that
    does not answer (restarting) is asked again until `timeout`."""
    admin = admin_client(bootstrap)
    deadline = time.monotonic() + timeout
    while True:
        try:
            topics = admin.list_topics(timeout=10).topics
        except KafkaException as error:
            if time.monotonic() > deadline:
                raise
            logger.warning("cannot list topics yet: %s", error.args[0].str())
            topics = {}
        if source in topics and topics[source].partitions:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"input topic {source!r} does not exist on {bootstrap}")
        time.sleep(0.5)
    partitions = len(topics[source].partitions)
    for name in names:
        if name not in topics:
            ensure_topic(bootstrap, name, partitions)
    return partitions


def _concatenate(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.empty(0, np.int64)


@dataclass(frozen=True)
class Columns:
    """What the pipeline reads of a batch's records, column by column, in `batch.records` order."""

    keys: list[bytes | None]
    values: list[bytes | None]
    partitions: np.ndarray
    offsets: np.ndarray
    timestamps: np.ndarray

    @classmethod
    def of(cls, batch: RawBatch) -> Columns:
        keys: list[bytes | None] = []
        values: list[bytes | None] = []
        partitions, offsets, timestamps = [], [], []
        for tp, records in batch.parts.items():
            keys += map(_key, records)
            values += map(_value, records)
            partitions.append(np.full(len(records), tp.partition, np.int64))
            offsets.append(np.fromiter(map(_offset, records), np.int64, len(records)))
            timestamps.append(np.fromiter(map(_timestamp, records), np.int64, len(records)))
        return cls(keys, values, _concatenate(partitions), _concatenate(offsets), _concatenate(timestamps))


_key, _value, _offset, _timestamp = (attrgetter(name) for name in ("key", "value", "offset", "timestamp"))


def _same_names(a: Sequence[str], b: Sequence[str]) -> bool:
    return len(a) == len(b) and all(x.lower() == y.lower() for x, y in zip(a, b))


@dataclass
class Scored:
    """A scored batch: its outputs as producer batches and dead letters, then the futures of their acks."""

    batch: RawBatch
    outputs: list[tuple[str, int, Any]]
    dead: list[tuple[Any, RecordError]]
    started: float
    size: int
    timestamps: np.ndarray
    scores: np.ndarray
    alerts: np.ndarray
    futures: list[asyncio.Future] = field(default_factory=list)


class Pipeline:
    def __init__(self, settings: WorkerSettings, holder: ModelHolder) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        self.settings = settings
        self.holder = holder
        self.registry = SchemaRegistryClient(
            settings.credentials.schema_registry(settings.addresses.schema_registry_url)
        )
        self.schemas: dict[int, dict[str, Any]] = {}
        self.layouts: dict[tuple[int, tuple[str, ...]], WriterLayout] = {}
        self.producer: AIOKafkaProducer | None = None
        self.dead_letters: DeadLetters | None = None
        self.score_schema_ids: dict[str, int] = {}
        self.out_partitions: dict[str, int] = {}
        self.in_partitions = 0
        self.drift = DriftMonitor(settings.drift_events)
        self._started = asyncio.Event()
        self._starting = False

    async def start(self) -> None:
        """Topics, schemas, producer and the production model; idempotent, and awaited by every user. A start
        that fails (the broker restarting) can be tried again: Faust restarts the agent that called it."""
        if self._starting:
            await self._started.wait()
            return
        self._starting = True
        try:
            await self._start()
        except BaseException:
            self._starting = False  # else the restarted agent would wait for this start for ever
            if self.producer is not None:
                producer, self.producer = self.producer, None
                await producer.stop()
            raise
        self._started.set()

    async def _start(self) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        outputs = [s.scores_topic, s.dlq_topic] + ([s.shadow_topic] if s.shadow != "off" else [])
        self.in_partitions = await loop.run_in_executor(
            None, ensure_topics, s.addresses.bootstrap_servers, s.input_topic, outputs
        )
        score_topics = [s.scores_topic] + ([s.shadow_topic] if s.shadow != "off" else [])
        for topic in score_topics:
            self.score_schema_ids[topic] = await loop.run_in_executor(None, self._register, topic)
        if self.holder.current is None:
            await loop.run_in_executor(None, self.holder.load_initial)
        await self.holder.refresh_shadow()
        self.producer = AIOKafkaProducer(
            bootstrap_servers=s.addresses.bootstrap_servers,
            acks="all",
            linger_ms=0,
            max_batch_size=1_048_576,
            max_request_size=8_388_608,
            request_timeout_ms=30_000,
            **s.credentials.aiokafka(),
        )
        await self.producer.start()
        for topic in score_topics:
            self.out_partitions[topic] = len(await self.producer.partitions_for(topic))
        self.dead_letters = DeadLetters(self.producer, s.dlq_topic, s.worker)

    def _register(self, topic: str) -> int:
        return register_score_schema(self.registry, topic)

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def layout(self, sid: int, feature_names: tuple[str, ...]) -> WriterLayout | RecordError:
        """How records of schema `sid` give the inputs `feature_names` (one layout per schema and model)."""
        known = self.layouts.get((sid, feature_names))
        if known is None:
            schema = self.schemas.get(sid)
            if schema is None:
                loop = asyncio.get_running_loop()
                try:
                    registered = await loop.run_in_executor(None, self.registry.get_schema, sid)
                except Exception as error:
                    return RecordError(DECODE, f"schema id {sid} is not in the Schema Registry: {error}")
                schema = self.schemas[sid] = json.loads(registered.schema_str)
            known = self.layouts[(sid, feature_names)] = WriterLayout.from_schema(sid, schema, feature_names)
            if known.error:
                logger.warning("records of schema %d cannot be scored: %s", sid, known.error)
            else:
                logger.info(
                    "schema %d: %d inputs by name, %s", sid, known.n_features, "NumPy" if known.fast else "fastavro"
                )
        return known

    async def decode(self, values: list[bytes | None], feature_names: tuple[str, ...]) -> Decoded:
        """The inputs `feature_names` of a batch's values, whatever mix of schema ids it holds."""
        try:
            heads = {value[:HEADER] for value in values}  # type: ignore[index]
        except TypeError:  # a value is None
            heads = set()
        groups: dict[bytes, list[int] | None] = {}
        if len(heads) == 1:
            groups[heads.pop()] = None  # the usual batch: one schema id, every value
        else:
            for i, value in enumerate(values):
                groups.setdefault(value[:HEADER] if value else b"", []).append(i)  # type: ignore[union-attr]
        errors: dict[int, RecordError] = {}
        parts: list[Decoded] = []
        for head, members in groups.items():
            everyone = range(len(values)) if members is None else members
            try:
                sid = schema_id(head)
            except RecordError as error:
                errors.update((i, error) for i in everyone)
                continue
            layout = await self.layout(sid, feature_names)
            if isinstance(layout, RecordError):
                errors.update((i, layout) for i in everyone)
                continue
            if members is None:
                parts.append(decode_batch(values, layout))  # type: ignore[arg-type]
                errors.update(parts[-1].errors)
                continue
            sub = decode_batch([values[i] for i in members], layout)  # type: ignore[misc]
            positions = np.asarray(members, np.int64)
            errors.update((members[i], e) for i, e in sub.errors.items())
            parts.append(Decoded(sub.features, positions[sub.index], {}))
        if len(parts) == 1:
            return Decoded(parts[0].features, parts[0].index, errors)
        if not parts:
            return Decoded(np.empty((0, len(feature_names))), np.empty(0, np.int64), errors)
        return Decoded(np.vstack([p.features for p in parts]), np.concatenate([p.index for p in parts]), errors)

    async def prepare(self, batch: RawBatch) -> Scored:
        """Decode, score and encode a batch into producer batches, ready to send (nothing is sent yet)."""
        await self.start()
        assert self.producer is not None
        started = time.perf_counter()
        model = self.holder.current
        shadow = self.holder.shadow
        assert model is not None
        columns = Columns.of(batch)
        decoded = await self.decode(columns.values, model.feature_names)
        errors = decoded.errors
        index, features = decoded.index, decoded.features
        scores = alerts = np.empty(0)
        if len(index):
            t = time.perf_counter()
            try:
                scores, alerts = model.score(features)
            except Exception as error:  # a model that fails on this batch: every row is a dead letter
                logger.exception("model %s failed on a batch", model.label)
                errors.update((int(i), RecordError(SCORING, f"model {model.label} failed: {error!r}")) for i in index)
                index = index[:0]
                scores = alerts = np.empty(0)
            self.holder.observe(model, time.perf_counter() - t, len(index))
            bad = ~np.isfinite(scores)
            if bad.any():
                for i in index[bad]:
                    errors[int(i)] = RecordError(SCORING, f"model {model.label} gave a non-finite score")
                index, scores, alerts, features = index[~bad], scores[~bad], alerts[~bad], features[~bad]
            self.drift.observe(model, features, scores)
        outputs = self._score_batches(self.settings.scores_topic, columns, index, scores, alerts, model)
        if shadow is not None and len(index):
            shadow_index, shadow_features = await self._shadow_features(shadow, model, columns, index, features)
            if len(shadow_index):
                shadow_scores, shadow_alerts = shadow.score(shadow_features)
                outputs += self._score_batches(
                    self.settings.shadow_topic, columns, shadow_index, shadow_scores, shadow_alerts, shadow
                )
                metrics.SHADOW_SCORED.inc(len(shadow_index))
        records = batch.records if errors else []
        dead = [(records[i], error) for i, error in sorted(errors.items())]
        return Scored(batch, outputs, dead, started, len(columns.values), columns.timestamps[index], scores, alerts)

    async def _shadow_features(
        self, shadow: ScoringModel, model: ScoringModel, columns: Columns, index: np.ndarray, features: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The shadow model's inputs for the rows production scored: the same matrix when both read the same
        columns, else decoded again for the shadow (rows it cannot read are left out of the shadow, not
        dead-lettered: production scored them)."""
        if _same_names(shadow.feature_names, model.feature_names):
            return index, features
        decoded = await self.decode(columns.values, shadow.feature_names)
        keep = np.isin(decoded.index, index)
        return decoded.index[keep], decoded.features[keep]

    async def send(self, scored: Scored) -> None:
        """Hand a scored batch's outputs to the producer, in order (this waits while the producer is full)."""
        assert self.producer is not None and self.dead_letters is not None
        for topic, partition, builder in scored.outputs:
            scored.futures.append(await self.producer.send_batch(builder, topic, partition=partition))
        for record, error in scored.dead:
            scored.futures.append(await self.dead_letters.send(record, error))

    async def complete(self, scored: Scored) -> int:
        """Wait until the broker acknowledged every output of a sent batch; returns the scores acknowledged."""
        for outcome in await asyncio.gather(*scored.futures, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome
        self._observe(scored)
        return len(scored.scores)

    async def process(self, batch: RawBatch) -> int:
        """Score one batch end to end; returns the number of scores acknowledged by the broker."""
        scored = await self.prepare(batch)
        await self.send(scored)
        return await self.complete(scored)

    def _score_batches(
        self,
        topic: str,
        columns: Columns,
        index: np.ndarray,
        scores: np.ndarray,
        alerts: np.ndarray,
        model: ScoringModel,
    ) -> list[tuple[str, int, Any]]:
        """The scores as producer batches: (topic, partition, batch), in the order they must be sent."""
        if not len(index):
            return []
        assert self.producer is not None
        n_out = self.out_partitions[topic]
        rows = index.tolist()
        keys = [columns.keys[i] for i in rows]
        partitions, offsets = columns.partitions[index], columns.offsets[index]
        encoder = ScoreEncoder(
            self.score_schema_ids[topic],
            model.threshold,
            model.name,
            model.version,
            model.threshold_version,
            KSQL_HASH,
            int(time.time() * 1000),
        )
        values = encoder.encode(keys, partitions, offsets, columns.timestamps[index], scores, alerts)
        lineage = (
            ("model", model.name.encode()),
            ("model_version", str(model.version).encode()),
            ("threshold_version", str(model.threshold_version).encode()),
            ("ksql_hash", KSQL_HASH.encode()),
            ("source_topic", self.settings.input_topic.encode()),
        )
        offset_texts = [str(o).encode() for o in offsets.tolist()]
        outputs: list[tuple[str, int, Any]] = []
        if n_out == self.in_partitions:  # each run of one input partition goes to that partition: slices
            bounds = (np.flatnonzero(np.diff(partitions)) + 1).tolist()
            for a, b in zip([0, *bounds], [*bounds, len(keys)]):
                p = int(partitions[a])
                head = (*lineage, ("source_partition", str(p).encode()))
                outputs += self._batches(
                    topic, p, keys[a:b], values[a:b], ([*head, ("source_offset", o)] for o in offset_texts[a:b])
                )
            return outputs
        outs = np.fromiter(
            (p % n_out if k is None else (murmur2(k) & 0x7FFFFFFF) % n_out for k, p in zip(keys, partitions.tolist())),
            np.int64,
            len(keys),
        )
        order = np.argsort(outs, kind="stable")
        sources = [("source_partition", str(p).encode()) for p in partitions.tolist()]
        for group in np.split(order, np.flatnonzero(np.diff(outs[order])) + 1):
            rows = group.tolist()
            outputs += self._batches(
                topic,
                int(outs[rows[0]]),
                [keys[j] for j in rows],
                [values[j] for j in rows],
                ([*lineage, sources[j], ("source_offset", offset_texts[j])] for j in rows),
            )
        return outputs

    def _batches(
        self,
        topic: str,
        partition: int,
        keys: list[bytes | None],
        values: list[bytes],
        headers: Iterable[list[tuple[str, bytes]]],
    ) -> list[tuple[str, int, Any]]:
        """Records for one output partition in as few producer batches as they fit in."""
        assert self.producer is not None
        batches = [self.producer.create_batch()]
        for key, value, header in zip(keys, values, headers):
            if batches[-1].append(key=key, value=value, timestamp=None, headers=header) is None:
                batches[-1].close()
                batches.append(self.producer.create_batch())
                batches[-1].append(key=key, value=value, timestamp=None, headers=header)
        batches[-1].close()
        return [(topic, partition, batch) for batch in batches]

    def _observe(self, scored: Scored) -> None:
        now = time.time()
        metrics.BATCH_SIZE.observe(scored.size)
        metrics.BATCH_LATENCY.observe(time.perf_counter() - scored.started)
        scores, alerts = scored.scores, scored.alerts
        if len(scores):
            metrics.EVENTS_SCORED.inc(len(scores))
            n_alerts = int(np.count_nonzero(alerts))
            metrics.ALERTS.inc(n_alerts)
            metrics.FRAUD_RATE.set(n_alerts / len(scores))
            metrics.observe_many(metrics.SCORE, scores)
            metrics.observe_many(metrics.EVENT_TO_SCORE, np.maximum(now - scored.timestamps / 1000.0, 0.0))

    def score_rows(self, body: Any) -> dict[str, Any]:
        """POST /score: the same model and threshold rule as the stream, for JSON records."""
        model = self.holder.current
        if model is None:
            raise RuntimeError("no model loaded yet")
        features, ids = parse_json_rows(body, model.feature_names, model.feature_types)
        scores, alerts = model.score(features)
        bad = np.flatnonzero(~np.isfinite(scores))
        if bad.size:  # JSON has no Infinity or NaN, and no score is better than a meaningless one
            raise ValueError(_non_finite_reason(model, features, int(bad[0])))
        return {
            "model": model.name,
            "model_version": model.version,
            "threshold": model.threshold,
            "threshold_version": model.threshold_version,
            "ksql_hash": KSQL_HASH,
            "scores": [
                {"payment_id": pid, "score": float(s), "is_fraud": bool(a)}
                for pid, s, a in zip(ids, scores.tolist(), alerts.tolist())
            ],
        }


def _non_finite_reason(model: Any, features: np.ndarray, row: int) -> str:
    """Why record `row` has no finite score, naming the fields that cause it: each field is set to 0 in
    turn, and those whose value alone makes the score non-finite are named (a 1e308 amount, say)."""
    trials = np.repeat(features[row : row + 1], features.shape[1], axis=0)
    np.fill_diagonal(trials, 0.0)
    with np.errstate(all="ignore"):
        fixed = np.isfinite(model.score(trials)[0])
    names = [f"{model.feature_names[j]} ({features[row, j]:g})" for j in np.flatnonzero(fixed)]
    if not names:
        return f"record {row}: the model gives these values no finite score"
    return f"record {row}: field {', '.join(names)} is out of the range the model can score (no finite score)"
