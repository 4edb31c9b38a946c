"""Faust, with records moved in batches: the way through Faust that keeps agents, tables and the web server.

A bare Faust agent receives ~9k events/s on this machine while its transport (aiokafka) fetches ~660k/s:
the fetcher hands every record to the conductor one by one (`Consumer._drain_messages` awaits a
`wait_first` per record), and every record becomes an `Event` travelling through a queue into the stream.

:class:`BatchApp` changes one thing: for topics registered with :func:`batch_topic`, the fetcher hands
over what one fetch returned, across partitions, as *one* message whose value is a :class:`RawBatch` (at
most `max_batch` records): few large batches under load, one small batch per fetch when idle. That message takes Faust's normal path — the conductor, the topic's queue with its
flow control and pressure-based pausing of the partition, generation checks during rebalances — so the
agent is an ordinary Faust agent iterating a stream, of batches. Other topics keep the per-record path.

Offsets: batch topics are declared with ``acks=False``, so Faust does not ack a batch's message when the
agent moves on. The agent calls :meth:`BatchConsumer.ack_batch` only after the broker acknowledged every
record it produced for the batch; that feeds the batch's offsets to Faust's own commit bookkeeping (gaps,
per-partition contiguity, commit only for assigned partitions), and Faust's periodic commit
(`broker_commit_interval`) commits them: a commit per batch cost a tenth of the agent's time.
A batch finished after its partition was revoked or reassigned is not acked: it is read and scored again
(at least once, never lost).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from fraudstream.kafka import fetch_wait_ms

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawBatch:
    """Fetched records of one or more partitions (aiokafka ConsumerRecords, in offset order per partition)."""

    parts: Mapping[TP, Sequence[Any]]
    generation_id: int

    @property
    def records(self) -> list[Any]:
        return [record for records in self.parts.values() for record in records]

    def span(self, tp: TP) -> tuple[int, int]:
        """First and last offset of partition `tp` in this batch."""
        records = self.parts[tp]
        return int(records[0].offset), int(records[-1].offset)

    def __len__(self) -> int:
        return sum(len(records) for records in self.parts.values())


class BatchSchema(faust.Schema):
    """Passes a batch message's value (a RawBatch) through untouched: decoding is the agent's, per batch."""

    def compile(
        self,
        app: Any,
        *,
        on_key_decode_error: Any = None,
        on_value_decode_error: Any = None,
        default_propagate: bool = False,
    ) -> Any:
        create_event = app.create_event

        async def decode(message: Any, *, propagate: bool = default_propagate) -> Any:
            return create_event(None, message.value, {}, message)

        return decode


#: Faust fixes aiokafka's fetch wait at 1.5 s. The embedded broker answers a fetch only when that wait is
#: over (it does not return early when records arrive), which put p50 latency near 300 ms at 2,000 events/s.
#: 10 ms rather than 20 took ~2 ms off p50 and ~5 ms off p99 for a raw consumer at that load, for twice
#: as many (empty) fetches when idle.
FETCH_MAX_WAIT_MS = 10


class FetchThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = fetch_wait_ms(FETCH_MAX_WAIT_MS)  # read when the consumer starts its fetcher
        return consumer


class BatchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, delivering batch topics a partition-batch at a time."""

    def _new_consumer_thread(self) -> FetchThread:
        return FetchThread(self, loop=self.loop, beacon=self.beacon)

    def _batch_topics(self) -> set[str]:
        return cast(BatchApp, self.app).batch_topics

    def _max_batch(self) -> int:
        return cast(BatchApp, self.app).max_batch

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - exercised by the worker tests
        callback = self.callback
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        batch_topics = self._batch_topics()
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                records, active = await self._wait_next_records(1.0)
                await asyncio.sleep(0)
                if not records or self.should_stop:
                    continue
                if not self.flow_active:
                    await self.perform_seek()
                    continue
                generation_id = self.app.consumer_generation_id
                parts: dict[TP, list[Any]] = {}
                size = 0
                for tp, tp_records in records.items():
                    if self.app.consumer_generation_id != generation_id or not self.flow_active:
                        break
                    if not (active is None or tp in active or tp in self._buffered_partitions):
                        continue
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    r_offset = read_offset[tp]
                    fresh = (
                        tp_records
                        if r_offset is None or tp_records[0].offset >= r_offset
                        else [r for r in tp_records if r.offset >= r_offset]
                    )  # offsets rise within a partition
                    if not fresh:
                        continue
                    if tp.topic in batch_topics:
                        while fresh:
                            room = self._max_batch() - size
                            chunk, fresh = fresh[:room], fresh[room:]
                            await self._maybe_gap(tp, chunk[0].offset, acks=True)
                            parts[tp] = chunk
                            size += len(chunk)
                            read_offset[tp] = chunk[-1].offset
                            if size >= self._max_batch():
                                await self._deliver(RawBatch(parts, generation_id))
                                parts, size = {}, 0
                    else:
                        for record in fresh:
                            await self._maybe_gap(tp, record.offset, acks=acks_enabled_for(tp.topic))
                            if self._commit_every is not None and self._n_acked >= self._commit_every:
                                self._n_acked = 0
                                await self.commit()
                            await self.wait_first(callback(self._to_message(tp, record)), self.suspend_flow.wait())
                            read_offset[tp] = record.offset
                if parts:
                    await self._deliver(RawBatch(parts, generation_id))
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise

    async def _deliver(self, batch: RawBatch) -> None:
        """One message for the whole batch, through the conductor like any record (flow control included)."""
        tp = next(iter(batch.parts))
        last = batch.parts[tp][-1]
        message = ConsumerMessage(
            tp.topic,
            tp.partition,
            last.offset,
            last.timestamp / 1000.0,
            last.timestamp_type,
            [],
            None,
            batch,
            None,
            0,
            0,
            tp,
            generation_id=batch.generation_id,
        )
        await self.wait_first(self.callback(message), self.suspend_flow.wait())

    async def _maybe_gap(self, tp: TP, offset: int, acks: bool) -> None:
        """Faust's gap bookkeeping: offsets skipped by the broker (compaction, markers) count as done."""
        r_offset = self._read_offset[tp]
        if acks and r_offset and offset - r_offset > 1:
            await self._add_gap(tp, r_offset + 1, offset)

    def ack_batch(self, batch: RawBatch) -> list[TP]:
        """Mark a batch's offsets done (only once its outputs are acknowledged): the next periodic commit takes them.

        Returns the partitions acked; a partition revoked or reassigned since the fetch is left out.
        """
        assignment = self.assignment()
        acked = []
        for tp in batch.parts:
            first, last = batch.span(tp)
            if batch.generation_id != self.app.consumer_generation_id or tp not in assignment:
                logger.info(
                    "not committing %s offsets %d-%d: partition rebalanced since fetch (they will be re-read)",
                    tp,
                    first,
                    last,
                )
                continue
            self._acked[tp].extend(range(first, last + 1))
            acked.append(tp)
        self._n_acked += len(batch)
        return acked


class BatchTransport(faust_aiokafka.Transport):
    Consumer = BatchConsumer


class QuietWorker(faust.Worker):
    """Faust's worker without its terminal spinner.

    At log level WARN and above the spinner sets the root logger to DEBUG and turns every log call into a
    record (to spin on it): thousands of aiokafka and Faust debug records a second under load.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spinner = None


class BatchApp(faust.App):
    """A Faust app whose batch topics reach agents as RawBatch values (see the module docstring)."""

    def __init__(self, *args: Any, max_batch: int = 1000, **kwargs: Any) -> None:
        kwargs.setdefault("Worker", QuietWorker)
        super().__init__(*args, **kwargs)
        self.batch_topics: set[str] = set()
        self.max_batch = max_batch

    def _new_transport(self) -> Any:
        return BatchTransport(self.conf.broker_consumer, self)

    def batch_topic(self, name: str, maxsize: int = 8, **kwargs: Any) -> faust.TopicT:
        """A topic whose stream yields RawBatch values; its offsets are committed only through `ack_batch`."""
        self.batch_topics.add(name)
        return self.topic(name, schema=BatchSchema(), acks=False, maxsize=maxsize, **kwargs)
