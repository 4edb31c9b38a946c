"""The configuration keys a connector takes: Connect's common ones and the S3 sink's own.

Each key carries what Connect's validation endpoint reports about it (type, default, importance,
group, documentation), so that `PUT /connector-plugins/{plugin}/config/validate` answers in Connect's
shape and the worker parses configs from the same table it validates them with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connectors.formats import AVRO_FORMAT as AVRO_FORMAT
from connectors.formats import FORMAT_CLASSES
from connectors.formats import JSON_FORMAT as JSON_FORMAT
from connectors.formats import PARQUET_FORMAT as PARQUET_FORMAT

S3_SINK_CLASS = "io.confluent.connect.s3.S3SinkConnector"
S3_SINK_VERSION = "10.5.14"

# The format classes the sink writes: the rows of the table the lake readers read with.
FORMATS = FORMAT_CLASSES

_PARTITIONER = "io.confluent.connect.storage.partitioner."
DEFAULT_PARTITIONER = _PARTITIONER + "DefaultPartitioner"
TIME_BASED_PARTITIONER = _PARTITIONER + "TimeBasedPartitioner"
HOURLY_PARTITIONER = _PARTITIONER + "HourlyPartitioner"
DAILY_PARTITIONER = _PARTITIONER + "DailyPartitioner"
FIELD_PARTITIONER = _PARTITIONER + "FieldPartitioner"
PARTITIONERS = (DEFAULT_PARTITIONER, TIME_BASED_PARTITIONER, HOURLY_PARTITIONER, DAILY_PARTITIONER, FIELD_PARTITIONER)

STRING_CONVERTER = "org.apache.kafka.connect.storage.StringConverter"
BYTES_CONVERTER = "org.apache.kafka.connect.converters.ByteArrayConverter"
JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"
AVRO_CONVERTER = "io.confluent.connect.avro.AvroConverter"
CONVERTERS = (STRING_CONVERTER, BYTES_CONVERTER, JSON_CONVERTER, AVRO_CONVERTER)

S3_STORAGE = "io.confluent.connect.s3.storage.S3Storage"


@dataclass(frozen=True)
class ConfigKey:
    name: str
    type: str  # Connect's type names: STRING, INT, LONG, BOOLEAN, CLASS, LIST
    default: Any  # None: no default; REQUIRED: must be given
    importance: str
    group: str
    documentation: str
    choices: tuple[str, ...] = ()
    check: Callable[[Any], str | None] | None = None  # returns an error message or None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


def _at_least(minimum: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value >= minimum else f"Value must be at least {minimum}"

    return check


def _positive_or_off(value: Any) -> str | None:
    return None if value == -1 or value > 0 else "Value must be -1 (disabled) or positive"


KEYS: tuple[ConfigKey, ...] = (
    # -- Connect's common settings --------------------------------------------------------------
    ConfigKey("name", "STRING", REQUIRED, "HIGH", "Common", "Globally unique name to use for this connector."),
    ConfigKey(
        "connector.class", "STRING", REQUIRED, "HIGH", "Common", "Name or alias of the class for this connector."
    ),
    ConfigKey(
        "tasks.max",
        "INT",
        1,
        "HIGH",
        "Common",
        "Maximum number of tasks to use for this connector.",
        check=_at_least(1),
    ),
    ConfigKey(
        "key.converter", "CLASS", STRING_CONVERTER, "LOW", "Common", "Converter class for record keys.", CONVERTERS
    ),
    ConfigKey(
        "value.converter", "CLASS", AVRO_CONVERTER, "LOW", "Common", "Converter class for record values.", CONVERTERS
    ),
    ConfigKey("topics", "LIST", "", "HIGH", "Common", "List of topics to consume, separated by commas."),
    ConfigKey("topics.regex", "STRING", "", "HIGH", "Common", "Regular expression giving topics to consume."),
    ConfigKey(
        "errors.tolerance",
        "STRING",
        "none",
        "MEDIUM",
        "Error Handling",
        "none: an error fails the task; all: records that cannot be converted are skipped (and dead-lettered).",
        ("none", "all"),
    ),
    ConfigKey(
        "errors.deadletterqueue.topic.name",
        "STRING",
        "",
        "MEDIUM",
        "Error Handling",
        "Topic that receives the records that could not be converted, when errors.tolerance is all.",
    ),
    ConfigKey(
        "errors.deadletterqueue.context.headers.enable",
        "BOOLEAN",
        False,
        "MEDIUM",
        "Error Handling",
        "Add __connect.errors.* headers with the failure's context to dead-lettered records.",
    ),
    ConfigKey("errors.log.enable", "BOOLEAN", False, "MEDIUM", "Error Handling", "Log every tolerated error."),
    # -- the S3 sink's own --------------------------------------------------------------------------
    ConfigKey(
        "format.class",
        "CLASS",
        REQUIRED,
        "HIGH",
        "Connector",
        "The format class to use when writing data to the store.",
        FORMATS,
    ),
    ConfigKey(
        "flush.size",
        "INT",
        REQUIRED,
        "HIGH",
        "Connector",
        "Number of records written to store before invoking file commits.",
        check=_at_least(1),
    ),
    ConfigKey(
        "rotate.interval.ms",
        "LONG",
        -1,
        "HIGH",
        "Connector",
        "Commit a file once a record's extracted timestamp is this far past the file's first record.",
        check=_positive_or_off,
    ),
    ConfigKey(
        "rotate.schedule.interval.ms",
        "LONG",
        -1,
        "MEDIUM",
        "Connector",
        "Commit open files at every multiple of this interval of wall-clock time in `timezone`.",
        check=_positive_or_off,
    ),
    ConfigKey(
        "behavior.on.null.values",
        "STRING",
        "fail",
        "LOW",
        "Connector",
        "What to do with a record whose value is null.",
        ("fail", "ignore"),
    ),
    ConfigKey(
        "avro.codec", "STRING", "null", "LOW", "Connector", "Avro compression codec.", ("null", "deflate", "snappy")
    ),
    ConfigKey(
        "parquet.codec",
        "STRING",
        "snappy",
        "LOW",
        "Connector",
        "Parquet compression codec.",
        ("none", "gzip", "snappy", "zstd", "lz4", "brotli"),
    ),
    ConfigKey("s3.bucket.name", "STRING", REQUIRED, "HIGH", "S3", "The S3 bucket."),
    ConfigKey("s3.region", "STRING", "us-west-2", "MEDIUM", "S3", "The AWS region to be used by the connector."),
    ConfigKey(
        "store.url", "STRING", "", "HIGH", "Storage", "Store's connection URL (an S3-compatible endpoint), if not AWS."
    ),
    ConfigKey("storage.class", "CLASS", REQUIRED, "HIGH", "Storage", "The underlying storage layer.", (S3_STORAGE,)),
    ConfigKey(
        "topics.dir",
        "STRING",
        "topics",
        "HIGH",
        "Storage",
        "Top level directory to store the data ingested from Kafka.",
    ),
    ConfigKey("directory.delim", "STRING", "/", "MEDIUM", "Storage", "Directory delimiter pattern."),
    ConfigKey("file.delim", "STRING", "+", "MEDIUM", "Storage", "File delimiter pattern."),
    ConfigKey(
        "partitioner.class",
        "CLASS",
        DEFAULT_PARTITIONER,
        "HIGH",
        "Partitioner",
        "The partitioner to use when writing data to the store.",
        PARTITIONERS,
    ),
    ConfigKey(
        "partition.field.name", "LIST", "", "MEDIUM", "Partitioner", "Record fields used by the FieldPartitioner."
    ),
    ConfigKey(
        "path.format",
        "STRING",
        "",
        "MEDIUM",
        "Partitioner",
        "Joda-Time pattern of the directories of the TimeBasedPartitioner, e.g. 'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH.",
    ),
    ConfigKey(
        "partition.duration.ms",
        "LONG",
        -1,
        "MEDIUM",
        "Partitioner",
        "The duration of a partition in milliseconds (TimeBasedPartitioner).",
    ),
    ConfigKey(
        "locale",
        "STRING",
        "",
        "MEDIUM",
        "Partitioner",
        "The locale to use when partitioning with TimeBasedPartitioner.",
    ),
    ConfigKey(
        "timezone",
        "STRING",
        "",
        "MEDIUM",
        "Partitioner",
        "The timezone to use when partitioning with TimeBasedPartitioner.",
    ),
    ConfigKey(
        "timestamp.extractor",
        "STRING",
        "Wallclock",
        "MEDIUM",
        "Partitioner",
        "Where a record's time comes from: Wallclock, Record (the Kafka timestamp) or RecordField.",
        ("Wallclock", "Record", "RecordField"),
    ),
    ConfigKey(
        "timestamp.field",
        "STRING",
        "timestamp",
        "MEDIUM",
        "Partitioner",
        "The record field holding the timestamp (RecordField).",
    ),
)

KEYS_BY_NAME: dict[str, ConfigKey] = {key.name: key for key in KEYS}
GROUPS: tuple[str, ...] = tuple(dict.fromkeys(key.group for key in KEYS))
