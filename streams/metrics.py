"""The worker's Prometheus metrics (names the docker/grafana dashboard expects).

Histograms of per-event values (score, event-to-score latency) are fed a whole batch at once:
`observe_many` bins the batch with NumPy and adds the counts, instead of ~1 µs of locking per event.
"""

from __future__ import annotations

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from streams.records import REASONS

EVENTS_SCORED = Counter("fraudstream_events_scored_total", "Events scored and acknowledged by the broker")
ALERTS = Counter("fraudstream_alerts_total", "Events scored above the threshold")
FRAUD_RATE = Gauge("fraudstream_fraud_rate", "Share of the last batch's events flagged as fraud")
DEAD_LETTERS = Counter("fraudstream_dead_letters_total", "Records sent to the dead-letter topic", ["reason"])
BATCH_SIZE = Histogram(
    "fraudstream_batch_size", "Records per scored batch", buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000)
)
BATCH_LATENCY = Histogram(
    "fraudstream_batch_latency_seconds",
    "Decode, score, send and broker ack of one batch",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
EVENT_TO_SCORE = Histogram(
    "fraudstream_event_to_score_latency_seconds",
    "From the payment's event time (its Timestamp, stamped when sent by `fraudstream produce`) to its score "
    "being acknowledged by the broker: end-to-end latency for live payments, the events' age for a backfill",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SCORE = Histogram("fraudstream_score", "Model scores", buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 50, 100))
MODEL_INFO = Gauge("fraudstream_model_info", "1 for the model version scoring now", ["model", "version"])
MODEL_FALLBACKS = Counter(
    "fraudstream_model_fallbacks_total", "New production versions refused or rolled back by this worker", ["reason"]
)
SHADOW_SCORED = Counter("fraudstream_shadow_events_scored_total", "Events scored by the shadow model")
CONSUMER_LAG = Gauge("fraudstream_consumer_lag", "High watermark minus next offset to score", ["topic", "partition"])
STALLED = Gauge("fraudstream_stalled_partitions", "Partitions with lag and no progress for the stall window")
LIVE_LABELLED = Gauge(
    "fraudstream_live_labelled",
    "Scored payments whose label is known, by outcome at the threshold they were scored with (ksql/090)",
    ["model", "version", "outcome"],
)
LIVE_PRECISION = Gauge("fraudstream_live_precision", "Labelled alerts that were fraud (ksql/090)", ["model", "version"])
LIVE_RECALL = Gauge("fraudstream_live_recall", "Labelled frauds that raised an alert (ksql/090)", ["model", "version"])
FEATURE_PSI = Gauge(
    "fraudstream_feature_psi",
    "Population stability index of an input over the last drift window against the model's training data",
    ["model", "version", "feature"],
)
SCORE_PSI = Gauge(
    "fraudstream_score_psi",
    "Population stability index of the score over the last drift window against the model's training data",
    ["model", "version"],
)

for _reason in REASONS:
    DEAD_LETTERS.labels(_reason)


def observe_many(histogram: Histogram, values: np.ndarray) -> None:
    """Add a batch of observations to an unlabelled histogram in one step."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return
    bounds = np.asarray(histogram._upper_bounds)  # ends with +Inf
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    for bucket, count in zip(histogram._buckets, counts):
        if count:
            bucket.inc(int(count))
    histogram._sum.inc(float(values.sum()))


def set_model(name: str, version: int) -> None:
    MODEL_INFO.clear()
    MODEL_INFO.labels(name, str(version)).set(1)
