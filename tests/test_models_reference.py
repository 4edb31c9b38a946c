"""The offline reference computes what the statements serve: the same payments through ksql/ in the engine
(in memory, no server) and through models.reference give the same columns and values."""

from __future__ import annotations

import io
from pathlib import Path

import fastavro
import numpy as np
import pandas as pd
from ksqldb_server_helpers import registry_with_scores

from fraudstream import wire
from models.reference import served_features
from producers.generate import generate_payments
from producers.payments import frame_payments
from stack.ksqldb.engine import Engine
from stack.ksqldb.records import Record
from stack.ksqldb.runtime import InMemoryRuntime

KSQL = Path(__file__).resolve().parents[1] / "ksql"


def served_by_the_statements(payments: pd.DataFrame) -> pd.DataFrame:
    engine = Engine(registry_with_scores(), InMemoryRuntime(), {"auto.offset.reset": "earliest"})
    for path in sorted(KSQL.glob("*.sql")):
        engine.execute(path.read_text())
    for payment in frame_payments(payments):
        timestamp_ms = round(payment.timestamp.timestamp() * 1000)
        engine.runtime.produce(Record("creditcardfraud_source", payment.key(), payment.encode(), timestamp_ms))
    rows = []
    for record in engine.runtime.topics["creditcardfraud_preprocessed_avro"]:
        schema_id, body = wire.unframe(record.value)
        schema = fastavro.parse_schema(engine.registry.schema_by_id(schema_id))
        rows.append(fastavro.schemaless_reader(io.BytesIO(body), schema, None))
    return pd.DataFrame(rows)


def test_the_reference_serves_what_the_statements_serve() -> None:
    payments = generate_payments(300, seed=12, fraud_rate=0.05)
    payments["Timestamp"] = [  # spread over days and hours, with and without milliseconds
        (pd.Timestamp("2026-12-01T00:00:00Z") + pd.Timedelta(minutes=23 * i, milliseconds=250 * (i % 2)))
        .isoformat().replace("+00:00", "Z")
        for i in range(len(payments))
    ]  # fmt: skip
    payments["User"] = payments["User"].where(payments.index % 10 != 0, None)  # some payments without a holder
    payments.loc[payments["User"].notna(), "User"] = [f"holder{i % 12}" for i in range(payments["User"].notna().sum())]
    streamed = served_by_the_statements(payments).sort_values("ID").reset_index(drop=True)
    offline = served_features(payments).drop(columns=["Class"]).sort_values("ID").reset_index(drop=True)
    assert list(streamed.columns) == list(offline.columns)
    for column in offline.columns:
        if column == "ID":
            assert streamed[column].tolist() == offline[column].tolist()
        else:  # sums may add in another order: equal to the last bits
            np.testing.assert_allclose(
                streamed[column].to_numpy(np.float64), offline[column].to_numpy(np.float64), rtol=1e-12, err_msg=column
            )
    assert set(offline["HOUR_OF_DAY"]) == set(range(24))
    assert (offline["USER_PAYMENTS_1D"] > 0).mean() > 0.5 and (offline["SECONDS_SINCE_PREVIOUS"] == -1).any()


def test_no_served_column_carries_the_label() -> None:
    payments = generate_payments(50, seed=1, fraud_rate=0.2)
    served = served_by_the_statements(payments)
    assert not any(c.upper() in ("CLASS", "LABEL") for c in served.columns)


def test_the_reference_keeps_the_history_tables_cap_and_users_left_empty() -> None:
    payments = generate_payments(260, seed=3).astype({"User": object})
    payments["User"] = ["Kai" if i % 5 else None for i in range(len(payments))]  # > 100 payments of one holder
    payments["Timestamp"] = [
        (pd.Timestamp("2026-12-01T00:00:00Z") + pd.Timedelta(seconds=90 * (i // 2))).isoformat().replace("+00:00", "Z")
        for i in range(len(payments))
    ]  # two payments per instant: an equal time is not earlier
    streamed = served_by_the_statements(payments).sort_values("ID").reset_index(drop=True)
    offline = served_features(payments).drop(columns=["Class"]).sort_values("ID").reset_index(drop=True)
    for column in ("USER_PAYMENTS_1H", "USER_AMOUNT_1D", "AMOUNT_TO_USER_AVERAGE", "SECONDS_SINCE_PREVIOUS"):
        np.testing.assert_allclose(streamed[column], offline[column], rtol=1e-12, err_msg=column)
    assert offline["USER_PAYMENTS_1D"].max() == 99  # the table keeps 100: this one and 99 before it
