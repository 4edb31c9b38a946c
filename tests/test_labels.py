"""Labels held back until event time reaches the moment each becomes known (pure logic)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import click
import pytest

from producers.labels import Duration, Label, PendingLabels, parse_duration
from producers.payments import Payment

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def payment(pid: str, minutes: int, label: int | None) -> Payment:
    return Payment(pid, T0 + timedelta(minutes=minutes), "Kai", 0.0, (0.0,) * 28, 1.0, label)


def test_a_label_waits_for_its_delay_in_event_time_and_unlabelled_payments_send_none() -> None:
    pending = PendingLabels(delay=timedelta(minutes=10))
    for pid, minute, label in [("a", 0, 0), ("b", 1, None), ("c", 2, 1)]:
        pending.hold(payment(pid, minute, label))
    assert len(pending) == 2
    assert list(pending.due(T0 + timedelta(minutes=9))) == []
    assert [x.payment_id for x in pending.due(T0 + timedelta(minutes=10))] == ["a"]
    assert [(x.payment_id, x.label, x.labelled_at) for x in pending.drain()] == [("c", 1, T0 + timedelta(minutes=12))]
    assert len(pending) == 0


def test_labels_come_out_in_the_order_they_become_known() -> None:
    pending = PendingLabels(delay=timedelta(0))
    for pid, minute in [("late", 5), ("early", 1), ("middle", 3)]:
        pending.hold(payment(pid, minute, 1))
    assert [x.payment_id for x in pending.due(T0 + timedelta(hours=1))] == ["early", "middle", "late"]


def test_a_label_record_is_keyed_by_payment_and_stamped_when_known() -> None:
    label = Label(T0 + timedelta(days=7), "p-1", 1)
    assert label.key() == b"p-1"
    assert json.loads(label.encode()) == {"ID": "p-1", "LABEL": 1, "LABELLED_AT": "2026-12-08T00:00:00Z"}
    assert label.timestamp_ms == int((T0 + timedelta(days=7)).timestamp() * 1000)


@pytest.mark.parametrize(
    "text, expected",
    [("7d", timedelta(days=7)), ("36h", timedelta(hours=36)), ("1h30m", timedelta(minutes=90)),
     ("250ms", timedelta(milliseconds=250)), ("0", timedelta(0))],
)  # fmt: skip
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "-1s", "7dd", "a week"])
def test_a_bad_duration_is_a_one_line_cli_error(text: str) -> None:
    with pytest.raises(click.BadParameter, match="is not a duration"):
        Duration().convert(text, None, None)
