"""Payment files: both layouts parse, malformed lines are counted with their line numbers, values encode as ksqlDB reads them."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from producers.payments import (
    EXTENDED_COLUMNS,
    FEATURES,
    JSON_FIELDS,
    KAGGLE_EPOCH,
    Layout,
    Payment,
    PaymentFileError,
    Rejected,
    ValueFormat,
    detect_layout,
    encode_delimited,
    format_timestamp,
    read_payments,
)

KAGGLE_HEADER = ",".join(f'"{name}"' for name in ("Time", *(f"V{i}" for i in range(1, 29)), "Amount", "Class"))


def kaggle_row(time: str = "0", amount: str = "9.99", label: str = '"0"', feature: str = "0.5") -> str:
    return ",".join([time, *[feature] * 28, amount, label])


def extended_row(
    payment_id: str = "7", timestamp: str = '"2018-12-18T12:00:00Z"', user: str = '"Kai"', **kaggle: str
) -> str:
    return ",".join([payment_id, timestamp, user, kaggle_row(**kaggle)])


def parse(text: str, source: str = "payments.csv") -> list[Payment | Rejected]:
    return list(read_payments(io.StringIO(text), source))


def test_kaggle_sample_parses_every_row(shared_data):
    with open(shared_data / "creditcard_small.csv", newline="") as lines:
        payments = list(read_payments(lines, "creditcard_small.csv"))
    assert len(payments) == 999 and all(isinstance(p, Payment) for p in payments)
    assert sum(p.label for p in payments) == 15
    first = payments[0]
    assert first.id == "creditcard_small-2"  # named after the line it came from, the header being line 1
    assert first.timestamp == datetime(2013, 9, 1, tzinfo=UTC) and first.user is None
    assert first.features[0] == -1.3598071336738 and first.amount == 149.62 and first.label == 0
    assert len({p.id for p in payments}) == 999
    last = payments[-1]
    assert last.time > 0 and last.timestamp - KAGGLE_EPOCH == timedelta(seconds=last.time)


def test_extended_sample_parses_every_row(shared_data):
    with open(shared_data / "creditcard_extended.csv", newline="") as lines:
        payments = list(read_payments(lines, "creditcard_extended.csv"))
    assert [p.id for p in payments] == [str(i) for i in range(1, 11)]
    assert [p.user for p in payments[:4]] == ["Kai", "Hans", "Kai", "Flo"]
    assert payments[0].timestamp == datetime(2018, 12, 18, 12, 0, tzinfo=UTC)
    assert payments[2].time == 1 and payments[0].amount == 149.62 and payments[0].label == 0


def test_same_file_gives_same_ids():
    text = KAGGLE_HEADER + "\n" + kaggle_row() + "\n" + kaggle_row(time="3") + "\n"
    assert [p.id for p in parse(text, "/data/x/creditcard.csv")] == ["creditcard-2", "creditcard-3"]
    assert [p.id for p in parse(text, "-")] == ["stdin-2", "stdin-3"]


def test_detects_layouts_with_and_without_header():
    assert detect_layout(next(csv.reader([KAGGLE_HEADER]))) == (Layout.KAGGLE, True)
    assert detect_layout(list(EXTENDED_COLUMNS)) == (Layout.EXTENDED, True)
    assert detect_layout(kaggle_row().split(",")) == (Layout.KAGGLE, False)
    assert detect_layout(extended_row().split(",")) == (Layout.EXTENDED, False)
    with pytest.raises(PaymentFileError, match="unrecognised header"):
        detect_layout(["Time", "V1", "Amount"])
    with pytest.raises(PaymentFileError, match="first row has 3 columns"):
        detect_layout(["1", "2", "3"])


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (kaggle_row()[:-8], "expected 31 columns (kaggle layout), got 30"),
        (kaggle_row(feature="abc"), "V1 'abc' is not a number"),
        (kaggle_row(feature=""), "V1 is empty"),
        (kaggle_row(amount="nan"), "Amount 'nan' is not a number"),
        (kaggle_row(amount="1e999"), "Amount '1e999' is out of range"),
        (kaggle_row(time="x"), "Time 'x' is not a number"),
        (kaggle_row(label='"2"'), "Class '2' is not 0 or 1"),
        (kaggle_row(label="fraud"), "Class 'fraud' is not 0 or 1"),
    ],
)
def test_malformed_kaggle_lines_are_rejected_with_line_number_and_reason(line, reason):
    items = parse("\n".join([KAGGLE_HEADER, kaggle_row(), line, kaggle_row(time="5")]) + "\n", "bad.csv")
    assert [type(item) for item in items] == [Payment, Rejected, Payment]
    assert items[1] == Rejected("bad.csv", 3, line, reason)
    assert items[2].id == "bad-4"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (extended_row(timestamp='"yesterday"'), "Timestamp 'yesterday' is not ISO-8601"),
        (extended_row(timestamp='"2018-13-45T00:00:00Z"'), "Timestamp '2018-13-45T00:00:00Z' is not ISO-8601"),
        (extended_row(timestamp=""), "Timestamp is empty"),
        (extended_row(payment_id=""), "Id is empty"),
        (extended_row() + ",1", "expected 34 columns (extended layout), got 35"),
    ],
)
def test_malformed_extended_lines_are_rejected(line, reason):
    items = parse(extended_row() + "\n" + line + "\n")
    assert isinstance(items[0], Payment)
    assert items[1] == Rejected("payments.csv", 2, line, reason)


def test_empty_class_is_an_unlabelled_payment_and_blank_lines_are_not_records():
    items = parse(KAGGLE_HEADER + "\n\n" + kaggle_row(label="") + "\n   \n" + kaggle_row(label="1.0") + "\n")
    assert [item.label for item in items] == [None, 1]
    assert [item.id for item in items] == ["payments-3", "payments-5"]


def test_timestamps_without_offset_are_utc_and_others_are_converted():
    items = parse(
        extended_row(timestamp="2018-12-18T12:00:00") + "\n" + extended_row(timestamp="2018-12-18T13:00:00+01:00")
    )
    assert items[0].timestamp == items[1].timestamp == datetime(2018, 12, 18, 12, tzinfo=UTC)


def test_delimited_value_is_the_extended_layout_in_order_without_the_label():
    payment = parse(KAGGLE_HEADER + "\n" + kaggle_row(time="12", amount="149.62", feature="-1.25") + "\n", "cc.csv")[0]
    fields = payment.encode(ValueFormat.DELIMITED).decode().split(",")
    assert fields == ["cc-2", "2013-09-01T00:00:12Z", "", "12", *["-1.25"] * 28, "149.62"]
    assert payment.label == 0  # the file's label stays with the producer, for the labels topic
    assert payment.key() == b"cc-2"


def test_delimited_quotes_only_when_needed_and_writes_null_as_empty():
    assert encode_delimited(["a,b", 'say "hi"', None, 1, 0.5, "plain"]) == '"a,b","say ""hi""",,1,0.5,plain'


