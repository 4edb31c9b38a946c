"""The handbook pipeline's offline reference computes what its statements serve (ksql/handbook/): a replay of
the simulator's transactions and their labels through the engine (in memory, no server) and through
models.handbook_reference give the same columns and values, for every transaction."""

from __future__ import annotations

import io
from collections.abc import Iterable
from datetime import timedelta

import fastavro
import numpy as np
import pandas as pd
import pytest

from fraudstream import wire
from fraudstream.handbook import feature_statements
from models.handbook_reference import FEATURE_COLUMNS, HISTORY, served_features
from producers.handbook import Transaction, frame_transactions, generate_transactions
from producers.labels import DEFAULT_LABEL_DELAY, PendingLabels
from producers.payments import Rejected
from stack.ksqldb.engine import Engine
from stack.ksqldb.formats import InMemorySchemaRegistry
from stack.ksqldb.records import Record
from stack.ksqldb.runtime import InMemoryRuntime


def served_by_the_statements(
    items: Iterable[Transaction | Rejected], delay: timedelta = DEFAULT_LABEL_DELAY
) -> pd.DataFrame:
    """The features topic's records after a replay of ``items``: each label sent before any later transaction."""
    engine = Engine(InMemorySchemaRegistry(), InMemoryRuntime(), {"auto.offset.reset": "earliest"})
    for path in feature_statements():
        engine.execute(path.read_text())
    pending = PendingLabels(delay)

    def send_labels(labels) -> None:
        for label in labels:
            engine.runtime.produce(Record("handbook_labels", label.key(), label.encode(), label.timestamp_ms))

    for item in items:
        if isinstance(item, Rejected):
            continue
        send_labels(pending.due(item.timestamp))
        timestamp_ms = round(item.timestamp.timestamp() * 1000)
        engine.runtime.produce(Record("handbook_transactions", item.key(), item.encode(), timestamp_ms))
        pending.hold(item)
        send_labels(pending.due(item.timestamp))
    send_labels(pending.drain())
    rows = []
    for record in engine.runtime.topics["handbook_features"]:
        schema_id, body = wire.unframe(record.value)
        schema = fastavro.parse_schema(engine.registry.schema_by_id(schema_id))
        rows.append(fastavro.schemaless_reader(io.BytesIO(body), schema, None))
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def simulated() -> list[Transaction | Rejected]:
    """35 simulated days of 64 customers and 128 terminals: every fraud scenario, windows full and empty."""
    return list(frame_transactions(generate_transactions(customers=64, days=35, seed=5)))


def test_the_reference_serves_what_the_statements_serve_for_every_transaction(simulated) -> None:
    streamed = served_by_the_statements(simulated).sort_values("ID").reset_index(drop=True)
    offline = served_features(simulated).drop(columns=["Class"]).sort_values("ID").reset_index(drop=True)
    assert len(offline) == len(simulated) > 1000
    assert list(streamed.columns) == list(offline.columns)
    assert streamed["ID"].tolist() == offline["ID"].tolist()
    assert streamed["CUSTOMER_ID"].tolist() == offline["CUSTOMER_ID"].tolist()
    for column in [*FEATURE_COLUMNS, "EVENT_TIME"]:  # sums may add in another order: equal to the last bits
        np.testing.assert_allclose(streamed[column].to_numpy(np.float64), offline[column].to_numpy(np.float64),
                                   rtol=1e-12, atol=1e-9, err_msg=column)  # fmt: skip
    for column in FEATURE_COLUMNS:  # every feature varies: none is constantly 0 by a mistake in both
        assert offline[column].nunique() > 1, column
    assert offline["TERMINAL_RISK_30DAY"].gt(0).any() and offline["CUSTOMER_NB_TX_30DAY"].max() < HISTORY
