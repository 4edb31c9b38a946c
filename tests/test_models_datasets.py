"""Datasets described by their source, loaded in batches, bad rows kept aside with reasons."""

import io
import shutil

import pandas as pd
import pytest

from models.datasets import CsvSource, GeneratedSource, load_dataset, source_from_description
from models.reference import BEHAVIOUR_COLUMNS
from producers.generate import generate_payments, write_csv
from producers.payments import Layout


def test_kaggle_sample(shared_data):
    dataset = load_dataset(CsvSource(str(shared_data / "creditcard_small.csv")), batch_rows=256)
    d = dataset.description
    assert (d["rows"], d["frauds"], d["rejected_rows"]) == (999, 15, 0)
    assert d["source"]["layout"] == "kaggle" and len(d["source"]["sha256"]) == 64
    frame = dataset.frame
    # the columns the features stream serves (the statements' offline reference), and the label
    assert list(frame.columns) == [
        "HOUR_OF_DAY",
        *(f"V{i}" for i in range(1, 29)),
        "AMOUNT",
        *BEHAVIOUR_COLUMNS,
        "ID",
        "EVENT_TIME",
        "Class",
    ]
    assert frame["ID"].iloc[0] == "creditcard_small-2"  # the producers' ids: <stem>-<line>
    assert frame["EVENT_TIME"].iloc[0] == 1377993600000  # 2013-09-01T00:00:00Z, KAGGLE_EPOCH + Time
    assert frame["Class"].dtype == "int8"


def test_extended_sample_rejects_the_unlabelled_row(shared_data):
    dataset = load_dataset(CsvSource(str(shared_data / "creditcard_extended.csv")))
    assert dataset.description["rows"] == 9 and dataset.description["source"]["layout"] == "extended"
    assert [(r.line, r.reason) for r in dataset.rejected] == [
        (4, "Class is empty: unlabelled rows cannot be trained or evaluated on")
    ]
    assert dataset.frame["ID"].iloc[0] == "1" and "User" not in dataset.frame.columns  # served: no user name


def test_batches_are_bounded_and_same_as_one_read(tmp_path):
    frame = generate_payments(1_000, seed=4, fraud_rate=0.01)
    path = tmp_path / "payments.csv"
    with open(path, "w") as f:
        write_csv(frame, f, Layout.KAGGLE)
    source = CsvSource(str(path))
    sizes = [len(batch) for batch in source.batches(batch_rows=300)]
    assert sizes == [300, 300, 300, 100]
    loaded = load_dataset(source, batch_rows=300).frame
    pd.testing.assert_frame_equal(
        loaded[["V1", "AMOUNT"]], frame[["V1", "Amount"]].astype(float).rename(columns={"Amount": "AMOUNT"})
    )
    assert loaded["Class"].tolist() == frame["Class"].tolist()


def test_bad_rows_are_reported_not_lost(tmp_path, shared_data):
    lines = (shared_data / "creditcard_small.csv").read_text().splitlines()
    lines[5] = lines[5] + ",extra"  # line 6: a field too many
    fields = lines[7].split(",")
    fields[3] = "abc"  # line 8: V3 not a number
    lines[7] = ",".join(fields)
    lines[12] = lines[12].rsplit(",", 1)[0] + ',"7"'  # line 13: bad label
    lines[14] = lines[14].rsplit(",", 1)[0]  # line 15: a field short
    fields = lines[16].split(",")
    fields[29] = "nan"  # line 17: Amount not a number
    lines[16] = ",".join(fields)
    lines.insert(20, "")  # a blank line carries no record
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n")
    dataset = load_dataset(CsvSource(str(path)), batch_rows=100, progress=True)
    assert dataset.description["rows"] == 994 and dataset.description["rejected_rows"] == 5
    assert [(r.line, r.reason) for r in dataset.rejected] == [
        (6, "expected 31 columns (kaggle layout), got 32"),
        (8, "V3 'abc' is not a number"),
        (13, "Class '7' is not 0 or 1"),
        (15, "expected 31 columns (kaggle layout), got 30"),
        (17, "Amount 'nan' is not a number"),
    ]
    assert dataset.description["rejected_examples"][0].endswith(
        "bad.csv:6: expected 31 columns (kaggle layout), got 32"
    )


def test_description_rebuilds_the_source_and_pins_the_content(tmp_path, shared_data):
    path = tmp_path / "small.csv"
    shutil.copy(shared_data / "creditcard_small.csv", path)
    first = load_dataset(CsvSource(str(path)))
    again = load_dataset(source_from_description(first.description["source"]))
    pd.testing.assert_frame_equal(first.frame, again.frame)
    with open(path, "a") as f:
        f.write(io.StringIO(path.read_text().splitlines()[1]).getvalue() + "\n")
    with pytest.raises(ValueError, match="has changed since it was described"):
        load_dataset(source_from_description(first.description["source"]))


def test_generated_source_is_reproducible():
    source = GeneratedSource(2_000, seed=9, fraud_rate=0.01)
    a = load_dataset(source, batch_rows=700)
    b = load_dataset(source_from_description(a.description["source"]))
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert a.description["frauds"] == 20 and a.description["source"] == {
        "kind": "generated",
        "rows": 2_000,
        "seed": 9,
        "fraud_rate": 0.01,
    }


def test_unknown_source_kind():
    with pytest.raises(ValueError, match="unknown dataset source kind 'ftp'"):
        source_from_description({"kind": "ftp", "path": "x"})


@pytest.mark.parametrize(
    "extension, message",
    [
        (
            "json",
            r"s3://b/t\+0\+0000000000.json is a JSON object, which carries no schema: training reads only Avro or Parquet",
        ),
        ("orc", r"s3://b/t\+0\+0000000000.orc: no reader for \.orc objects"),
    ],
)
def test_lake_objects_training_cannot_read_are_errors_not_skipped(extension, message):
    described = {
        "kind": "lake",
        "topic": "t",
        "bucket": "b",
        "endpoint_url": "http://127.0.0.1:1",
        "objects": [
            {
                "key": f"t+0+0000000000.{extension}",
                "etag": "e",
                "size": 1,
                "partition": 0,
                "start_offset": 0,
                "format": extension,
            }
        ],
    }
    with pytest.raises(ValueError, match=message):  # refused before any request to the store
        list(source_from_description(described).batches())
