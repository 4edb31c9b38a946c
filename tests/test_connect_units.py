"""Pure logic of the S3 sink (no servers): names, partitioners, rotation, formats, config checks."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import fastavro
import pandas as pd
import pyarrow.parquet as pq
import pytest

from connectors.apply import ConnectorFileError, load
from connectors.lake import parse_key
from stack.connect import definitions as d
from stack.connect.converters import AvroConverter, ConversionError, JsonConverter, StringConverter, TransientError
from stack.connect.s3sink.formats import AvroFormat, FormatError, JsonFormat, ParquetFormat
from stack.connect.s3sink.naming import object_key
from stack.connect.s3sink.partitioners import (
    DefaultPartitioner,
    FieldPartitioner,
    PartitionerError,
    RecordView,
    TimeBasedPartitioner,
    joda_format,
    record_time,
)
from stack.connect.s3sink.writer import PartitionWriter, Rotation, next_schedule
from stack.connect.settings import ConfigError, SinkSettings, resolve, validate
from stack.supervisor import free_port

CONNECTORS = Path(__file__).resolve().parents[1] / "connectors"

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

BASE = {
    "name": "unit",
    "connector.class": d.S3_SINK_CLASS,
    "topics": "t",
    "s3.bucket.name": "b",
    "storage.class": d.S3_STORAGE,
    "format.class": d.AVRO_FORMAT,
    "flush.size": "3",
    "value.converter.schema.registry.url": "http://127.0.0.1:1",
}


def view(offset: int = 0, timestamp: int | None = 0, value: object = None, partition: int = 0) -> RecordView:
    return RecordView("t", partition, offset, timestamp, value)


# -- names -----------------------------------------------------------------------------------------------


def test_object_names_are_confluents() -> None:
    assert (
        object_key("topics", "fraud-scores", "partition=3", 3, 1000, "avro")
        == "topics/fraud-scores/partition=3/fraud-scores+3+0000001000.avro"
    )
    assert (
        object_key("lake/", "t", "year=2024/month=05", 0, 0, "parquet")
        == "lake/t/year=2024/month=05/t+0+0000000000.parquet"
    )
    parsed = parse_key("topics/fraud-scores/partition=3/fraud-scores+3+0000001000.avro")
    assert parsed is not None and (parsed.topic, parsed.partition, parsed.start_offset, parsed.extension) == (
        "fraud-scores",
        3,
        1000,
        "avro",
    )
    assert parse_key("topics/t/partition=0/notes.txt") is None


# -- partitioners ----------------------------------------------------------------------------------------


def test_default_and_field_partitioners() -> None:
    assert DefaultPartitioner().encode(view(partition=2)) == "partition=2"
    fields = FieldPartitioner(["country", "device.kind"])
    assert fields.encode(view(value={"country": "FR", "device": {"kind": "pos"}})) == "country=FR/device.kind=pos"
    with pytest.raises(PartitionerError):
        fields.encode(view(value={"country": "FR"}))


def test_joda_patterns() -> None:
    moment = dt.datetime(2024, 3, 7, 9, 5, 2)
    assert joda_format("'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH", moment) == "year=2024/month=03/day=07/hour=09"
    assert joda_format("yyyy-MM-dd'T'HH:mm:ss", moment) == "2024-03-07T09:05:02"
    assert joda_format("'it''s' yy", moment) == "it's 24"


def test_time_based_partitioner_buckets_in_its_timezone() -> None:
    hourly = TimeBasedPartitioner("'date'=YYYY-MM-dd/'hour'=HH", 3_600_000, "UTC", record_time)
    at = int(dt.datetime(2024, 3, 7, 9, 59, tzinfo=dt.UTC).timestamp() * 1000)
    assert hourly.encode(view(timestamp=at)) == "date=2024-03-07/hour=09"
    daily_paris = TimeBasedPartitioner("YYYY-MM-dd", 86_400_000, "Europe/Paris", record_time)
    late = int(dt.datetime(2024, 3, 7, 23, 30, tzinfo=dt.UTC).timestamp() * 1000)  # 00:30 on the 8th in Paris
    assert daily_paris.encode(view(timestamp=late)) == "2024-03-08"
    with pytest.raises(PartitionerError):
        hourly.encode(view(timestamp=None))


# -- rotation --------------------------------------------------------------------------------------------


def test_flush_size_counts_from_the_file_start() -> None:
    writer = PartitionWriter("t", 0, Rotation(flush_size=3))
    batches = [b for offset in range(7) for b in writer.add(offset, 0, "partition=0", offset, "s", 1, 0)]
    assert [(b.files[0].start_offset, b.files[0].records, b.end_offset) for b in batches] == [
        (0, [0, 1, 2], 3),
        (3, [3, 4, 5], 6),
    ]
    assert writer.committable() == 6  # the open file's start


def test_skipped_records_move_the_commit_point_only_without_open_files() -> None:
    writer = PartitionWriter("t", 0, Rotation(flush_size=2))
    writer.skip(0)
    assert writer.committable() == 1
    writer.add(1, 0, "p", "a", "s", 1, 0)
    writer.skip(2)
    assert writer.committable() == 1
    (batch,) = writer.add(3, 0, "p", "b", "s", 1, 0)
    assert (batch.files[0].start_offset, batch.files[0].records, batch.end_offset) == (1, ["a", "b"], 4)


def test_rotate_interval_uses_record_time_and_the_new_record_starts_the_next_file() -> None:
    writer = PartitionWriter("t", 0, Rotation(flush_size=100, rotate_interval_ms=250))
    closed = [b for offset in range(6) for b in writer.add(offset, offset * 100, "p", offset, "s", 1, 0)]
    assert [(b.files[0].start_offset, b.files[0].records, b.end_offset) for b in closed] == [(0, [0, 1, 2], 3)]
    assert writer.committable() == 3


def test_schema_change_closes_the_file() -> None:
    writer = PartitionWriter("t", 0, Rotation(flush_size=100))
    assert writer.add(0, 0, "p", "a", "s1", 1, 0) == []
    (batch,) = writer.add(1, 0, "p", "b", "s2", 2, 0)
    assert (batch.schema, batch.files[0].records, batch.end_offset) == ("s1", ["a"], 1)


def test_scheduled_rotation_fires_on_the_wall_clock() -> None:
    writer = PartitionWriter("t", 0, Rotation(flush_size=100, schedule_interval_ms=60_000, timezone="UTC"))
    writer.add(0, 0, "p", "a", "s", 1, now_ms=90_000)
    assert writer.due(now_ms=119_999) is None
    batch = writer.due(now_ms=120_000)
    assert batch is not None and batch.end_offset == 1
    assert next_schedule(90_000, 60_000, writer.zone) == 120_000


def test_several_encoded_partitions_close_together() -> None:
    writer = PartitionWriter("t", 0, Rotation(flush_size=4))
    out = [b for offset, where in enumerate("abab") for b in writer.add(offset, 0, where, offset, "s", 1, 0)]
    (batch,) = out
    assert {(f.encoded_partition, f.start_offset, tuple(f.records)) for f in batch.files} == {
        ("a", 0, (0, 2)),
        ("b", 1, (1, 3)),
    }


# -- formats ---------------------------------------------------------------------------------------------


def test_avro_files_are_deterministic_and_readable() -> None:
    first = AvroFormat().encode(RECORDS, SCHEMA, "k")
    assert first == AvroFormat().encode(RECORDS, SCHEMA, "k")
    assert list(fastavro.reader(io.BytesIO(first))) == RECORDS
    with pytest.raises(FormatError):
        AvroFormat().encode(RECORDS, None, "k")


def test_parquet_files_read_back_with_pyarrow_and_pandas() -> None:
    body = ParquetFormat().encode(RECORDS, SCHEMA, "k")
    table = pq.read_table(io.BytesIO(body))
    assert table.column_names == ["id", "score", "label", "at"]
    assert table.to_pylist() == RECORDS
    frame = pd.read_parquet(io.BytesIO(body))
    assert frame["id"].tolist() == [0, 1, 2, 3, 4] and frame["label"].isna().sum() == 2


def test_json_lines() -> None:
    lines = JsonFormat().encode(RECORDS[:2], SCHEMA, "k").decode().splitlines()
    assert [json.loads(line)["at"] for line in lines] == [1714521600000] * 2


# -- converters ------------------------------------------------------------------------------------------


def test_an_unreachable_registry_is_transient_not_bad_data() -> None:
    """Such records must be retried, not dead-lettered: the bytes may be fine."""
    with pytest.raises(TransientError):
        AvroConverter({"schema.registry.url": f"http://127.0.0.1:{free_port()}"}).convert(
            "t", b"\x00\x00\x00\x00\x01\x02"
        )


def test_converters_reject_unreadable_bytes() -> None:
    with pytest.raises(ConversionError, match="Unknown magic byte"):
        AvroConverter({"schema.registry.url": "http://127.0.0.1:1"}).convert("t", b"plain text")
    with pytest.raises(ConversionError):
        JsonConverter({}).convert("t", b'{"no": "envelope"}')
    with pytest.raises(ConversionError):
        StringConverter().convert("t", b"\xff\xfe")
    enveloped = JsonConverter({}).convert(
        "t",
        json.dumps(
            {
                "schema": {
                    "type": "struct",
                    "fields": [{"field": "id", "type": "int64"}, {"field": "note", "type": "string", "optional": True}],
                },
                "payload": {"id": 7, "note": None},
            }
        ).encode(),
    )
    assert enveloped.value == {"id": 7, "note": None}
    assert list(fastavro.reader(io.BytesIO(AvroFormat().encode([enveloped.value], enveloped.schema, "k")))) == [
        {"id": 7, "note": None}
    ]
    assert JsonConverter({"schemas.enable": "false"}).convert("t", b'{"a": 1}').schema is None


# -- settings --------------------------------------------------------------------------------------------


def test_env_placeholders_resolve_and_missing_ones_are_errors() -> None:
    resolved, errors = resolve({"s3.bucket.name": "${env:BUCKET}", "store.url": "${env:NOPE}"}, {"BUCKET": "lake"})
    assert resolved["s3.bucket.name"] == "lake"
    assert "NOPE" in errors["store.url"][0]


def test_validation_reports_each_bad_key() -> None:
    _, errors = validate({**BASE, "flush.size": "many", "format.class": "com.example.Csv", "topics": ""}, {})
    assert "Not a number" in errors["flush.size"][0]
    assert errors["format.class"] and errors["topics"] == errors["topics.regex"] == [
        "Must configure one of topics or topics.regex"
    ]
    _, errors = validate({**BASE, "partitioner.class": d.TIME_BASED_PARTITIONER}, {})
    assert errors["path.format"] and errors["timezone"] and errors["locale"]
    _, errors = validate({**BASE, "errors.deadletterqueue.topic.name": "t"}, {})
    assert errors["errors.deadletterqueue.topic.name"]
    with pytest.raises(ConfigError, match="flush.size"):
        SinkSettings.parse({k: v for k, v in BASE.items() if k != "flush.size"}, {})
    assert SinkSettings.parse(BASE, {})["flush.size"] == 3


@pytest.mark.parametrize("path", sorted(CONNECTORS.glob("*.json")), ids=lambda p: p.name)
def test_shipped_connector_files_are_valid(path: Path) -> None:
    connector = load(path)
    assert connector.config["connector.class"] == d.S3_SINK_CLASS
    assert (
        connector.config["s3.bucket.name"] == "${env:S3_BUCKET}"
        and connector.config["store.url"] == "${env:S3_ENDPOINT_URL}"
    )
    environ = {
        "S3_BUCKET": "fraudstream",
        "S3_ENDPOINT_URL": "http://127.0.0.1:8333",
        "SCHEMA_REGISTRY_URL": "http://127.0.0.1:8081",
    }
    settings = SinkSettings.parse({**connector.config, "name": connector.name}, environ)
    assert settings["s3.bucket.name"] == "fraudstream"
    assert settings["format.class"] in (d.AVRO_FORMAT, d.PARQUET_FORMAT)


def test_connector_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"config": {}}')
    with pytest.raises(ConnectorFileError, match="expected"):
        load(bad)
