"""The offline reference of the handbook pipeline's statements (`ksql/handbook/`): its features, with pandas and NumPy.

The features are defined by the statements; this module computes the same columns from the raw
transactions so that a data scientist can compare, and so that a parity test can hold the two equal (any
difference is a bug in one of them). It follows the statements as they run when every query is current:

- a customer's features see the customer's latest HISTORY transactions up to this one, in arrival order
  (replay order: event time, ties in file order), of which those strictly earlier in time count;
- a terminal's features see the latest HISTORY labels of the terminal's transactions that arrived before
  this transaction (a replay sends each label, known at its transaction's time + the delay, before any later
  transaction; labels known at the same moment in transaction-id order), of which those whose transaction
  lies in the window ending one label delay before this one, and which were known strictly before it, count.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

import numpy as np
import pandas as pd

from models.reference import EVENT_TIME_COLUMN, ID_COLUMN
from producers.handbook import Transaction
from producers.labels import DEFAULT_LABEL_DELAY
from producers.payments import Rejected

#: Entries each history table keeps per customer or terminal (LATEST_BY_OFFSET(..., 200)).
HISTORY = 200
DAY_MS = 86_400_000
#: The statements' windows, in days, and the label delay their terminal windows end at (060-features.sql).
WINDOWS = (1, 7, 30)
DELAY_MS = 7 * DAY_MS
EARTH_RADIUS_KM = 6371.0
#: The served columns, in the order 060-features.sql serves them (the key, TRANSACTION_ID, is not a value).
OWN_COLUMNS = (
    "TX_AMOUNT",
    "TX_CNP",
    "TX_DURING_WEEKEND",
    "TX_DURING_NIGHT",
    "BILLING_TERMINAL_KM",
    "BILLING_SHIPPING_KM",
)
CUSTOMER_COLUMNS = tuple(c for d in WINDOWS for c in (f"CUSTOMER_NB_TX_{d}DAY", f"CUSTOMER_AVG_AMOUNT_{d}DAY"))
TERMINAL_COLUMNS = tuple(c for d in WINDOWS for c in (f"TERMINAL_NB_TX_{d}DAY", f"TERMINAL_RISK_{d}DAY"))
FEATURE_COLUMNS = OWN_COLUMNS + CUSTOMER_COLUMNS + TERMINAL_COLUMNS
CUSTOMER_ID_COLUMN = "CUSTOMER_ID"
#: The raw transaction fields alone (amount, card-not-present, time of day): the baseline the goals compare with.
RAW_COLUMNS = ("TX_AMOUNT", "TX_CNP", "HOUR_OF_DAY")


def served_features(
    items: Iterable[Transaction | Rejected], label_delay: timedelta = DEFAULT_LABEL_DELAY
) -> pd.DataFrame:
    """The served columns of the transactions among ``items`` (in replay order), and ``Class`` when all are labelled.

    Rejected rows are skipped (a replay dead-letters them). Labels become known ``label_delay`` after their
    transaction, as a replay sends them.
    """
    rows = [item for item in items if isinstance(item, Transaction)]
    times = np.array([round(r.timestamp.timestamp() * 1000) for r in rows], dtype=np.int64)
    amounts = np.array([r.amount for r in rows], dtype=np.float64)
    locations = np.array([r.locations for r in rows], dtype=np.float64).reshape(len(rows), 6)
    served = pd.DataFrame({"TX_AMOUNT": amounts})
    served["TX_CNP"] = np.array([r.tx_type == "CNP" for r in rows], dtype=np.float64)
    served["TX_DURING_WEEKEND"] = ((times // DAY_MS + 3) % 7 >= 5).astype(np.float64)
    served["TX_DURING_NIGHT"] = (times % DAY_MS < 7 * 3_600_000).astype(np.float64)
    served["BILLING_TERMINAL_KM"] = geo_distance(*locations[:, 0:4].T)
    served["BILLING_SHIPPING_KM"] = geo_distance(*locations[:, 0:2].T, *locations[:, 4:6].T)
    customers = pd.Series([r.customer for r in rows], dtype=object)
    for name, values in _customer_features(customers, times, amounts).items():
        served[name] = values
    labels = np.array([-1 if r.label is None else r.label for r in rows], dtype=np.int64)
    known = times + round(label_delay.total_seconds() * 1000)
    terminals = pd.Series([r.terminal for r in rows], dtype=object)
    ids = np.array([r.id for r in rows], dtype=object)
    for name, values in _terminal_features(terminals, times, labels, known, ids).items():
        served[name] = values
    served[CUSTOMER_ID_COLUMN] = customers.to_numpy()
    served[ID_COLUMN] = ids
    served[EVENT_TIME_COLUMN] = times
    if (labels >= 0).all():
        served["Class"] = labels.astype(np.int8)
    return served


def raw_fields(served: pd.DataFrame) -> pd.DataFrame:
    """The raw transaction fields alone, beside the identities and label: what a model sees without features."""
    raw = served[["TX_AMOUNT", "TX_CNP"]].copy()
    raw["HOUR_OF_DAY"] = (served[EVENT_TIME_COLUMN].to_numpy() % DAY_MS // 3_600_000).astype(np.float64)
    for column in (CUSTOMER_ID_COLUMN, ID_COLUMN, EVENT_TIME_COLUMN, "Class"):
        if column in served.columns:
            raw[column] = served[column].to_numpy()
    return raw


def geo_distance(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    """Great-circle distance in km, by ksqlDB's GEO_DISTANCE formula (haversine, atan2, radius 6371 km)."""
    dlat, dlon = np.radians(lat2 - lat1), np.radians(lon2 - lon1)
    a = np.sin(dlat / 2) ** 2 + np.cos(np.radians(lat1)) * np.cos(np.radians(lat2)) * np.sin(dlon / 2) ** 2
    return 2 * np.arctan2(np.sqrt(a), np.sqrt(1 - a)) * EARTH_RADIUS_KM


