"""The model registry against the session's real SeaweedFS and broker: register, gate, promote, roll back.

Models are quick baselines on generated payments. The "worse" model is a baseline trained on shuffled
labels (it learnt nothing), so the gate's verdict is certain, not a matter of luck.
"""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
from confluent_kafka import Consumer, TopicPartition

from fraudstream.kafka import consumer_config, end_offsets
from models.baseline import LogisticBaseline
from models.datasets import Dataset, GeneratedSource, load_dataset
from models.registry import (
    ARCHIVED,
    CANDIDATE,
    PRODUCTION,
    UPDATES_TOPIC,
    ModelRegistry,
    PromotionRefused,
    RegistryError,
)
from models.training import train

SOURCE = GeneratedSource(3_000, seed=1, fraud_rate=0.02)


@pytest.fixture
def registry(stack, tmp_path) -> ModelRegistry:
    return ModelRegistry.from_addresses(stack.addresses, cache_dir=tmp_path / "cache")


@pytest.fixture
def name() -> str:
    return f"fraud-{uuid.uuid4().hex[:8]}"


def good_model(tmp_path, seed: int = 0):
    return train(SOURCE, LogisticBaseline(seed=seed), output_dir=tmp_path / f"good-{seed}")


def useless_model(tmp_path, seed: int):
    """A baseline trained on labels shuffled at random: a model that learnt nothing."""
    dataset = load_dataset(SOURCE)
    frame = dataset.frame.copy()
    frame["Class"] = np.random.default_rng(seed).permutation(frame["Class"].to_numpy())
    shuffled = Dataset(frame, {**dataset.description, "labels": f"shuffled with seed {seed}"}, [])
    return train(shuffled, LogisticBaseline(), output_dir=tmp_path / f"useless-{seed}")


def updates_for(bootstrap: str, name: str) -> list[dict]:
    end = end_offsets(bootstrap, UPDATES_TOPIC)[0]
    consumer = Consumer(consumer_config(bootstrap, f"test-{uuid.uuid4().hex}", enable_auto_commit=False))
    consumer.assign([TopicPartition(UPDATES_TOPIC, 0, 0)])
    events = []
    try:
        while True:
            message = consumer.poll(10)
            assert message is not None and message.error() is None
            if message.key() == name.encode():
                events.append(json.loads(message.value()))
            if message.offset() >= end - 1:
                return events
    finally:
        consumer.close()


