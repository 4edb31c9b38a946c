"""Prometheus metrics of the sink, per connector, served on the worker's REST port at /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class SinkMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        labels = ["connector"]
        self.records = Counter(
            "connect_sink_records_total", "Records landed in object storage", labels, registry=self.registry
        )
        self.files = Counter("connect_sink_files_total", "Objects written", labels, registry=self.registry)
        self.bytes = Counter(
            "connect_sink_bytes_total", "Bytes written to object storage", labels, registry=self.registry
        )
        self.dead_letters = Counter(
            "connect_sink_dead_letter_records_total",
            "Records sent to the dead-letter topic",
            labels,
            registry=self.registry,
        )
        self.upload_failures = Counter(
            "connect_sink_upload_failures_total",
            "Object uploads that failed (and were retried)",
            labels,
            registry=self.registry,
        )
        self.store_unanswered = Counter(
            "connect_sink_store_unanswered_total",
            "Checks of the bucket at task start that the object store did not answer (and were retried)",
            labels,
            registry=self.registry,
        )
        self.task_failures = Counter(
            "connect_sink_task_failures_total", "Tasks that failed", labels, registry=self.registry
        )
        self.upload_seconds = Histogram(
            "connect_sink_upload_seconds", "Latency of one object upload", labels, registry=self.registry
        )
