"""How to run the worker as a supervised child process: the ServiceSpec `fraudstream up` and the tests use."""

from __future__ import annotations

import sys

from stack.config import DEFAULT_HOST, Addresses
from stack.supervisor import ServiceSpec


def connect_spec(addresses: Addresses, port: int, host: str = DEFAULT_HOST) -> ServiceSpec:
    """The Connect worker against `addresses`; its environment carries them, so `${env:S3_BUCKET}` and friends resolve."""
    url = f"http://{host}:{port}"
    argv = [sys.executable, "-m", "connectors.worker", "--host", host, "--port", str(port),
            "--bootstrap-servers", addresses.bootstrap_servers, "--schema-registry-url", addresses.schema_registry_url]
    return ServiceSpec(name="connect", argv=argv, ports=[port], health_url=f"{url}/", address=url,
                       env=addresses.to_env(), start_timeout=90.0, stop_timeout=60.0)
