"""`fraudstream up --prometheus`: Debian's Prometheus scraping every service of the stack."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from pathlib import Path

import pytest
from cli_helpers import fraudstream

from stack.embedded import EmbeddedStack
from stack.prometheus import PROMETHEUS, scrape_config
from stack.supervisor import free_port, pid_alive


def test_the_scrape_configuration_has_a_job_per_service_and_prometheus_itself() -> None:
    config = scrape_config({"schema-registry": "127.0.0.1:1", "worker": "127.0.0.1:2"}, "127.0.0.1:3")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"schema-registry", "worker", PROMETHEUS}
    assert jobs["worker"]["static_configs"] == [{"targets": ["127.0.0.1:2"]}]
    assert all(job["metrics_path"] == "/metrics" for job in jobs.values())


def test_without_the_binary_up_says_so_in_one_line_and_starts_nothing(tmp_path: Path) -> None:
    result = fraudstream(
        "up", "--prometheus", "--data-dir", str(tmp_path / "data"), env={"PATH": str(tmp_path)}, check=False
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "apt-get install prometheus" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "data" / "stack.json").exists()


def targets(url: str) -> dict[str, str]:
    """Each scrape job's health as Prometheus reports it ("up", "down" or "unknown" before the first scrape)."""
    with urllib.request.urlopen(f"{url}/api/v1/targets", timeout=5) as response:
        body = json.load(response)
    return {target["labels"]["job"]: target["health"] for target in body["data"]["activeTargets"]}


@pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="Debian's prometheus package is not installed (apt-get install prometheus)",
)
def test_up_prometheus_scrapes_the_running_stack(stack: EmbeddedStack, tmp_path: Path) -> None:
    """`up --prometheus` on the session's stack: Prometheus joins it, lists every service and finds them up."""
    port = free_port()
    env = {**stack.addresses.to_env(), "XDG_STATE_HOME": str(tmp_path)}  # not the user's remembered stack
    result = fraudstream("up", "--prometheus", "--prometheus-port", str(port), "--data-dir", str(stack.data_dir),
                         env=env)  # fmt: skip
    try:
        assert result.returncode == 0, result.stderr
        url = f"http://127.0.0.1:{port}"
        assert f"prometheus: {url}" in result.stdout
        jobs = targets(url)  # empty until Prometheus has loaded its configuration's targets
        deadline = time.monotonic() + 120  # a bound, not a measurement: targets are scraped every 5 s
        while not {"schema-registry", "ksqldb", "connect", "objectstore"} <= {
            job for job, health in jobs.items() if health == "up"
        }:
            assert time.monotonic() < deadline, f"targets not up: {jobs}"
            time.sleep(1)
            jobs = targets(url)
        assert set(jobs) == {"schema-registry", "ksqldb", "connect", "worker", "objectstore", PROMETHEUS}
        assert jobs["worker"] != "up"  # no worker runs on this stack: Prometheus says so rather than hiding it
        status = fraudstream("status", "--data-dir", str(stack.data_dir), env=env)
        assert "prometheus" in status.stdout and status.returncode == 0
    finally:
        attached = EmbeddedStack.attach(stack.data_dir)
        pid = attached.running[PROMETHEUS].pid if PROMETHEUS in attached.running else None
        attached.stop_service(PROMETHEUS)
    assert pid is not None and not pid_alive(pid)
