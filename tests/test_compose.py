"""The production stack (docker-compose.yml and docker/) is checked without a Docker engine.

Compose's own validator must accept the file, and the properties the project relies on are asserted on the
parsed file: loopback-only host ports, a scalable worker, pinned images, and the same address variables as
the embedded stack (fraudstream/config.py), so that client code is the same in both deployments.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from fraudstream.config import Addresses
from fraudstream.credentials import HTTP_SERVICES, Credentials

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKER_DIR = ROOT / "docker"

#: Services that run fraudstream code or talk to its services, and so must see the same address variables.
ADDRESSED_SERVICES = ("worker", "connect", "ksqldb", "setup", "jupyter")


def _compose_command() -> list[str] | None:
    """`docker compose` when the plugin exists, else Debian's `docker-compose`, else None."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _dockerfiles(services: dict[str, dict[str, Any]]) -> set[Path]:
    found = set()
    for service in services.values():
        build = service.get("build")
        if build is None:
            continue
        if isinstance(build, str):
            build = {"context": build}
        found.add(ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile"))
    return found


def _assert_pinned(image: str, where: str) -> None:
    name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    assert tag, f"{where}: image {image!r} has no tag"
    assert tag != "latest", f"{where}: image {image!r} uses the moving tag 'latest'"
    assert name, f"{where}: image {image!r} has no name"


def test_compose_accepts_the_file() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (apt-get install -y docker-compose)")
    result = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "config", "-q"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, f"{' '.join(command)} config rejected the file:\n{result.stderr}"


def test_every_published_port_is_bound_to_loopback(services: dict[str, dict[str, Any]]) -> None:
    published = 0
    for name, service in services.items():
        for port in service.get("ports", []):
            published += 1
            if isinstance(port, dict):
                host_ip = port.get("host_ip")
            else:
                parts = str(port).split(":")
                host_ip = parts[0] if len(parts) == 3 else None
            assert host_ip == "127.0.0.1", f"{name}: port {port!r} is not bound to 127.0.0.1"
    assert published > 0, "the stack publishes no port at all"


def test_worker_can_be_scaled(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker, "a fixed container_name stops `--scale worker=N`"
    assert not worker.get("ports"), "a fixed host port stops `--scale worker=N`; use `expose`"
    assert "faust -A streams.app worker" in " ".join(worker["command"])


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert "image" in service or "build" in service, f"{name}: neither image nor build"
        if "image" in service:
            _assert_pinned(service["image"], name)
    dockerfiles = _dockerfiles(services)
    assert ROOT / "docker" / "Dockerfile" in dockerfiles
    for dockerfile in dockerfiles:
        bases = re.findall(r"^FROM\s+(?:--\S+\s+)*(\S+)", dockerfile.read_text(), flags=re.MULTILINE)
        assert bases, f"{dockerfile}: no FROM line"
        for base in bases:
            _assert_pinned(base, str(dockerfile.relative_to(ROOT)))


def test_worker_image_installs_the_project_as_a_non_root_user() -> None:
    text = (DOCKER_DIR / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, flags=re.MULTILINE)
    assert re.search(r"^RUN pip install /app\b", text, flags=re.MULTILINE)
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users and users[-1] not in ("root", "0"), "the worker image must not run as root"
    assert "streams.app" in re.findall(r"^CMD\s+(.*)$", text, flags=re.MULTILINE)[-1]
    ignored = (ROOT / ".dockerignore").read_text().split()
    for local_state in (".git", ".fraudstream/", ".venv/"):
        assert local_state in ignored, f".dockerignore must exclude {local_state}"


@pytest.mark.parametrize("name", ADDRESSED_SERVICES)
def test_services_get_the_embedded_stack_address_variables(services: dict[str, dict[str, Any]], name: str) -> None:
    env = _environment(services[name])
    expected = set(Addresses().to_env())
    assert expected <= env.keys(), f"{name} lacks {sorted(expected - env.keys())}"
    # The addresses name services of this file, so they resolve inside the compose network.
    addresses = Addresses.from_env(env)
    hosts = [addresses.bootstrap_servers.split(":")[0]] + [
        urlsplit(url).hostname
        for url in (
            addresses.schema_registry_url,
            addresses.ksqldb_url,
            addresses.connect_url,
            addresses.s3_endpoint_url,
        )
    ]
    for host in hosts:
        assert host in services, f"{name}: address host {host!r} is not a service of docker-compose.yml"


def test_health_conditions_point_at_services_that_can_satisfy_them(
    services: dict[str, dict[str, Any]],
) -> None:
    checked = 0
    for name, service in services.items():
        depends_on = service.get("depends_on") or {}
        if isinstance(depends_on, list):
            depends_on = {dep: {"condition": "service_started"} for dep in depends_on}
        for dep, spec in depends_on.items():
            assert dep in services, f"{name} depends on unknown service {dep!r}"
            condition = spec.get("condition")
            if condition == "service_healthy":
                checked += 1
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy; it has no healthcheck"
            elif condition == "service_completed_successfully":
                checked += 1
                assert services[dep].get("restart", "no") == "no", f"{dep} is one-shot; it must not restart"
    assert checked > 0


def test_bind_mounts_are_repository_paths(services: dict[str, dict[str, Any]]) -> None:
    """Mounted configuration under docker/ exists; other mounts are the layout's top-level folders."""
    layout_folders = {"ksql", "connectors", "notebooks"}
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.get("source") if isinstance(volume, dict) else str(volume).split(":")[0]
            if not source.startswith("./"):
                continue
            if source.startswith("./docker/"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"
            else:
                assert Path(source).parts[0] in layout_folders, f"{name} mounts {source}, outside the layout"


def test_prometheus_finds_every_worker_by_dns(services: dict[str, dict[str, Any]]) -> None:
    mounts = [str(v) for v in services["prometheus"].get("volumes", [])]
    assert any(m.startswith("./docker/prometheus/prometheus.yml:") for m in mounts)
    config = yaml.safe_load((DOCKER_DIR / "prometheus" / "prometheus.yml").read_text())
    command = services["worker"]["command"]
    web_port = int(command[command.index("--web-port") + 1])
    worker_jobs = [
        sd
        for job in config["scrape_configs"]
        for sd in job.get("dns_sd_configs", [])
        if "worker" in sd["names"] or "tasks.worker" in sd["names"]
    ]
    assert worker_jobs, "no dns_sd_configs job finds the worker service"
    assert all(sd["port"] == web_port and sd.get("type", "SRV") == "A" for sd in worker_jobs)
    assert str(web_port) in [str(p) for p in services["worker"].get("expose", [])]


def test_grafana_is_provisioned_with_the_datasource_its_dashboard_uses(
    services: dict[str, dict[str, Any]],
) -> None:
    provisioning = DOCKER_DIR / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    prometheus = [ds for ds in datasources if ds["type"] == "prometheus"]
    assert prometheus and urlsplit(prometheus[0]["url"]).hostname in services
    providers = yaml.safe_load((provisioning / "dashboards" / "fraudstream.yml").read_text())["providers"]
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in services["grafana"]["volumes"]}
    dashboard_dir = ROOT / mounts[providers[0]["options"]["path"]]
    dashboards = [json.loads(p.read_text()) for p in sorted(dashboard_dir.glob("*.json"))]
    assert dashboards, "no dashboard JSON is provisioned"
    uids = {ds["uid"] for ds in prometheus}
    for dashboard in dashboards:
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] in uids, f"panel {panel['title']!r} uses an unprovisioned datasource"
            assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]


