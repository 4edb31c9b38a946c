"""What the statements serve is what training computes: the flagship's features of a burst of payments, read
from the live topic, equal the offline reference (models.reference) for every payment.

A burst is the hard case: the features (ksql/020) join each payment with a history table that another query
(014) fills from the same payments, two topics downstream. Had the join run ahead of the history, a payment
would miss its holder's earlier payments (train/serve skew: the model learns from exact histories and is
served stale ones). Had the history run ahead unchecked, a payment would see later ones (a leak). Both show
here as a difference from the reference, which counts exactly the holder's strictly earlier payments.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd
from click.testing import CliRunner
from confluent_kafka import Producer
from ksqldb_server_helpers import prefixed_statements, read_avro

from fraudstream.kafka import producer_config
from models.reference import BEHAVIOUR_COLUMNS, ID_COLUMN, served_features
from producers.generate import generate_payments
from producers.payments import frame_payments
from stack.ksqldb.apply import ksql_group
from stack.ksqldb.kafka_runtime import PARTITIONER

PAYMENTS = 3_000


def test_features_of_a_burst_equal_the_offline_reference(stack, server, tmp_path: Path) -> None:
    addresses = stack.addresses
    prefix = f"burst{uuid.uuid4().hex[:6]}"
    statements = prefixed_statements(tmp_path / "ksql", prefix, only=("010", "012", "014", "020"))
    result = CliRunner().invoke(ksql_group, ["--url", addresses.ksqldb_url, "apply", str(statements)])
    assert result.exit_code == 0, result.output

    frame = generate_payments(PAYMENTS, seed=23)
    producer = Producer(producer_config(addresses.bootstrap_servers, partitioner=PARTITIONER))
    for payment in frame_payments(frame):  # as fast as the broker takes them, each with its own time
        producer.produce(f"{prefix}_creditcardfraud_source", key=payment.key(), value=payment.encode())
        producer.poll(0)
    assert producer.flush(30) == 0

    served = read_avro(addresses, f"{prefix}_creditcardfraud_preprocessed_avro", PAYMENTS, timeout=180.0)
    live = pd.DataFrame([value for _, value in served]).set_index(ID_COLUMN)
    reference = served_features(frame).set_index(ID_COLUMN)
    assert sorted(live.index) == sorted(reference.index)
    live = live.loc[reference.index]
    assert reference["USER_PAYMENTS_1D"].sum() > PAYMENTS // 3, "too few repeat payments to tell anything"
    for column in BEHAVIOUR_COLUMNS:
        differs = ~np.isclose(live[column].to_numpy(float), reference[column].to_numpy(float), rtol=1e-9, atol=1e-6)
        assert not differs.any(), (
            f"{column}: {differs.sum()} of {PAYMENTS} payments served differently from the reference, e.g. "
            f"{live.loc[differs, column].head(3).to_dict()} instead of {reference.loc[differs, column].head(3).to_dict()}"
        )
