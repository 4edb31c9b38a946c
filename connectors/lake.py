"""The lake as the S3 sink writes it: list objects by topic and partition, and read them back.

Object names carry the records' origin (`<topic>+<partition>+<start offset>.<ext>`), so a dataset
description of the lake (which objects, which offsets they cover) needs nothing but a listing.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from typing import Any

import fastavro
import pyarrow.parquet as pq

from fraudstream.s3 import s3_client

_NAME = re.compile(r"^(?P<topic>.+)\+(?P<partition>\d+)\+(?P<offset>\d{10,})\.(?P<ext>avro|parquet|json)$")


@dataclass(frozen=True)
class LakeObject:
    key: str
    topic: str
    partition: int
    start_offset: int
    extension: str


def parse_key(key: str) -> LakeObject | None:
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
    """The records of one object (Avro with fastavro, Parquet with pyarrow, JSON lines)."""
    body = s3_client(endpoint_url).get_object(Bucket=bucket, Key=obj.key)["Body"].read()
    if obj.extension == "avro":
        return list(fastavro.reader(io.BytesIO(body)))
    if obj.extension == "parquet":
        return pq.read_table(io.BytesIO(body)).to_pylist()
    return [json.loads(line) for line in body.decode().splitlines() if line]
