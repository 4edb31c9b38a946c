"""Card transactions of the Fraud Detection Handbook's world (the `synccfd` simulator), as a producer sends them.

A transaction names its customer and terminal, the amount, card-present (CP) or not (CNP), and the billing,
terminal and shipping locations; the simulator's TX_FRAUD is its label, which never rides in the transaction
but goes to the labels topic a delay later (`producers.labels`, through `producers.replay.replay`). Rows come
from the simulator (seeded) or from a Parquet or CSV file with the simulator's columns; every row that is not a
transaction is rejected with its position (a CSV line, a Parquet row) and the reason, and the valid ones are
sent in event-time order, as they happened.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import numpy as np
import pandas as pd

from fraudstream.options import address_option
from fraudstream.topics import HANDBOOK_LABELS_TOPIC, HANDBOOK_TRANSACTIONS_TOPIC
from producers.labels import Duration
from producers.payments import PaymentFileError, Rejected, ValueFormat, format_timestamp
from producers.replay import run_with_progress

logger = logging.getLogger(__name__)

#: The columns a transaction needs, as the simulator names them (TRANSACTION_ID becomes the record's key).
REQUIRED_COLUMNS: tuple[str, ...] = (
    "TRANSACTION_ID",
    "TX_DATETIME",
    "CUSTOMER_ID",
    "TERMINAL_ID",
    "TX_AMOUNT",
    "TX_TYPE",
    "TX_BILL_LAT",
    "TX_BILL_LONG",
    "TX_TERM_LAT",
    "TX_TERM_LONG",
    "TX_SHIPP_LAT",
    "TX_SHIPP_LONG",
)
#: The label, when a file has it (1 = fraud); an empty label sends the transaction without one.
LABEL_COLUMN = "TX_FRAUD"
LOCATIONS: tuple[tuple[str, str], ...] = (
    ("TX_BILL_LAT", "TX_BILL_LONG"),
    ("TX_TERM_LAT", "TX_TERM_LONG"),
    ("TX_SHIPP_LAT", "TX_SHIPP_LONG"),
)
TX_TYPES = ("CP", "CNP")
#: The Handbook's world has two terminals per customer (5,000 customers, 10,000 terminals).
TERMINALS_PER_CUSTOMER = 2
DEFAULT_START = "2026-01-01"
#: Fewer customers and synccfd 0.1.0 runs out of customers to compromise (3 for 14 days, 3 for 5, each day).
MIN_CUSTOMERS = 64


@dataclass(frozen=True)
class Transaction:
    """One card transaction; `id`, `timestamp`, `label`, `key()` and `encode()` are what `replay()` sends."""

    id: str
    timestamp: datetime
    customer: str
    terminal: str
    amount: float
    tx_type: str
    locations: tuple[float, ...]
    """Billing, terminal and shipping latitude and longitude, in LOCATIONS order."""
    label: int | None

    def key(self) -> bytes:
        return self.id.encode()

    def encode(self, value_format: ValueFormat | str | None = None) -> bytes:
        """The JSON value of `ksql/handbook/010-transactions.sql` (upper-case fields, as ksqlDB names them).

        Always JSON, whatever ``value_format`` a replay passes: the pipeline's statements read JSON only.
        """
        value = {
            "TX_ID": self.id,
            "TX_DATETIME": format_timestamp(self.timestamp),
            "CUSTOMER_ID": self.customer,
            "TERMINAL_ID": self.terminal,
            "TX_AMOUNT": self.amount,
            "TX_TYPE": self.tx_type,
        }
        value.update(zip((name for pair in LOCATIONS for name in pair), self.locations, strict=True))
        return json.dumps(value, separators=(",", ":")).encode()


def generate_transactions(
    customers: int, days: int, seed: int = 0, terminals: int | None = None, start: str = DEFAULT_START
) -> pd.DataFrame:
    """The simulator's labelled transactions (same arguments, same rows); its progress output is logged, not printed."""
    from synccfd import DatasetGenerator

    if customers < MIN_CUSTOMERS:
        raise ValueError(
            f"the simulator needs at least {MIN_CUSTOMERS} customers (it compromises 6 new ones a day, each for up "
            f"to 14 days, and fails when it runs out), got {customers}"
        )
    generator = DatasetGenerator(
        n_customers=customers,
        n_terminals=terminals or TERMINALS_PER_CUSTOMER * customers,
        nb_days=days,
        start_date=start,
        random_state=seed,
    )
    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its own pandas deprecations, not the caller's to act on
        _, _, transactions = generator.generate()
    logger.debug("synccfd: %s", chatter.getvalue())
    return transactions


