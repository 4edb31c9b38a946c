"""Synthetic card payments that look like the Kaggle data and carry a learnable fraud signal.

Normal payments: V1..V28 are a correlated Gaussian with the per-feature scales of the real PCA
components (which shrink from V1 to V28). Frauds shift the means of the features that separate fraud
in the real data (V1..V4, V7, V9..V12, V14, V16..V18) by a random fraction of the real fraud means,
spread wider, and have a more variable Amount: an autoencoder trained on normal payments
reconstructs them worse, as it does on the real data. The same seed always gives the same payments.
"""

from __future__ import annotations

import csv
from typing import TextIO

import click
import numpy as np
import pandas as pd

from producers.payments import (
    EXTENDED_COLUMNS,
    FEATURES,
    KAGGLE_COLUMNS,
    KAGGLE_EPOCH,
    Layout,
)
from producers.replay import kafka_options, run_with_progress

DEFAULT_FRAUD_RATE = 0.0017

#: Standard deviations of V1..V28 in the Kaggle data set (PCA components, largest first).
FEATURE_SCALES = np.array(
    [1.96, 1.65, 1.52, 1.42, 1.38, 1.33, 1.24, 1.19, 1.10, 1.09, 1.02, 1.00, 0.995, 0.959,
     0.915, 0.876, 0.849, 0.838, 0.814, 0.771, 0.735, 0.726, 0.624, 0.606, 0.521, 0.482, 0.404, 0.330]
)  # fmt: skip

#: Mean of each feature over the frauds of the Kaggle data set, on the features where it stands out.
FRAUD_MEANS = {
    "V1": -4.77, "V2": 3.62, "V3": -7.03, "V4": 4.54, "V7": -5.57, "V9": -2.58, "V10": -5.68,
    "V11": 3.80, "V12": -6.26, "V14": -6.97, "V16": -4.14, "V17": -6.67, "V18": -2.25,
}  # fmt: skip

#: Card holders: the extended sample's users first, then numbered ones. 3,000 of them make about two
#: payments an hour each at the Kaggle rate, as card holders do, so that a holder's last day of payments
#: fits in the 100 the history table keeps (ksql/014); with only the 30 named ones, each paid every 18 s.
_NAMED_USERS = (
    "Kai", "Hans", "Flo", "Dirk", "Anna", "Ben", "Clara", "David", "Elena", "Felix", "Greta", "Hugo",
    "Ines", "Jonas", "Karin", "Lena", "Marco", "Nina", "Oskar", "Paula", "Quentin", "Rosa", "Sven",
    "Tara", "Uwe", "Vera", "Wim", "Xenia", "Yusuf", "Zoe",
)  # fmt: skip
USERS: tuple[str, ...] = (*_NAMED_USERS, *(f"holder{i:04d}" for i in range(len(_NAMED_USERS), 3_000)))

#: The Kaggle data set holds 284,807 payments over 172,792 seconds: one every ~0.61 s on average.
MEAN_SECONDS_BETWEEN = 172_792 / 284_807

#: Fixed, so the shape of "normal" is the same for every seed; only the draws depend on the seed.
_STRUCTURE_SEED = 2013


def _feature_cholesky() -> np.ndarray:
    """A fixed covariance with the real scales and mild correlation (three latent factors), factorised."""
    factors = np.random.default_rng(_STRUCTURE_SEED).normal(scale=0.35, size=(len(FEATURES), 3))
    covariance = np.eye(len(FEATURES)) + factors @ factors.T
    stddev = np.sqrt(np.diag(covariance))
    correlation = covariance / np.outer(stddev, stddev)
    return np.linalg.cholesky(correlation * np.outer(FEATURE_SCALES, FEATURE_SCALES))


