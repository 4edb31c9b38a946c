"""The S3 sink's format table (connectors/formats.py): what the sink writes, the lake reads back; a format
the table does not know is an error on both sides, never a silent skip. Pure logic, no servers."""

from __future__ import annotations

import datetime as dt

import fastavro
import pytest

from connectors.formats import (
    FORMAT_CLASSES,
    SINK_FORMATS,
    UnsupportedFormatError,
    format_names,
    format_of_class,
    format_of_extension,
)
from connectors.lake import parse_key, read_object
from stack.connect import definitions as d
from stack.connect.s3sink.formats import ENCODERS, FormatError, make_format

SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "Score",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "score", "type": "double"},
            {"name": "label", "type": ["null", "string"], "default": None},
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        ],
    }
)
RECORDS = [
    {"id": i, "score": i / 4, "label": None if i % 2 else f"r{i}", "at": dt.datetime(2024, 5, 1, tzinfo=dt.UTC)}
    for i in range(5)
]


def test_the_sink_writes_every_format_of_the_table_and_no_other() -> None:
    assert set(ENCODERS) == set(FORMAT_CLASSES) and d.FORMATS == FORMAT_CLASSES
    for row in SINK_FORMATS:
        assert make_format(row.format_class).extension == row.extension
        assert format_of_class(row.format_class) is row and format_of_extension(row.extension) is row


@pytest.mark.parametrize("row", SINK_FORMATS, ids=lambda row: row.name)
def test_what_the_sink_writes_the_lake_reads_back(row) -> None:
    body = make_format(row.format_class).encode(RECORDS, SCHEMA, "k")
    back = list(row.read(body, 2))  # batches smaller than the object
    if row.carries_schema:
        assert back == RECORDS
    else:  # JSON lines keep no schema: a timestamp comes back as Connect writes it, epoch millis
        assert back == [{**r, "at": 1714521600000} for r in RECORDS]


def test_an_object_of_an_unknown_format_is_listed_and_reading_it_is_a_clear_error() -> None:
    obj = parse_key("topics/t/partition=0/t+0+0000000000.json.gz")
    assert obj is not None and (obj.topic, obj.extension) == ("t", "json.gz")
    with pytest.raises(UnsupportedFormatError, match=r"no reader for \.json\.gz objects: the lake reads \.avro"):
        read_object("bucket", obj, "http://127.0.0.1:1")  # refused before any request


def test_an_unknown_format_class_is_a_clear_error() -> None:
    with pytest.raises(UnsupportedFormatError, match="unsupported format.class x.OrcFormat; supported: io.confluent"):
        format_of_class("x.OrcFormat")
    with pytest.raises(FormatError, match="unsupported format.class x.OrcFormat"):
        make_format("x.OrcFormat")


def test_format_names_read_as_a_list() -> None:
    assert format_names(SINK_FORMATS[:1]) == "Avro"
    assert format_names(SINK_FORMATS[:2]) == "Avro or Parquet"
    assert format_names(SINK_FORMATS) == "Avro, Parquet or JSON"