def test_register_gate_promote_rollback_and_events(stack, registry, name, tmp_path):
    bad1 = useless_model(tmp_path, seed=1)
    v1 = registry.register(name, bad1.output_dir)
    assert (v1["version"], v1["stage"], v1["kind"]) == (1, CANDIDATE, "logistic-baseline")
    assert v1["metrics"]["average_precision"] == pytest.approx(bad1.metrics.average_precision)
    first = registry.promote(name, 1)  # nothing in production yet: no gate to pass
    assert (first.version, first.previous, first.gate) == (1, None, None)

    good = good_model(tmp_path)
    registry.register(name, good.output_dir)
    accepted = registry.promote(name, 2)  # gate on version 2's own held-out test part
    gate = accepted.gate
    assert gate["passed"] and gate["metric"] == "average_precision" and gate["production_version"] == 1
    assert gate["candidate"] > gate["production"]
    assert gate["rows"] == good.metrics.rows and gate["candidate"] == pytest.approx(good.metrics.average_precision)

    bad3 = useless_model(tmp_path, seed=3)
    registry.register(name, bad3.output_dir)
    with pytest.raises(PromotionRefused, match="does not beat production version 2 on roc_auc") as refused:
        registry.promote(name, 3, metric="roc_auc", data=GeneratedSource(2_000, seed=7, fraud_rate=0.02))
    assert refused.value.gate["candidate"] < refused.value.gate["production"]
    entry = registry.version(name, 3)
    assert entry["stage"] == CANDIDATE and entry["history"][-1]["event"] == "promotion refused"
    assert registry.version(name)["version"] == 2

    forced = registry.promote(
        name, 3, metric="roc_auc", force=True, data=GeneratedSource(2_000, seed=7, fraud_rate=0.02)
    )
    assert forced.forced and forced.previous == 2
    promoted = registry.version(name, 3)["history"][-1]
    assert promoted["event"] == "promoted" and promoted["forced"] is True and not promoted["gate"]["passed"]
    assert [v["stage"] for v in registry.versions(name)] == [ARCHIVED, ARCHIVED, PRODUCTION]

    back = registry.rollback(name)
    assert (back.version, back.previous) == (2, 3)
    assert [v["stage"] for v in registry.versions(name)] == [ARCHIVED, PRODUCTION, ARCHIVED]
    registry.rollback(name)
    assert registry.version(name)["version"] == 1
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        registry.rollback(name)

    events = [(e["version"], e["stage"], e["previous"]) for e in updates_for(stack.addresses.bootstrap_servers, name)]
    assert events == [
        (1, CANDIDATE, None),
        (1, PRODUCTION, None),
        (2, CANDIDATE, None),
        (2, PRODUCTION, 1),
        (1, ARCHIVED, None),
        (3, CANDIDATE, None),
        (3, PRODUCTION, 2),
        (2, ARCHIVED, None),
        (2, PRODUCTION, 3),
        (3, ARCHIVED, None),
        (1, PRODUCTION, 2),
        (2, ARCHIVED, None),
    ]


def test_load_recalibrate_and_errors(stack, registry, name, tmp_path):
    good = good_model(tmp_path)
    registry.register(name, good.output_dir)
    registry.promote(name, 1)
    loaded = registry.load(name)  # production
    rows = load_dataset(GeneratedSource(500, seed=11, fraud_rate=0.02)).frame
    assert np.array_equal(loaded.model.score_samples(rows), good.model.score_samples(rows))
    assert loaded.threshold.value == good.threshold.value and loaded.threshold.model_version == f"{name}:1"
    # every file of the training folder went up, one object each
    assert sorted(registry.version(name, 1)["files"]) == sorted(p.name for p in good.output_dir.iterdir())

    fresh = registry.recalibrate(name, 1, GeneratedSource(2_000, seed=12, fraud_rate=0.02), target=0.02)
    assert fresh.version == 2 and fresh.target == 0.02 and fresh.achieved["alert_rate"] <= 0.02
    assert registry.load(name, 1).threshold == fresh
    assert registry.version(name, 1)["threshold_version"] == 2
    last = updates_for(stack.addresses.bootstrap_servers, name)[-1]
    assert (last["stage"], last["threshold_version"]) == (PRODUCTION, 2)

    with pytest.raises(RegistryError, match="has no version 9"):
        registry.load(name, 9)
    with pytest.raises(RegistryError, match="only candidates can be promoted"):
        registry.promote(name, 1)
    with pytest.raises(RegistryError, match="metric must be one of"):
        registry.promote(name, 1, metric="accuracy")
    with pytest.raises(RegistryError, match="no model named"):
        registry.versions("no-such-model")
    assert name in registry.names()


def test_registry_index_uses_compare_and_swap(registry, name, tmp_path):
    """A write based on a stale index is refused by the store, so the registry re-reads and retries."""
    good = good_model(tmp_path)
    registry.register(name, good.output_dir)
    seen = []

    def change(index):
        seen.append(index["next_version"])
        if len(seen) == 1:  # someone else registers between our read and our write
            registry._update(name, lambda other: other.update(next_version=other["next_version"] + 5))
        index["note"] = "ours"

    registry._update(name, change)
    assert seen == [2, 7]  # the first attempt's write was refused; the retry saw the other writer's change
    assert registry.index(name)["next_version"] == 7 and registry.index(name)["note"] == "ours"