def generate_payments(
    n: int, seed: int = 0, fraud_rate: float = DEFAULT_FRAUD_RATE, start_seconds: float = 0.0
) -> pd.DataFrame:
    """`n` payments with the extended layout's columns (Id, Timestamp, User, Time, V1..V28, Amount, Class).

    Exactly round(n * fraud_rate) of them are frauds, at random positions, so that small samples still
    carry the expected number. Ids are `gen<seed>-<n>`, Time counts whole seconds from `start_seconds`
    (the first payment) and Timestamp is KAGGLE_EPOCH + Time, as for a replayed Kaggle file; a stream
    generated in chunks goes on in time by starting each chunk after the last.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 <= fraud_rate <= 1.0:
        raise ValueError(f"fraud_rate must be between 0 and 1, got {fraud_rate}")
    rng = np.random.default_rng(seed)
    label = np.zeros(n, dtype=np.int64)
    label[rng.choice(n, size=round(n * fraud_rate), replace=False)] = 1
    fraud = label == 1

    features = rng.standard_normal((n, len(FEATURES))) @ _feature_cholesky().T
    shift = np.zeros(len(FEATURES))
    for name, mean in FRAUD_MEANS.items():
        shift[FEATURES.index(name)] = mean
    n_fraud = int(fraud.sum())
    intensity = rng.uniform(0.1, 1.2, size=(n_fraud, 1))  # some frauds look almost normal, as in life
    features[fraud] = features[fraud] * 1.8 + intensity * shift

    amount = np.where(
        fraud,
        rng.lognormal(mean=2.3, sigma=2.0, size=n),
        rng.lognormal(mean=3.0, sigma=1.35, size=n),
    )
    amount = np.round(np.clip(amount, 0.0, 25_691.16), 2)

    gaps = rng.exponential(MEAN_SECONDS_BETWEEN, size=n)
    time = np.floor(start_seconds + np.cumsum(gaps) - (gaps[0] if n else 0.0))
    timestamps = pd.Timestamp(KAGGLE_EPOCH) + pd.to_timedelta(time, unit="s")

    frame = pd.DataFrame(
        {
            "Id": [f"gen{seed}-{i}" for i in range(1, n + 1)],
            "Timestamp": timestamps.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "User": rng.choice(USERS, size=n),
            "Time": time.astype(np.int64),
        }
    )
    frame[list(FEATURES)] = features
    frame["Amount"] = amount
    frame["Class"] = label
    return frame[list(EXTENDED_COLUMNS)]


def write_csv(frame: pd.DataFrame, out: TextIO, layout: Layout = Layout.EXTENDED) -> None:
    """Write payments in the style of the samples: the Kaggle layout with its quoted header, the extended
    layout without a header; strings and Class quoted, numbers bare."""
    layout = Layout(layout)
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    if layout is Layout.KAGGLE:
        writer.writerow(KAGGLE_COLUMNS)
    for row in frame[list(layout.columns)].itertuples(index=False, name=None):
        if layout.labelled:
            *values, label = row
            writer.writerow([*values, str(label)])
        else:
            writer.writerow(row)


@click.command("generate")
@click.option(
    "-n", "--count", type=click.IntRange(min=0), default=1000, show_default=True, help="Payments to generate."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same payments.")
@click.option("--fraud-rate", type=click.FloatRange(0.0, 1.0), default=DEFAULT_FRAUD_RATE, show_default=True,
              help="Share of frauds (Class 1).")  # fmt: skip
@click.option("--layout", type=click.Choice([layout.value for layout in Layout]), default=Layout.EXTENDED.value,
              show_default=True, help="CSV layout of the output file.")  # fmt: skip
@click.option("-o", "--output", type=click.File("w", lazy=True), default="-", show_default=True,
              help="File to write (`-` for stdout).")  # fmt: skip
@click.option("--to-topic", is_flag=True, help="Produce straight to the topic instead of writing a file.")
@kafka_options
def generate_command(
    count: int,
    seed: int,
    fraud_rate: float,
    layout: str,
    output: TextIO,
    to_topic: bool,
    **kafka: object,
) -> None:
    """Generate realistic synthetic card payments (seeded; frauds a model can learn) to a file or a topic."""
    context = click.get_current_context()
    if to_topic and {"output", "layout"} & {
        name for name in ("output", "layout")
        if context.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
    }:  # fmt: skip
        raise click.UsageError("--to-topic writes records, not a file: drop -o/--output and --layout")
    frame = generate_payments(count, seed=seed, fraud_rate=fraud_rate)
    if to_topic:
        quiet = bool(kafka.pop("quiet"))
        live = not kafka.pop("keep_file_time")
        run_with_progress(frame, total=count, quiet=quiet, live=live, **kafka)
    else:
        write_csv(frame, output, Layout(layout))