def _customer_features(customers: pd.Series, times: np.ndarray, amounts: np.ndarray) -> dict[str, np.ndarray]:
    out = {name: np.zeros(len(times)) for name in CUSTOMER_COLUMNS}
    for rows in pd.Series(np.arange(len(times))).groupby(customers.to_numpy()).agg(list):
        rows = np.asarray(rows)
        t, a = times[rows], amounts[rows]
        previous = np.arange(len(rows))[:, None] - np.arange(1, HISTORY)[None, :]  # the table holds this one too
        valid = previous >= 0
        pt = np.where(valid, t[np.clip(previous, 0, None)], 0)
        pa = np.where(valid, a[np.clip(previous, 0, None)], 0.0)
        earlier = valid & (pt < t[:, None])
        for days in WINDOWS:
            inside = earlier & (pt >= t[:, None] - days * DAY_MS)
            count = inside.sum(axis=1)
            total = np.where(inside, pa, 0.0).sum(axis=1)
            out[f"CUSTOMER_NB_TX_{days}DAY"][rows] = count
            with np.errstate(divide="ignore", invalid="ignore"):
                out[f"CUSTOMER_AVG_AMOUNT_{days}DAY"][rows] = np.where(count > 0, total / count, 0.0)
    return out


def _terminal_features(
    terminals: pd.Series, times: np.ndarray, labels: np.ndarray, known: np.ndarray, ids: np.ndarray
) -> dict[str, np.ndarray]:
    out = {name: np.zeros(len(times)) for name in TERMINAL_COLUMNS}
    for rows in pd.Series(np.arange(len(times))).groupby(terminals.to_numpy()).agg(list):
        rows = np.asarray(rows)
        labelled = rows[labels[rows] >= 0]
        arrival = labelled[np.lexsort((ids[labelled].astype(str), known[labelled]))]  # (known, id): replay order
        lt, lk, lf = times[arrival], known[arrival], labels[arrival]
        t = times[rows]
        arrived = np.searchsorted(lk, t, side="right")  # labels known by the transaction's time came before it
        entry = arrived[:, None] - np.arange(1, HISTORY + 1)[None, :]
        valid = entry >= 0
        et = np.where(valid, lt[np.clip(entry, 0, None)], 0)
        ek = np.where(valid, lk[np.clip(entry, 0, None)], 0)
        ef = np.where(valid, lf[np.clip(entry, 0, None)], 0)
        for days in WINDOWS:
            inside = valid & (et >= t[:, None] - DELAY_MS - days * DAY_MS) & (et < t[:, None] - DELAY_MS)
            inside &= ek < t[:, None]
            count = inside.sum(axis=1)
            frauds = np.where(inside, ef, 0).sum(axis=1)
            out[f"TERMINAL_NB_TX_{days}DAY"][rows] = count
            with np.errstate(divide="ignore", invalid="ignore"):
                out[f"TERMINAL_RISK_{days}DAY"][rows] = np.where(count > 0, frauds / count, 0.0)
    return out