SECURE_FILE = ROOT / "docker-compose.secure.yml"


@pytest.fixture(scope="module")
def secured_services() -> dict[str, dict[str, Any]]:
    """docker-compose.yml with docker-compose.secure.yml over it, as Compose merges them (needs the validator)."""
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (apt-get install -y docker-compose)")
    result = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "-f", str(SECURE_FILE), "config"],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "FRAUDSTREAM_PASSWORD": "s3cret"},
    )  # fmt: skip
    assert result.returncode == 0, f"{' '.join(command)} config rejected the overlay:\n{result.stderr}"
    return yaml.safe_load(result.stdout)["services"]


def test_the_secure_overlay_wants_a_password_and_keeps_none() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    env = {k: v for k, v in os.environ.items() if k != "FRAUDSTREAM_PASSWORD"}
    result = subprocess.run([*command, "-f", str(COMPOSE_FILE), "-f", str(SECURE_FILE), "config", "-q"],
                            cwd=ROOT, capture_output=True, text=True, env=env)  # fmt: skip
    assert result.returncode != 0 and "set FRAUDSTREAM_PASSWORD" in result.stderr
    assert "password=" not in (DOCKER_DIR / "secure" / "jaas.conf").read_text().replace('password="${', "")


def test_kafka_takes_no_client_without_sasl(secured_services: dict[str, dict[str, Any]]) -> None:
    env = _environment(secured_services["kafka"])
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    listeners = {item.split("://")[0]: item.split("://")[1] for item in env["KAFKA_LISTENERS"].split(",")}
    for name, protocol in protocols.items():
        if protocol == "PLAINTEXT":  # the broker's own listeners, on the container's loopback only
            assert listeners[name].startswith("localhost:"), f"{name} is PLAINTEXT and reachable from other containers"
        else:
            assert protocol == "SASL_PLAINTEXT"
    assert "SCRAM-SHA-256" in env["KAFKA_SASL_ENABLED_MECHANISMS"]


