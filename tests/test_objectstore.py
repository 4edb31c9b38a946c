"""The embedded object store keeps taking writes however many buckets the platform and its users make."""

from __future__ import annotations

import uuid

from fraudstream.s3 import ensure_bucket, s3_client
from stack.embedded import EmbeddedStack


def test_writes_into_many_new_buckets(stack: EmbeddedStack) -> None:
    """SeaweedFS's defaults (8 volumes) ran out after a few buckets, failing every later write."""
    endpoint = stack.addresses.s3_endpoint_url
    client = s3_client(endpoint)
    for i in range(12):
        bucket = f"many-{uuid.uuid4().hex[:10]}-{i}"
        ensure_bucket(bucket, endpoint)
        client.put_object(Bucket=bucket, Key="probe.txt", Body=f"object {i}".encode())
        assert client.get_object(Bucket=bucket, Key="probe.txt")["Body"].read() == f"object {i}".encode()
