"""The handbook pipeline goes through the flagship's machinery, on the session stack: simulated transactions are
replayed (labels a week of event time later), ksql/handbook/ serves their features, a worker scores them into the
pipeline's own scores topic with the pipeline's own model, the lake fills, both kinds train on the lake with the
labels known at a cutoff, the gate promotes, the running worker switches, and live quality counts its outcomes.
Names get a unique prefix so nothing collides with other tests (or with the flagship's model and topics)."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
from test_loop import model_versions, scoring_versions, size, wait_until, worker_metric

from connectors.client import ConnectClient
from connectors.lake import list_objects
from fraudstream.handbook import STATEMENTS, feature_statements
from models.autoencoder import Autoencoder
from models.baseline import LogisticBaseline
from models.datasets import Dataset, KafkaSource, LakeSource, ServedSource
from models.handbook_reference import FEATURE_COLUMNS, served_features
from models.registry import ModelRegistry
from models.training import train
from producers.handbook import Transaction, frame_transactions, generate_transactions
from producers.replay import replay
from stack.embedded import EmbeddedStack
from stack.ksqldb.apply import KsqlRest
from stack.supervisor import free_port
from streams.cli import start_worker
from streams.quality import read_live_quality

REPO = Path(__file__).resolve().parents[1]
PREFIX = "hbloop_"


def prefixed(text: str) -> str:
    return text.replace("handbook_", f"{PREFIX}handbook_").replace("handbook-scores", f"{PREFIX}handbook-scores")


def test_replay_features_score_lake_train_promote_and_the_worker_switches(stack: EmbeddedStack, tmp_path: Path) -> None:
    addresses, bootstrap = stack.addresses, stack.addresses.bootstrap_servers
    source, labels = f"{PREFIX}handbook_transactions", f"{PREFIX}handbook_labels"
    features, scores, model = f"{PREFIX}handbook_features", f"{PREFIX}handbook-scores", f"{PREFIX}handbook"
    ksql = KsqlRest(addresses.ksqldb_url)
    for path in feature_statements():
        answer = ksql.ksql(prefixed(path.read_text()), {"auto.offset.reset": "earliest"})
        assert all("errorMessage" not in a for a in answer), answer
    sink = json.loads((REPO / "connectors" / "handbook" / "s3-sink-handbook-features.json").read_text())["config"]
    sink.update({"topics": features, "flush.size": "500", "errors.deadletterqueue.topic.name": f"{features}-s3-dlq"})
    connect = ConnectClient(addresses.connect_url)
    connect.create(f"{PREFIX}s3-sink", sink)

    # A first production model that learnt nothing: another simulation's offline features with shuffled labels.
    registry = ModelRegistry.from_addresses(addresses, cache_dir=tmp_path / "registry-cache")
    other = served_features(frame_transactions(generate_transactions(customers=64, days=10, seed=1)))
    other["Class"] = np.random.default_rng(1).permutation(other["Class"].to_numpy())
    first = train(Dataset(other, {"source": {"kind": "handbook offline reference, labels shuffled"}}, []),
                  LogisticBaseline(), output_dir=tmp_path / "v1")  # fmt: skip
    v1 = registry.register(model, first.output_dir)["version"]
    registry.promote(model, v1, force=True)

    port = free_port()
    env = {**os.environ, **addresses.to_env(), "FRAUDSTREAM_MODEL_CACHE": str(tmp_path / "cache")}
    overrides = {"INPUT_TOPIC": features, "SCORES_TOPIC": scores, "SHADOW_TOPIC": f"{scores}-shadow",
                 "GROUP": f"{PREFIX}scoring", "MODEL": model, "WEB_PORT": port, "DATA_DIR": tmp_path / "workers",
                 "POLL_SECONDS": 2, "QUALITY_SECONDS": 2, "QUALITY_TABLE": f"{PREFIX}HANDBOOK_LIVE_QUALITY",
                 "DRIFT_EVENTS": 500}  # fmt: skip
    proc = start_worker(overrides, tmp_path / "worker.log", env)
    try:
        items = list(frame_transactions(generate_transactions(customers=64, days=16, seed=2)))
        sent = sum(isinstance(item, Transaction) for item in items)
        summary = replay(items, bootstrap_servers=bootstrap, topic=source, labels_topic=labels)
        assert summary.ok and summary.acknowledged == summary.labels_acknowledged == sent
        wait_until(lambda: size(bootstrap, scores) >= sent, "a score for every transaction", proc=proc)
        assert set(model_versions(stack, scores)) == {v1}
        answer = ksql.ksql(
            prefixed((STATEMENTS / "090-live-quality.sql").read_text()), {"auto.offset.reset": "earliest"}
        )
        assert all("errorMessage" not in a for a in answer), answer  # the worker has registered the scores' schema

        # Both kinds train on the lake with the labels known at a cutoff a week before the end: no later label.
        wait_until(lambda: len(list_objects(addresses.bucket, features, endpoint_url=addresses.s3_endpoint_url)) >= 4,
                   "the lake to fill")  # fmt: skip
        lake = LakeSource(features, addresses.bucket, endpoint_url=addresses.s3_endpoint_url)
        cutoff = "2026-01-15T00:00:00Z"
        served = ServedSource(lake, KafkaSource(labels, None, bootstrap, value_format="json"), cutoff)
        second = train(served, LogisticBaseline(), output_dir=tmp_path / "v2")
        assert set(second.model.feature_names) == set(FEATURE_COLUMNS)  # CUSTOMER_ID, ID, EVENT_TIME are not inputs
        frame = second.dataset.frame
        assert (
            frame["EVENT_TIME"].max() < 1_767_830_400_000
        )  # labelled by the cutoff: before 2026-01-08, a week earlier
        assert second.dataset.description["source"]["features"]["kind"] == "lake"
        autoencoder = train(served, Autoencoder(epochs=2, seed=4), output_dir=tmp_path / "v3")
        registry.register(model, autoencoder.output_dir)
        v2 = registry.register(model, second.output_dir)["version"]
        registry.promote(model, v2)  # through the gate: it must beat v1 on the same held-out rows

        wait_until(lambda: scoring_versions(port) == {str(v2)}, "the worker to switch", proc=proc)
        more = frame_transactions(generate_transactions(customers=64, days=3, seed=3))
        more = [replace(t, id=f"more-{t.id}") for t in more if isinstance(t, Transaction)]
        replay(more, bootstrap_servers=bootstrap, topic=source, labels_topic=labels)
        wait_until(lambda: size(bootstrap, scores) >= sent + len(more), "scores of the new transactions", proc=proc)
        assert Counter(model_versions(stack, scores))[v2] == len(more)
        assert size(bootstrap, f"{features}-dlq") == 0

        # Live quality over this pipeline's scores and labels, as the worker exports it.
        wait_until(lambda: any(v > 0 for _, v in worker_metric(port, "fraudstream_live_labelled")),
                   "live quality on the worker", proc=proc)  # fmt: skip
        rows = read_live_quality(addresses.ksqldb_url, f"{PREFIX}HANDBOOK_LIVE_QUALITY")
        assert rows and {row.model for row in rows} == {model} and sum(row.labelled for row in rows) > 0
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        connect.request("DELETE", f"/connectors/{PREFIX}s3-sink")
        connect.close()
