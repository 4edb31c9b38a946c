"""The offline reference of the flagship's statements: what `ksql/020-preprocessed.sql` serves, from payments.

Models are trained on the features as the stream served them (the topic, or the lake). Payment files
(CSV, generated) have no served features, so their datasets are put through this reference, which
computes the same columns with pandas and NumPy; a parity test runs the statements in the engine on the
same payments and compares the two, so the reference cannot drift from the statements unnoticed.

The behavioural columns follow `ksql/014-user-history.sql` and `020`: for each payment, the holder's
latest HISTORY payments up to and including this one (in arrival order), of which only those strictly
earlier in time count. That is what the statements compute when the history table is current; a real
deployment may see a lagging table (fewer earlier payments), never a later one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from producers.payments import FEATURES

#: Identity and event time of a served record (ksql/020 keeps them last; they are not model inputs).
ID_COLUMN = "ID"
EVENT_TIME_COLUMN = "EVENT_TIME"
#: Payments the history table keeps per card holder (LATEST_BY_OFFSET(..., 100)).
HISTORY = 100
HOUR_MS, DAY_MS = 3_600_000, 86_400_000
BEHAVIOUR_COLUMNS = (
    "USER_PAYMENTS_1H",
    "USER_AMOUNT_1H",
    "USER_PAYMENTS_1D",
    "USER_AMOUNT_1D",
    "AMOUNT_TO_USER_AVERAGE",
    "SECONDS_SINCE_PREVIOUS",
)


def served_features(payments: pd.DataFrame) -> pd.DataFrame:
    """The served columns of `payments` (the extended layout: Id, Timestamp, User, V1..V28, Amount[, Class]).

    Rows keep their order, which is taken as arrival order. A Class column, when present, is kept as
    the label.
    """
    stamps = pd.to_datetime(payments["Timestamp"], utc=True, format="ISO8601")
    epoch = pd.Timestamp(0, tz="UTC")
    times = ((stamps - epoch) // pd.Timedelta(milliseconds=1)).to_numpy(dtype=np.int64)
    amounts = payments["Amount"].to_numpy(dtype=np.float64)
    served = pd.DataFrame({"HOUR_OF_DAY": stamps.dt.hour.astype(np.float64).to_numpy()})
    for name in FEATURES:
        served[name.upper()] = payments[name].to_numpy(dtype=np.float64)
    served["AMOUNT"] = amounts
    behaviour = _behaviour(payments["User"] if "User" in payments else None, times, amounts)
    for name in BEHAVIOUR_COLUMNS:
        served[name] = behaviour[name]
    served[ID_COLUMN] = payments["Id"].astype(str).to_numpy()
    served[EVENT_TIME_COLUMN] = times
    if "Class" in payments.columns:
        served["Class"] = payments["Class"].to_numpy(dtype=np.int8)
    return served


def _behaviour(users: pd.Series | None, times: np.ndarray, amounts: np.ndarray) -> dict[str, np.ndarray]:
    n = len(times)
    out = {name: np.zeros(n) for name in BEHAVIOUR_COLUMNS}
    out["AMOUNT_TO_USER_AVERAGE"][:] = 1.0
    out["SECONDS_SINCE_PREVIOUS"][:] = -1.0
    if users is None:
        return out
    known = users.notna().to_numpy() & (users.astype(str).str.len() > 0).to_numpy()
    for rows in pd.Series(np.flatnonzero(known)).groupby(users[known].to_numpy()).agg(list):
        rows = np.asarray(rows)
        t, a = times[rows], amounts[rows]
        m = len(rows)
        lag = np.arange(1, HISTORY)  # the 99 payments before this one in arrival order (the 100th is itself)
        previous = np.arange(m)[:, None] - lag[None, :]
        valid = previous >= 0
        pt = np.where(valid, t[np.clip(previous, 0, None)], 0)
        pa = np.where(valid, a[np.clip(previous, 0, None)], 0.0)
        earlier = valid & (pt < t[:, None])
        hour = earlier & (pt >= t[:, None] - HOUR_MS)
        day = earlier & (pt >= t[:, None] - DAY_MS)
        out["USER_PAYMENTS_1H"][rows] = hour.sum(axis=1)
        out["USER_AMOUNT_1H"][rows] = np.where(hour, pa, 0.0).sum(axis=1)
        out["USER_PAYMENTS_1D"][rows] = day.sum(axis=1)
        out["USER_AMOUNT_1D"][rows] = np.where(day, pa, 0.0).sum(axis=1)
        count = earlier.sum(axis=1)
        total = np.where(earlier, pa, 0.0).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = a * count / total
        out["AMOUNT_TO_USER_AVERAGE"][rows] = np.where(total > 0, ratio, 1.0)
        latest = np.where(earlier, pt, np.iinfo(np.int64).min).max(axis=1)
        out["SECONDS_SINCE_PREVIOUS"][rows] = np.where(count > 0, (t - latest) / 1000, -1.0)
    return out
