"""The lake as the S3 sink writes it: list objects by topic and partition, and read them back.

Object names carry the records' origin (`<topic>+<partition>+<start offset>.<ext>`), so a dataset
description of the lake (which objects, which offsets they cover) needs nothing but a listing. Every
object so named is listed, whatever its extension; reading one whose format has no reader in
:mod:`connectors.formats` is an error, so a format the lake cannot read is never skipped unnoticed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from connectors.formats import DEFAULT_BATCH_ROWS, format_of_extension
from fraudstream.s3 import s3_client

_NAME = re.compile(r"^(?P<topic>.+)\+(?P<partition>\d+)\+(?P<offset>\d{10,})\.(?P<ext>[^/]+)$")


@dataclass(frozen=True)
class LakeObject:
    key: str
    topic: str
    partition: int
    start_offset: int
    extension: str


def parse_key(key: str) -> LakeObject | None:
    """The origin an object's name records, or None for an object the sink did not name."""
    match = _NAME.match(key.rsplit("/", 1)[-1])
    if match is None:
        return None
    return LakeObject(key, match["topic"], int(match["partition"]), int(match["offset"]), match["ext"])


def list_objects(
    bucket: str, topic: str, topics_dir: str = "topics", endpoint_url: str | None = None
) -> list[LakeObject]:
    """Every sink object of `topic`, ordered by partition and start offset."""
    client = s3_client(endpoint_url)
    found: list[LakeObject] = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{topics_dir.strip('/')}/{topic}/"
    ):
        for entry in page.get("Contents", []):
            parsed = parse_key(entry["Key"])
            if parsed is not None and parsed.topic == topic:
                found.append(parsed)
    return sorted(found, key=lambda o: (o.partition, o.start_offset))


def read_object(bucket: str, obj: LakeObject, endpoint_url: str | None = None) -> list[Any]:
    """The records of one object, read as its extension's format.

    Raises :class:`connectors.formats.UnsupportedFormatError` (before fetching) for an extension the
    table has no reader for.
    """
    sink_format = format_of_extension(obj.extension)
    body = s3_client(endpoint_url).get_object(Bucket=bucket, Key=obj.key)["Body"].read()
    return list(sink_format.read(body, DEFAULT_BATCH_ROWS))
