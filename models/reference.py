"""The offline reference of the flagship's statements: what `ksql/020-preprocessed.sql` serves, from payments.

Models are trained on the features as the stream served them (the topic, or the lake). Payment files
(CSV, generated) have no served features, so their datasets are put through this reference, which
computes the same columns with pandas; a parity test runs the statements in the engine on the same
payments and compares the two, so the reference cannot drift from the statements unnoticed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from producers.payments import FEATURES

#: Identity and event time of a served record (ksql/020 keeps them last; they are not model inputs).
ID_COLUMN = "ID"
EVENT_TIME_COLUMN = "EVENT_TIME"


def served_features(payments: pd.DataFrame) -> pd.DataFrame:
    """The served columns of `payments` (the extended layout: Id, Timestamp, V1..V28, Amount[, Class]).

    HOUR_OF_DAY is the UTC hour of the payment's time; V1..V28 and AMOUNT pass through; ID and EVENT_TIME
    (milliseconds since the epoch) close the record, as the statement writes them. A Class column, when
    present, is kept as the label.
    """
    stamps = pd.to_datetime(payments["Timestamp"], utc=True, format="ISO8601")
    served = pd.DataFrame({"HOUR_OF_DAY": stamps.dt.hour.astype(np.float64).to_numpy()})
    for name in FEATURES:
        served[name.upper()] = payments[name].to_numpy(dtype=np.float64)
    served["AMOUNT"] = payments["Amount"].to_numpy(dtype=np.float64)
    served[ID_COLUMN] = payments["Id"].astype(str).to_numpy()
    epoch = pd.Timestamp(0, tz="UTC")
    served[EVENT_TIME_COLUMN] = ((stamps - epoch) // pd.Timedelta(milliseconds=1)).to_numpy(dtype=np.int64)
    if "Class" in payments.columns:
        served["Class"] = payments["Class"].to_numpy(dtype=np.int8)
    return served
