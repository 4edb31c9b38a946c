"""Shared fixtures: one embedded stack per test session, unique topic names per test, addresses and a data
directory for tests that run `fraudstream` itself, and a ksqlDB server per test module that asks for one."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import fraudstream
from ksqldb_server_helpers import running_server

from fraudstream.config import Addresses
from ksql import KSQLAPI
from stack.embedded import EmbeddedStack
from stack.supervisor import RunningService, free_ports

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: The `shared` folder beside the repository (sample data, ksqlDB's QTT files).
SHARED = Path(__file__).resolve().parents[2] / "shared"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the session stack is an integration test; so is every test of a module that starts
    its own servers (those modules say so with `pytestmark = pytest.mark.integration`)."""
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """The whole embedded stack on free ports, broker in memory for speed; started once per session."""
    embedded = EmbeddedStack.on_free_ports(tmp_path_factory.mktemp("stack"), ephemeral=True)
    with embedded:
        yield embedded


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> str:
    """A topic name no other test uses, readable in broker logs."""
    return f"{request.node.name[:40].replace('[', '-').replace(']', '')}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip(f"sample data not found at {path}")
    return path


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """Addresses on free ports, passed the way a user would: environment variables; the per-user state
    (which stack `up` started last) in the test's own directory, not the user's."""
    host = "127.0.0.1"
    broker, registry, ksqldb, connect, objectstore, worker = free_ports(6)
    addresses = Addresses(
        bootstrap_servers=f"{host}:{broker}",
        schema_registry_url=f"http://{host}:{registry}",
        ksqldb_url=f"http://{host}:{ksqldb}",
        connect_url=f"http://{host}:{connect}",
        s3_endpoint_url=f"http://{host}:{objectstore}",
    )
    return {**addresses.to_env(), "FRAUDSTREAM_WEB_PORT": str(worker), "XDG_STATE_HOME": str(tmp_path / "state")}


@pytest.fixture
def data_dir(tmp_path: Path, cli_env: dict[str, str]) -> Iterator[Path]:
    """A private data directory; a stack left running in it by a failed test is stopped."""
    yield tmp_path / "data"
    if (tmp_path / "data" / "stack.json").exists():
        fraudstream("down", "--data-dir", str(tmp_path / "data"), env=cli_env, check=False)


@pytest.fixture(scope="module")
def server(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """The ksqlDB-compatible server on the session stack, one per test module."""
    with running_server(stack.addresses, tmp_path_factory.mktemp("ksqldb-logs")) as service:
        yield service


@pytest.fixture
def client(server: RunningService) -> KSQLAPI:
    return KSQLAPI(server.address)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Numbers the lead reports: the fuzz run's requests and status codes per service
    (tests/test_fuzz_endpoints.py) and each service's time to healthy after a kill -9
    (tests/test_restart_after_kill.py)."""
    reports = [
        report
        for report in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", [])
        if report.when == "call"
    ]
    fuzz = [value for report in reports for name, value in report.user_properties if name == "fuzz"]
    if fuzz:
        terminalreporter.section("fuzz: requests and status codes per service")
        for row in fuzz:
            codes = ", ".join(f"{code}: {n}" for code, n in sorted(row["codes"].items()))
            terminalreporter.write_line(f"{row['service']:<16} {row['requests']:>5} requests   {codes}")
    restarts = [
        (report.nodeid.rpartition("[")[2].rstrip("]"), value)
        for report in reports
        for name, value in report.user_properties
        if name == "restart_seconds"
    ]
    if restarts:
        terminalreporter.section("restart after kill -9: seconds from start to healthy")
        for case, seconds in restarts:
            terminalreporter.write_line(f"{case:<32} {seconds:>6.1f} s")
