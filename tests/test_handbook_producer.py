"""Handbook transactions as a producer reads them: event-time order, every bad row rejected with its position
and reason, the label never inside a transaction."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from producers.handbook import REQUIRED_COLUMNS, Transaction, frame_transactions, read_transactions
from producers.payments import PaymentFileError, Rejected


def rows() -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "TRANSACTION_ID": [0, 1, 2, 3],
            "TX_DATETIME": pd.to_datetime(
                ["2026-01-02 10:00:00", "2026-01-01 09:00:00", "2026-01-01 09:00:00", "2026-01-01 08:00:00"]
            ),  # fmt: skip
            "CUSTOMER_ID": [7, 7, 8, 9],
            "TERMINAL_ID": [70, 71, 80, 90],
            "TX_AMOUNT": [12.5, 300.0, 8.0, 1.0],
            "TX_TYPE": ["CP", "CNP", "CP", "CNP"],
            "TX_FRAUD": [0, 1, 0, 0],
        }
    )
    for i, column in enumerate(c for c in REQUIRED_COLUMNS if c.endswith(("_LAT", "_LONG"))):
        frame[column] = [-23.5 + i, -46.6 + i, -22.9, -43.2]
    return frame


def test_transactions_come_in_event_time_order_with_ties_in_file_order_and_no_label_inside() -> None:
    items = list(frame_transactions(rows()))
    assert all(isinstance(item, Transaction) for item in items)
    assert [t.id for t in items] == ["3", "1", "2", "0"]
    assert [t.label for t in items] == [0, 1, 0, 0]
    value = json.loads(items[1].encode())
    assert value["TX_ID"] == "1" and value["TX_DATETIME"] == "2026-01-01T09:00:00Z" and value["CUSTOMER_ID"] == "7"
    assert not any("FRAUD" in key or "LABEL" in key for key in value)


def test_bad_rows_are_rejected_with_their_csv_line_and_reason_and_the_rest_go_through(tmp_path: Path) -> None:
    frame = rows()
    frame["TX_DATETIME"] = frame["TX_DATETIME"].astype(str)
    frame.loc[1, "TX_AMOUNT"] = -5
    frame.loc[2, "TX_TERM_LAT"] = 91
    frame.loc[3, "TX_TYPE"] = "ATM"
    frame = pd.concat([frame, frame.iloc[[0]], frame.iloc[[0]].assign(TRANSACTION_ID=9, TX_DATETIME="yesterday")])
    frame = pd.concat([frame, frame.iloc[[0]].assign(TRANSACTION_ID=10, TX_FRAUD=2, CUSTOMER_ID="")])
    path = tmp_path / "transactions.csv"
    frame.to_csv(path, index=False)
    loaded, positions = read_transactions(path)
    items = list(frame_transactions(loaded, str(path), positions))
    rejected = [item for item in items if isinstance(item, Rejected)]
    assert [(r.line, r.reason) for r in rejected] == [
        (3, "TX_AMOUNT must be a number >= 0"),
        (4, "TX_TERM_LAT must be a latitude in [-90, 90]"),
        (5, "TX_TYPE must be CP or CNP"),
        (6, "TRANSACTION_ID 0 repeats position 2"),
        (7, "TX_DATETIME is not an ISO-8601 time"),
        (8, "CUSTOMER_ID is empty"),
    ]
    assert [t.id for t in items if isinstance(t, Transaction)] == ["0"]
    assert rejected[0].source == str(path) and rejected[0].text.startswith("1,")


def test_a_file_without_the_simulators_columns_is_refused_as_a_whole(tmp_path: Path) -> None:
    with pytest.raises(PaymentFileError, match="no column TX_TYPE"):
        list(frame_transactions(rows().drop(columns=["TX_TYPE"]), "x.parquet"))
    with pytest.raises(PaymentFileError, match="parquet or .csv"):
        read_transactions(tmp_path / "x.json")


def test_unlabelled_rows_are_sent_without_a_label() -> None:
    frame = rows().astype({"TX_FRAUD": object})
    frame.loc[0, "TX_FRAUD"] = None
    items = list(frame_transactions(frame))
    assert {t.id: t.label for t in items}["0"] is None
