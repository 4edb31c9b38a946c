"""A worker's settings, from environment variables (so `faust -A streams.app worker` needs no arguments)."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fraudstream.config import Addresses
from fraudstream.credentials import Credentials
from fraudstream.topics import PREPROCESSED_TOPIC, SCORES_TOPIC, SHADOW_SCORES_TOPIC, dead_letter_topic
from streams.quality import LIVE_QUALITY_TABLE


@dataclass(frozen=True)
class WorkerSettings:
    addresses: Addresses = field(default_factory=Addresses)
    credentials: Credentials = field(default_factory=Credentials)
    """How the worker authenticates to Kafka, Schema Registry and ksqlDB (fraudstream.credentials)."""
    group: str = "fraudstream-scoring"
    input_topic: str = PREPROCESSED_TOPIC
    scores_topic: str = SCORES_TOPIC
    shadow_topic: str = SHADOW_SCORES_TOPIC
    dlq_topic: str = dead_letter_topic(PREPROCESSED_TOPIC)
    model_name: str = "fraud"
    model_dir: Path | None = None
    """A trained model folder to score with instead of the registry (version 1, no hot swap)."""
    shadow: str = "off"
    """"off", "candidate" (the newest candidate version) or a version number: scored into shadow_topic."""
    budget_ms: float = 250.0
    """Most a new model may take to score one full batch; slower versions are refused or rolled back."""
    max_batch: int = 5000
    inflight: int = 4
    """Batches scored and not yet acknowledged by the broker, at most (the agent scores ahead of the acks)."""
    commit_seconds: float = 0.1
    """How often offsets of acknowledged batches are committed: what a crash can make score twice."""
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    data_dir: Path = Path(".fraudstream/workers")
    poll_seconds: float = 30.0
    stall_seconds: float = 30.0
    quality_seconds: float = 15.0
    """How often live precision and recall are read from the statements' table (ksql/090-live-quality.sql)."""
    quality_table: str = LIVE_QUALITY_TABLE
    """The pipeline's live-quality table (the handbook's: ksql/handbook/090-live-quality.sql)."""
    drift_events: int = 10_000
    """Scored rows per drift window: the PSI of each input and of the score is computed over this many."""
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> WorkerSettings:
        def get(name: str, default: object) -> object:
            return environ.get(f"FRAUDSTREAM_{name}", default)

        d = cls()
        model_dir = get("MODEL_DIR", None)
        input_topic = str(get("INPUT_TOPIC", d.input_topic))
        return cls(
            addresses=Addresses.from_env(environ),
            credentials=Credentials.from_env(environ),
            group=str(get("GROUP", d.group)),
            input_topic=input_topic,
            scores_topic=str(get("SCORES_TOPIC", d.scores_topic)),
            shadow_topic=str(get("SHADOW_TOPIC", d.shadow_topic)),
            dlq_topic=str(get("DLQ_TOPIC", dead_letter_topic(input_topic))),
            model_name=str(get("MODEL", d.model_name)),
            model_dir=Path(str(model_dir)) if model_dir else None,
            shadow=str(get("SHADOW", d.shadow)),
            budget_ms=float(get("BUDGET_MS", d.budget_ms)),  # type: ignore[arg-type]
            max_batch=int(get("BATCH", d.max_batch)),  # type: ignore[arg-type]
            inflight=int(get("INFLIGHT", d.inflight)),  # type: ignore[arg-type]
            commit_seconds=float(get("COMMIT_SECONDS", d.commit_seconds)),  # type: ignore[arg-type]
            web_host=str(get("WEB_HOST", d.web_host)),
            web_port=int(get("WEB_PORT", d.web_port)),  # type: ignore[arg-type]
            data_dir=Path(str(get("DATA_DIR", d.data_dir))),
            poll_seconds=float(get("POLL_SECONDS", d.poll_seconds)),  # type: ignore[arg-type]
            stall_seconds=float(get("STALL_SECONDS", d.stall_seconds)),  # type: ignore[arg-type]
            quality_seconds=float(get("QUALITY_SECONDS", d.quality_seconds)),  # type: ignore[arg-type]
            quality_table=str(get("QUALITY_TABLE", d.quality_table)),
            drift_events=int(get("DRIFT_EVENTS", d.drift_events)),  # type: ignore[arg-type]
            worker=str(get("WORKER", d.worker)),
        )
