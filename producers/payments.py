"""Card payment records: the two CSV layouts, parsing a line, and encoding a `creditcardfraud_source` value.

Every record written to `creditcardfraud_source` carries the *extended* layout's columns in order, less
the label (Id, Timestamp, User, Time, V1..V28, Amount), so that one source stream definition in `ksql/`
reads payments from any file. A file's Class column is the label: it never rides in the payment, but goes
to the labels topic once it is known (`producers.labels`). Rows of the Kaggle layout have no Id, Timestamp or User: they get a
stable id (`<file stem>-<line number>`, so a replay of the same file gives the same keys), a
Timestamp of `KAGGLE_EPOCH` + Time seconds, and a NULL User.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

import pandas as pd

FEATURES: tuple[str, ...] = tuple(f"V{i}" for i in range(1, 29))
KAGGLE_COLUMNS: tuple[str, ...] = ("Time", *FEATURES, "Amount", "Class")
EXTENDED_COLUMNS: tuple[str, ...] = ("Id", "Timestamp", "User", *KAGGLE_COLUMNS)
#: The columns of a payment record: a file's columns less the label.
PAYMENT_COLUMNS: tuple[str, ...] = EXTENDED_COLUMNS[:-1]
#: The field names of a JSON value, upper case as ksqlDB names unquoted columns.
JSON_FIELDS: tuple[str, ...] = tuple(column.upper() for column in PAYMENT_COLUMNS)

#: The Kaggle data set's payments are from September 2013 and its Time counts seconds from the first one.
KAGGLE_EPOCH = datetime(2013, 9, 1, tzinfo=UTC)

#: Names of the dead-letter record headers (values are UTF-8 strings).
DLQ_REASON_HEADER = "error.reason"
DLQ_LINE_HEADER = "error.line"
DLQ_FILE_HEADER = "error.file"
#: Present when a dead letter holds only the start of a very long line: the line's full length in bytes.
DLQ_TRUNCATED_HEADER = "error.truncated"


class Layout(StrEnum):
    """The CSV layouts a payment file may have: the extended one, Kaggle's, or unlabelled payments."""

    EXTENDED = "extended"
    KAGGLE = "kaggle"
    #: The extended layout without Class: live payments, as the source topic's records carry them.
    PAYMENTS = "payments"

    @property
    def columns(self) -> tuple[str, ...]:
        return {Layout.EXTENDED: EXTENDED_COLUMNS, Layout.KAGGLE: KAGGLE_COLUMNS, Layout.PAYMENTS: PAYMENT_COLUMNS}[
            self
        ]

    @property
    def labelled(self) -> bool:
        return self is not Layout.PAYMENTS


class ValueFormat(StrEnum):
    DELIMITED = "delimited"
    JSON = "json"


class PaymentFileError(ValueError):
    """The file as a whole is not a payment file (for example an unknown header); nothing was read."""


@dataclass(frozen=True)
class Payment:
    id: str
    timestamp: datetime
    user: str | None
    time: float
    features: tuple[float, ...]
    amount: float
    label: int | None

    def values(self) -> list[str | float | int | None]:
        """The record's columns in order (no label), timestamps as ISO-8601 text, Time as an integer when whole."""
        return [
            self.id,
            format_timestamp(self.timestamp),
            self.user,
            _number(self.time),
            *self.features,
            self.amount,
        ]

    def key(self) -> bytes:
        """The record key: the Id as UTF-8 (ksqlDB's KAFKA key format for a STRING key)."""
        return self.id.encode()

    def encode(self, value_format: ValueFormat = ValueFormat.DELIMITED) -> bytes:
        if ValueFormat(value_format) is ValueFormat.JSON:
            return json.dumps(dict(zip(JSON_FIELDS, self.values(), strict=True)), separators=(",", ":")).encode()
        return encode_delimited(self.values()).encode()


def tagged(payment: Payment, run: str) -> Payment:
    """The payment with its id made unique to the `run` (a second replay of a file repeats every id)."""
    return dataclasses.replace(payment, id=f"{payment.id}-{run}")


def sent_now(payment: Payment, run: str) -> Payment:
    """The payment as a live producer sends it: stamped with this moment, its id made unique to the `run`.

    A file's payments are a recording: replayed as they are, a 2013 Timestamp makes event time (windows,
    the workers' event-to-score latency) 13 years old, and a second replay repeats every id. The file's own
    time stays in the Time column.
    """
    return dataclasses.replace(tagged(payment, run), timestamp=datetime.now(UTC))


def new_run() -> str:
    """A short tag that makes the ids of one replay unique (six hex digits)."""
    return secrets.token_hex(3)


@dataclass(frozen=True)
class Rejected:
    """A line that is not a payment: kept with where it came from and why, never dropped silently."""

    source: str
    line: int
    text: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.reason}"


class MalformedRow(ValueError):
    """Why one row is not a payment (the message is the reason reported and put in the dead letter's headers)."""


