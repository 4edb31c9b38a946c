"""How to run the worker as a supervised child process: the ServiceSpec `fraudstream up` and the tests use."""

from __future__ import annotations

import sys

from fraudstream.config import DEFAULT_HOST, Addresses
from stack.connect.storage import CONFIG_TOPIC, OFFSET_TOPIC, STATUS_TOPIC
from stack.supervisor import ServiceSpec


def connect_spec(
    addresses: Addresses, port: int, host: str = DEFAULT_HOST, storage_prefix: str = "", scheme: str = "http"
) -> ServiceSpec:
    """The Connect worker against `addresses`; its environment carries them, so `${env:S3_BUCKET}` and friends resolve.

    `storage_prefix` gives the worker storage topics of its own (`<prefix>connect-configs`, ...), as a
    separate Connect cluster would have: tests use it so that workers sharing a broker do not share connectors.
    `scheme` https: the worker serves TLS with the certificate its environment names (fraudstream.tls).
    """
    url = f"{scheme}://{host}:{port}"
    argv = [
        sys.executable,
        "-m",
        "stack.connect",
        "--host",
        host,
        "--port",
        str(port),
        "--bootstrap-servers",
        addresses.bootstrap_servers,
        "--schema-registry-url",
        addresses.schema_registry_url,
    ]
    for kind, topic in (("config", CONFIG_TOPIC), ("status", STATUS_TOPIC), ("offset", OFFSET_TOPIC)):
        argv += [f"--{kind}-storage-topic", storage_prefix + topic]
    return ServiceSpec(
        name="connect",
        argv=argv,
        ports=[port],
        health_url=f"{url}/",
        address=url,
        env=addresses.to_env(),
        start_timeout=90.0,
        stop_timeout=60.0,
    )
