"""Start the ksqlDB-compatible server as a child process against the session's embedded stack."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stack import supervisor
from stack.config import Addresses
from stack.supervisor import RunningService, ServiceSpec


def server_spec(addresses: Addresses, port: int) -> ServiceSpec:
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "stack.ksqldb", "--host", "127.0.0.1", "--port", str(port),
            "--bootstrap-servers", addresses.bootstrap_servers, "--schema-registry-url", addresses.schema_registry_url]
    return ServiceSpec(name=f"ksqldb-{port}", argv=argv, ports=[port], health_url=f"{url}/healthcheck", address=url,
                       start_timeout=90.0)


@contextmanager
def running_server(addresses: Addresses, log_dir: Path, port: int | None = None) -> Iterator[RunningService]:
    service = supervisor.start(server_spec(addresses, port or supervisor.free_port()), log_dir)
    try:
        yield service
    finally:
        supervisor.stop(service)
