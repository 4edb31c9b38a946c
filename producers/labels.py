"""Labels arrive late, on their own topic: a payment's label is never part of the payment.

In card fraud a label becomes known days or weeks after the payment (a chargeback, an investigation).
A replay holds each payment's label back until the replay's event time has passed the payment's time
plus the delay, then sends it to the labels topic keyed by payment id, stamped with the time it became
known (the record's timestamp and `LABELLED_AT`), so that a consumer can tell what was known when.
"""

from __future__ import annotations

import heapq
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import click

from producers.payments import Payment, format_timestamp

#: The Fraud Detection Handbook's delay: a label is known a week after its payment.
DEFAULT_LABEL_DELAY = timedelta(days=7)


@dataclass(frozen=True, order=True)
class Label:
    """What was learnt about one payment, and when."""

    labelled_at: datetime
    payment_id: str
    label: int

    def key(self) -> bytes:
        """The payment id, as the payment's own key: labels and payments join on it."""
        return self.payment_id.encode()

    def encode(self) -> bytes:
        """The JSON value of the labels stream (`ksql/015-labels.sql`): upper-case fields, as ksqlDB names them.

        ID repeats the key, so that a label landed in the lake (values only) still names its payment.
        """
        return json.dumps(
            {"ID": self.payment_id, "LABEL": self.label, "LABELLED_AT": format_timestamp(self.labelled_at)}
        ).encode()

    @property
    def timestamp_ms(self) -> int:
        return round(self.labelled_at.timestamp() * 1000)


@dataclass
class PendingLabels:
    """Labels of sent payments, waiting until event time reaches the moment each becomes known."""

    delay: timedelta = DEFAULT_LABEL_DELAY
    _heap: list[Label] = field(default_factory=list)

    def hold(self, payment: Payment) -> None:
        """Keep `payment`'s label, if it has one, until `payment.timestamp + delay`."""
        if payment.label is not None:
            heapq.heappush(self._heap, Label(payment.timestamp + self.delay, payment.id, payment.label))

    def due(self, now: datetime) -> Iterator[Label]:
        """The labels known by `now` (event time), oldest first; they leave the queue."""
        while self._heap and self._heap[0].labelled_at <= now:
            yield heapq.heappop(self._heap)

    def drain(self) -> Iterator[Label]:
        """Every label still held, oldest first (a replay that ends sends what it knows will come)."""
        while self._heap:
            yield heapq.heappop(self._heap)

    def __len__(self) -> int:
        return len(self._heap)


_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNITS = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """`7d`, `36h`, `1h30m`, `250ms` or `0`; ValueError otherwise.

    (pandas' Timedelta parses these too, but warns that its `d` unit is deprecated.)
    """
    text = text.strip().lower()
    if text == "0":
        return timedelta(0)
    parts = _PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"{text!r} is not a duration (for example 7d, 36h, 1h30m, 30s)")
    return sum((timedelta(**{_UNITS[unit]: float(number)}) for number, unit in parts), timedelta(0))


class Duration(click.ParamType):
    """A click parameter for `parse_duration`."""

    name = "duration"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)