def encode_delimited(values: Sequence[str | float | int | None]) -> str:
    """One DELIMITED value as ksqlDB writes it: comma-separated, quoted only when needed, NULL as an empty field."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(["" if value is None else value for value in values])
    return buffer.getvalue()


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 in UTC with a `Z`, milliseconds only when there are any (as in the extended sample)."""
    moment = moment.astimezone(UTC)
    spec = "milliseconds" if moment.microsecond else "seconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def parse_timestamp(text: str) -> datetime:
    """ISO-8601; a timestamp without an offset is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise MalformedRow(f"Timestamp {text!r} is not ISO-8601") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def kaggle_timestamp(time: float) -> datetime:
    return KAGGLE_EPOCH + timedelta(seconds=time)


def detect_layout(first_row: Sequence[str]) -> tuple[Layout, bool]:
    """The layout of a file from its first row, and whether that row is a header.

    The Kaggle file starts with a header `Time,V1..V28,Amount,Class`; the extended layout has none
    (a header naming its columns is accepted too). Headerless rows are told apart by their width.
    """
    names = [name.strip().lower() for name in first_row]
    for layout in Layout:
        if names == [column.lower() for column in layout.columns]:
            return layout, True
    if names and names[0] in ("time", "id"):
        raise PaymentFileError(
            f"unrecognised header ({len(first_row)} columns): expected {','.join(KAGGLE_COLUMNS)} "
            f"or {','.join(EXTENDED_COLUMNS)} (Class may be left out)"
        )
    for layout in Layout:
        if len(first_row) == len(layout.columns):
            return layout, False
    raise PaymentFileError(
        f"first row has {len(first_row)} columns: expected {len(KAGGLE_COLUMNS)} (Kaggle layout), "
        f"{len(EXTENDED_COLUMNS)} (extended layout) or {len(PAYMENT_COLUMNS)} (extended, without Class)"
    )


def parse_row(row: Sequence[str], layout: Layout, source: str, line: int) -> Payment:
    """One CSV row as a Payment; raises MalformedRow with the reason."""
    if len(row) != len(layout.columns):
        raise MalformedRow(f"expected {len(layout.columns)} columns ({layout.value} layout), got {len(row)}")
    if layout is not Layout.KAGGLE:
        payment_id, timestamp_text, user, *rest = row
        payment_id = payment_id.strip()
        if not payment_id:
            raise MalformedRow("Id is empty")
        if not timestamp_text.strip():
            raise MalformedRow("Timestamp is empty")
        timestamp = parse_timestamp(timestamp_text.strip())
    else:
        rest = list(row)
        payment_id, user = f"{source_stem(source)}-{line}", None
    time = _float("Time", rest[0])
    features = tuple(_float(name, text) for name, text in zip(FEATURES, rest[1:29], strict=True))
    amount = _float("Amount", rest[29])
    if layout is Layout.KAGGLE:
        timestamp = kaggle_timestamp(time)
    return Payment(
        id=payment_id,
        timestamp=timestamp,
        user=(user or "").strip() or None,
        time=time,
        features=features,
        amount=amount,
        label=_label(rest[30]) if layout.labelled else None,
    )


def read_payments(lines: Iterable[str], source: str) -> Iterator[Payment | Rejected]:
    """Payments and rejected lines of one file, in order, streaming (nothing is held beyond one line).

    `lines` should be decoded with `errors="surrogateescape"`: a line that is not UTF-8 is then rejected
    like any malformed line, and the rest of the file goes through. Blank lines carry no record and are skipped. Raises PaymentFileError when the first row fits no layout.
    """
    layout: Layout | None = None
    for number, text in enumerate(lines, start=1):
        text = text.rstrip("\r\n")
        if not text.strip():
            continue
        undecodable = _undecodable(text)
        if undecodable is not None:
            yield Rejected(source, number, text, undecodable)
            continue
        try:
            row = next(csv.reader((text,)))
        except csv.Error as error:
            yield Rejected(source, number, text, f"not CSV: {error}")
            continue
        if layout is None:
            layout, is_header = detect_layout(row)
            if is_header:
                continue
        try:
            yield parse_row(row, layout, source, number)
        except MalformedRow as error:
            yield Rejected(source, number, text, str(error))


def frame_payments(frame: pd.DataFrame) -> Iterator[Payment]:
    """The rows of a frame with the extended layout's columns (as `generate_payments` returns) as Payments."""
    for row in frame[list(EXTENDED_COLUMNS)].itertuples(index=False, name=None):
        payment_id, timestamp, user, time, *features, amount, label = row
        yield Payment(
            id=str(payment_id),
            timestamp=parse_timestamp(str(timestamp)),
            user=None if pd.isna(user) or user == "" else str(user),
            time=float(time),
            features=tuple(float(value) for value in features),
            amount=float(amount),
            label=None if pd.isna(label) else int(label),
        )


def _undecodable(text: str) -> str | None:
    """Why a line read with `errors="surrogateescape"` is not UTF-8, or None when it is."""
    for position, char in enumerate(text):
        if "\udc80" <= char <= "\udcff":
            return f"not UTF-8: byte 0x{ord(char) - 0xDC00:02x} at character {position + 1}"
    return None


def raw_bytes(text: str) -> bytes:
    """A line's bytes as they were in the file, undecodable ones included (for dead letters)."""
    return text.encode("utf-8", "surrogateescape")


def source_stem(source: str) -> str:
    """The part of a file's name that goes into generated ids (`-` for stdin becomes `stdin`)."""
    return "stdin" if source in ("-", "<stdin>") else Path(source).stem


_NUMERIC = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")


def _float(name: str, text: str) -> float:
    """A finite number; `nan`, `inf` and the like are rejected (no model can score them)."""
    if not _NUMERIC.match(text):
        raise MalformedRow(f"{name} {text!r} is not a number" if text.strip() else f"{name} is empty")
    value = float(text)
    if not math.isfinite(value):
        raise MalformedRow(f"{name} {text!r} is out of range")
    return value


def _label(text: str) -> int | None:
    """Class: 0 or 1, or empty for an unlabelled (live) payment."""
    text = text.strip()
    if not text:
        return None
    if _NUMERIC.match(text) and float(text) in (0.0, 1.0):
        return int(float(text))
    raise MalformedRow(f"Class {text!r} is not 0 or 1")


def _number(value: float) -> float | int:
    return int(value) if value.is_integer() else value