def read_transactions(path: str | Path) -> tuple[pd.DataFrame, str]:
    """A Parquet or CSV file's rows as text-or-typed columns, and what a row's position is called there."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path), "row"
    if path.suffix.lower() != ".csv":
        raise PaymentFileError(f"{path}: expected a .parquet or .csv file of transactions")
    return pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False), "line"


def frame_transactions(frame: pd.DataFrame, source: str = "generated", positions: str = "row") -> Iterator[
    Transaction | Rejected
]:  # fmt: skip
    """The frame's rejected rows (first, in file order), then its transactions in event-time order.

    A row's position is its 1-based row number, or with ``positions="line"`` its CSV line (the header is
    line 1). A TRANSACTION_ID seen before is rejected: a second transaction under one key would overwrite
    the first in every table keyed by it. Transactions at the same time keep the file's order.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise PaymentFileError(
            f"{source}: not transactions: no column {', '.join(missing)} (has {list(frame.columns)})"
        )
    offset = 2 if positions == "line" else 1
    reasons = _reasons(frame, offset)
    for i in np.flatnonzero(reasons != ""):
        text = ",".join("" if pd.isna(v) else str(v) for v in frame.iloc[i])
        yield Rejected(source, int(i) + offset, text, str(reasons[i]))
    good = frame[reasons == ""]
    times = pd.to_datetime(good["TX_DATETIME"], utc=True, format="ISO8601")
    order = np.argsort(times.to_numpy(), kind="stable")
    labels = _labels(good) if LABEL_COLUMN in good.columns else None
    coordinates = good[[name for pair in LOCATIONS for name in pair]].astype(np.float64).to_numpy()
    amounts = good["TX_AMOUNT"].astype(np.float64).to_numpy()
    ids, customers, terminals = (_ids(good[c]) for c in ("TRANSACTION_ID", "CUSTOMER_ID", "TERMINAL_ID"))
    types = good["TX_TYPE"].astype(str).str.strip().to_numpy()
    stamps = times.dt.to_pydatetime()
    for i in order:
        yield Transaction(
            id=ids[i],
            timestamp=stamps[i].astimezone(UTC),
            customer=customers[i],
            terminal=terminals[i],
            amount=float(amounts[i]),
            tx_type=types[i],
            locations=tuple(float(v) for v in coordinates[i]),
            label=None if labels is None or labels[i] < 0 else int(labels[i]),
        )


def _ids(column: pd.Series) -> np.ndarray:
    """Identifiers as text: integers as written, whole floats (a CSV read as numbers) without `.0`."""
    if pd.api.types.is_float_dtype(column):
        return column.astype(np.int64).astype(str).to_numpy()
    return column.astype(str).str.strip().to_numpy()


def _labels(frame: pd.DataFrame) -> np.ndarray:
    """TX_FRAUD as 0/1, -1 where empty (no label known)."""
    values = pd.to_numeric(frame[LABEL_COLUMN].replace("", np.nan), errors="coerce")
    return values.fillna(-1).astype(np.int64).to_numpy()


def _reasons(frame: pd.DataFrame, offset: int) -> np.ndarray:
    """Why each row is not a transaction ("" when it is one); the first reason found wins.

    ``offset`` turns a row's index into its position (1 for rows, 2 for CSV lines under a header).
    """
    reasons = np.full(len(frame), "", dtype=object)

    def reject(bad: np.ndarray, reason: str | np.ndarray) -> None:
        take = bad & (reasons == "")
        reasons[take] = reason if isinstance(reason, str) else reason[take]

    for name in ("TRANSACTION_ID", "CUSTOMER_ID", "TERMINAL_ID"):
        text = frame[name].astype(str).str.strip()
        reject((frame[name].isna() | text.isin(["", "nan", "None"])).to_numpy(), f"{name} is empty")
    times = pd.to_datetime(frame["TX_DATETIME"], utc=True, format="ISO8601", errors="coerce")
    reject(times.isna().to_numpy(), "TX_DATETIME is not an ISO-8601 time")
    amounts = pd.to_numeric(frame["TX_AMOUNT"], errors="coerce").to_numpy(dtype=np.float64)
    reject(~np.isfinite(amounts) | (amounts < 0), "TX_AMOUNT must be a number >= 0")
    types = frame["TX_TYPE"].astype(str).str.strip()
    reject(~types.isin(TX_TYPES).to_numpy(), "TX_TYPE must be CP or CNP")
    for lat, long in LOCATIONS:
        latitudes = pd.to_numeric(frame[lat], errors="coerce").to_numpy(dtype=np.float64)
        longitudes = pd.to_numeric(frame[long], errors="coerce").to_numpy(dtype=np.float64)
        reject(~(np.abs(latitudes) <= 90), f"{lat} must be a latitude in [-90, 90]")
        reject(~(np.abs(longitudes) <= 180), f"{long} must be a longitude in [-180, 180]")
    if LABEL_COLUMN in frame.columns:
        raw = frame[LABEL_COLUMN]
        values = pd.to_numeric(raw.replace("", np.nan), errors="coerce")
        reject((raw.notna() & (raw.astype(str).str.strip() != "") & ~values.isin([0, 1])).to_numpy(),
               f"{LABEL_COLUMN} must be 0, 1 or empty")  # fmt: skip
    ids = pd.Series(_ids_or_text(frame["TRANSACTION_ID"]))
    repeated = ids.duplicated(keep="first").to_numpy() & (reasons == "")
    if repeated.any():
        first = {value: i for i, value in reversed(list(enumerate(ids)))}
        reject(repeated, np.array([f"TRANSACTION_ID {v} repeats position {first[v] + offset}" for v in ids]))
    return reasons


