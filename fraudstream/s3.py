"""The one S3 client of fraudstream: boto3, configured once for SeaweedFS, MinIO or AWS S3.

`stack/` (the embedded object store, the Connect worker's S3 sink), `models/` (the lake and the model
registry) and `connectors/` (the lake reader) all talk to object storage through `s3_client`, so
credentials, endpoint, addressing style and retries are the same everywhere.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from fraudstream.config import Addresses, s3_credentials


def s3_client(endpoint_url: str | None = None) -> Any:
    """A boto3 S3 client for `endpoint_url` (default: S3_ENDPOINT_URL, else the embedded store)."""
    credentials = s3_credentials()
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or Addresses.from_env().s3_endpoint_url,
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        region_name=credentials["AWS_DEFAULT_REGION"],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"}),
    )


def ensure_bucket(bucket: str, endpoint_url: str | None = None) -> None:
    """Create `bucket` unless it exists (idempotent)."""
    client = s3_client(endpoint_url)
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError:
        client.create_bucket(Bucket=bucket)