def test_rest_services_ask_for_basic_authentication(secured_services: dict[str, dict[str, Any]]) -> None:
    """Confluent's documented settings: authentication.method=BASIC with a JAAS realm, or Connect's extension."""
    registry, ksqldb = _environment(secured_services["schema-registry"]), _environment(secured_services["ksqldb"])
    assert registry["SCHEMA_REGISTRY_AUTHENTICATION_METHOD"] == ksqldb["KSQL_AUTHENTICATION_METHOD"] == "BASIC"
    connect = _environment(secured_services["connect"])
    assert connect["CONNECT_REST_EXTENSION_CLASSES"].endswith("BasicAuthSecurityRestExtension")
    jaas = (DOCKER_DIR / "secure" / "jaas.conf").read_text()
    for realm in (
        registry["SCHEMA_REGISTRY_AUTHENTICATION_REALM"],
        ksqldb["KSQL_AUTHENTICATION_REALM"],
        "KafkaConnect",
    ):
        assert f"{realm} {{" in jaas
    for service, kafka_prefix in (("schema-registry", "SCHEMA_REGISTRY_KAFKASTORE_"), ("ksqldb", "KSQL_"),
                                  ("connect", "CONNECT_"), ("connect", "CONNECT_CONSUMER_")):  # fmt: skip
        env = _environment(secured_services[service])
        assert env[f"{kafka_prefix}SECURITY_PROTOCOL"] == "SASL_PLAINTEXT", (service, kafka_prefix)
        assert 'username="fraudstream" password="s3cret"' in env[f"{kafka_prefix}SASL_JAAS_CONFIG"]


@pytest.mark.parametrize("name", ["worker", "setup", "jupyter", "ksqldb", "connect"])
def test_fraudstream_clients_get_the_embedded_stacks_credential_variables(
    secured_services: dict[str, dict[str, Any]], name: str
) -> None:
    """The same variables `fraudstream up --secure` gives its processes (fraudstream/credentials.py)."""
    env = _environment(secured_services[name])
    credentials = Credentials.from_env(env)
    assert credentials.kafka() == {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256",
                                   "sasl.username": "fraudstream", "sasl.password": "s3cret"}  # fmt: skip
    assert all(credentials.http_user_info(s) == "fraudstream:s3cret" for s in HTTP_SERVICES)