def test_delimited_round_trips_through_a_csv_reader(shared_data):
    with open(shared_data / "creditcard_extended.csv", newline="") as lines:
        payments = list(read_payments(lines, "creditcard_extended.csv"))
    reread = parse("\n".join(p.encode().decode() for p in payments) + "\n", "creditcard_extended.csv")
    assert reread == [replace(p, label=None) for p in payments]  # a record never carries its label


def test_json_value_has_exactly_the_upper_case_columns():
    payment = parse(extended_row(label="") + "\n")[0]
    value = json.loads(payment.encode(ValueFormat.JSON))
    assert (
        list(value)
        == list(JSON_FIELDS)
        == ["ID", "TIMESTAMP", "USER", "TIME", *[f"V{i}" for i in range(1, 29)], "AMOUNT"]
    )
    assert value["ID"] == "7" and value["USER"] == "Kai" and value["TIMESTAMP"] == "2018-12-18T12:00:00Z"
    assert value["TIME"] == 0 and value["V1"] == 0.5 and value["AMOUNT"] == 9.99


def test_fractional_time_keeps_its_fraction():
    payment = parse(KAGGLE_HEADER + "\n" + kaggle_row(time="1.5") + "\n")[0]
    value = json.loads(payment.encode("json"))
    assert value["TIME"] == 1.5 and value["TIMESTAMP"] == "2013-09-01T00:00:01.500Z"


def test_the_engines_delimited_reader_reads_what_producers_write(shared_data):
    """The contract with ksql/010-source.sql: our DELIMITED values parse into its columns unchanged."""
    from stack.ksqldb.formats.delimited import DelimitedSerde
    from stack.ksqldb.types import DOUBLE, STRING

    columns = [("ID", STRING), ("TIMESTAMP", STRING), ("USER", STRING), ("TIME", DOUBLE)]
    columns += [(name, DOUBLE) for name in FEATURES] + [("AMOUNT", DOUBLE)]
    serde = DelimitedSerde(columns, ",")
    for name in ("creditcard_small.csv", "creditcard_extended.csv"):
        with open(shared_data / name, newline="") as lines:
            for payment in read_payments(lines, name):
                row = serde.deserialize(payment.encode(ValueFormat.DELIMITED))
                assert row == [payment.id, format_timestamp(payment.timestamp), payment.user, payment.time,
                               *payment.features, payment.amount]  # fmt: skip
