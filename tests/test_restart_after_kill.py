"""Restart after a crash (issue 17, item 4): every service of the durable stack comes back on its own port
after a `kill -9`, however its old connections ended: clients still connected when the server died (its side
of each connection then lingers, closing) or gone before the restart (TIME_WAIT on the server's port).

The servers set SO_REUSEADDR (Tansu through tokio, SeaweedFS through Go's net package, ours and the Faust
worker through asyncio's `create_server`), and `stack.supervisor.start` waits a bounded time for the port
and names what holds it; this test shows it for each one, on the real processes.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import pytest

from models.baseline import LogisticBaseline
from models.datasets import GeneratedSource
from models.registry import ModelRegistry
from models.training import train
from stack.embedded import WORKER, EmbeddedStack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Stop order reversed: each service is killed while those it depends on run.
SERVICES = ["worker", "connect", "ksqldb", "schema-registry", "broker", "objectstore"]


@pytest.fixture(scope="module")
def durable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """The whole durable stack (broker on SeaweedFS) and a scoring worker with a quick production model."""
    directory = tmp_path_factory.mktemp("restart")
    with EmbeddedStack.on_free_ports(directory / "data") as stack:
        registry = ModelRegistry.from_addresses(stack.addresses, cache_dir=directory / "cache")
        model = train(GeneratedSource(2_000, seed=4, fraud_rate=0.02), LogisticBaseline(), output_dir=directory / "m")
        registry.promote("fraud", registry.register("fraud", model.output_dir)["version"], force=True)
        stack.start_service(WORKER)
        yield stack


@contextmanager
def connected(port: int, count: int = 8) -> Iterator[list[socket.socket]]:
    """`count` client connections to `port`, held open (and some bytes sent) until the block ends."""
    with ExitStack() as held:
        sockets = [held.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5)) for _ in range(count)]
        for sock in sockets:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # a request half sent: the server is mid-read
        yield sockets


#: Every service with its clients still connected (its side of each connection lingers, closing); the
#: broker, the issue's case, also with its clients gone first (TIME_WAIT on its port).
CASES = [(name, "still-connected") for name in SERVICES] + [("broker", "gone")]


@pytest.mark.parametrize(("name", "clients"), CASES, ids=[f"{name}-{clients}" for name, clients in CASES])
def test_a_killed_service_comes_back_on_its_own_port(
    durable: EmbeddedStack, name: str, clients: str, record_property: Callable[[str, object], None]
) -> None:
    port = durable.ports[name]
    with connected(port):
        durable.stop_service(name, kill=True)
        if clients == "still-connected":
            started = time.monotonic()
            durable.start_service(name)  # a StackError here names what still holds the port
    if clients == "gone":
        started = time.monotonic()
        durable.start_service(name)
    record_property("restart_seconds", round(time.monotonic() - started, 1))
    service = durable.running[name]
    assert service.healthy(), f"{name} not healthy after its restart; see {service.log}"
    assert service.address.endswith(f":{port}")
