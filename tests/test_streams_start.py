"""The scoring pipeline's start: a worker started while the broker restarts must not hang (pure logic)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError, KafkaException

from streams import scoring
from streams.scoring import Pipeline
from streams.settings import WorkerSettings


def test_a_start_that_failed_runs_again_when_faust_restarts_the_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    # The chaos run killed the broker while a worker started: its agent crashed in start(), Faust restarted
    # it, and the new agent waited for ever for the first start to finish, scoring nothing.
    tried = []

    def broker_restarting(*args: object) -> int:
        tried.append(args)
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Failed to get metadata: broker transport failure"))

    monkeypatch.setattr(scoring, "ensure_topics", broker_restarting)
    pipeline = Pipeline(WorkerSettings(), SimpleNamespace(current=None))  # type: ignore[arg-type]

    async def start_twice() -> None:
        for _ in range(2):
            with pytest.raises(KafkaException):
                await asyncio.wait_for(pipeline.start(), timeout=10)

    asyncio.run(start_twice())
    assert len(tried) == 2