def _ids_or_text(column: pd.Series) -> np.ndarray:
    try:
        return _ids(column)
    except (ValueError, TypeError):  # a float column with NaNs: rejected as empty anyway
        return column.astype(str).str.strip().to_numpy()


# --- CLI -------------------------------------------------------------------------------------------


def transaction_source(
    file: str | None, customers: int, days: int, seed: int
) -> tuple[Iterator[Transaction | Rejected], int]:
    """What a command replays: FILE's rows, else the simulator's; and how many rows there are."""
    if file is not None:
        frame, positions = read_transactions(file)
        return frame_transactions(frame, file, positions), len(frame)
    frame = generate_transactions(customers, days, seed)
    return frame_transactions(frame, f"synccfd(customers={customers}, days={days}, seed={seed})"), len(frame)


def _simulation_options(function: Callable) -> Callable:
    options = [
        click.option("--customers", type=click.IntRange(min=MIN_CUSTOMERS), default=100, show_default=True,
                     help="Simulated customers (terminals: twice as many, as in the Handbook)."),
        click.option("--days", type=click.IntRange(min=1), default=30, show_default=True, help="Simulated days."),
        click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same transactions."),
    ]  # fmt: skip
    for option in reversed(options):
        function = option(function)
    return function


@click.command("produce")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False))
@_simulation_options
@click.option("--topic", default=HANDBOOK_TRANSACTIONS_TOPIC, show_default=True, help="Topic of the transactions.")
@click.option("--labels-topic", default=HANDBOOK_LABELS_TOPIC, show_default=True,
              help="Where each label goes once known (a transaction never carries it).")  # fmt: skip
@click.option("--label-delay", type=Duration(), default="7d", show_default=True,
              help="How long after a transaction its label becomes known, in event time (the Handbook's: 7d).")  # fmt: skip
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    help="Transactions per second [default: as fast as possible].",
)
@click.option("--limit", type=click.IntRange(min=0), help="Send at most this many transactions.")
@address_option("bootstrap_servers")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def produce_command(
    file: str | None,
    customers: int,
    days: int,
    seed: int,
    topic: str,
    labels_topic: str,
    label_delay: timedelta,
    rate: float | None,
    limit: int | None,
    bootstrap_servers: str | None,
    quiet: bool,
) -> None:
    """Replay Handbook transactions (FILE, Parquet or CSV with the simulator's columns, else simulated) in event-time order."""
    try:
        source, total = transaction_source(file, customers, days, seed)
    except (PaymentFileError, OSError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    run_with_progress(
        source,
        total=total,
        quiet=quiet,
        bootstrap_servers=bootstrap_servers,
        topic=topic,
        value_format=ValueFormat.JSON,
        rate=rate,
        limit=limit,
        labels_topic=labels_topic,
        label_delay=label_delay,
    )


@click.command("generate")
@_simulation_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="File to write: .parquet or .csv.")  # fmt: skip
def generate_command(customers: int, days: int, seed: int, output: Path) -> None:
    """Simulate Handbook transactions (synccfd, seeded) into a Parquet or CSV file that `produce` replays."""
    if output.suffix.lower() not in (".parquet", ".csv"):
        raise click.ClickException(f"{output}: the file must end in .parquet or .csv")
    frame = generate_transactions(customers, days, seed)
    if output.suffix.lower() == ".parquet":
        frame.to_parquet(output, index=False)
    else:
        frame.to_csv(output, index=False)
    click.echo(f"{output}: {len(frame):,} transactions, {int(frame[LABEL_COLUMN].sum()):,} frauds")


@click.group("handbook")
def handbook_group() -> None:
    """The Fraud Detection Handbook's pipeline: simulated card transactions, KSQL features, its own models."""
