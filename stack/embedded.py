"""The embedded single-machine stack as a Python API: what `fraudstream up/down/status` and the tests use.

    with EmbeddedStack.on_free_ports(tmp_path, ephemeral=True) as stack:
        produce_to(stack.addresses.bootstrap_servers)

Services start in dependency order (the broker stores its log in the object store; the Schema
Registry keeps its schemas in the broker), each waited on until healthy, and stop in reverse order.
With `secure`, every service asks for credentials over TLS: the broker SASL/SCRAM on a SASL_SSL listener,
the HTTP services basic authentication over https. They are generated at the first secure start into
`<data_dir>/secrets/` (owner-only): `client.properties` for clients (`fraudstream.credentials`),
`password.properties` for the servers, and a private CA (`ca.pem`) with the server certificate it signed
(`server.pem`, `server-key.pem`; `stack.certificates`).
What is running is recorded in `<data_dir>/stack.json`, so another process can find and stop it;
processes started beside the stack (`fraudstream worker`) register in `<data_dir>/attached/`, one file
each, so that `status` lists them and `down` stops them first.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from fraudstream.basicauth import PASSWORD_FILE_ENV
from fraudstream.config import (
    CLIENT_PROPERTIES,
    DEFAULT_BUCKET,
    DEFAULT_DATA_DIR,
    DEFAULT_HOST,
    DEFAULT_PORTS,
    SECRETS_DIR,
    Addresses,
    read_properties,
)
from fraudstream.credentials import PASSWORD_PROPERTIES, Credentials, write_private
from fraudstream.s3 import ensure_bucket
from fraudstream.tls import CERT_FILE_ENV, KEY_FILE_ENV
from fraudstream.topics import SCORES_TOPIC
from stack import supervisor
from stack.broker import consumer_env, tansu_spec
from stack.broker_recovery import ObjectLog, recover
from stack.certificates import CA_FILE, SERVER_FILE, SERVER_KEY_FILE, Certificates, ensure_certificates
from stack.connect.process import connect_spec
from stack.objectstore import seaweedfs_spec
from stack.prometheus import DEFAULT_PROMETHEUS_PORT, PROMETHEUS, prometheus_spec, scrape_targets
from stack.supervisor import RunningService, ServiceSpec, StackError
from streams.cli import worker_argv, worker_env
from streams.records import register_score_schema

logger = logging.getLogger(__name__)

#: Start order of `start()`; stop order is the reverse.
SERVICES: tuple[str, ...] = ("objectstore", "broker", "schema-registry", "ksqldb", "connect")

#: Started on demand, once a production model exists (a worker scores with one); stopped first.
WORKER = "worker"
#: Started on demand too (`up --prometheus`), scraping the others; stopped before them.
ON_DEMAND: tuple[str, ...] = (WORKER, PROMETHEUS)
STOP_ORDER: tuple[str, ...] = (*ON_DEMAND, *reversed(SERVICES))

STATE_FILE = "stack.json"
#: One JSON file per process registered beside the stack (a `fraudstream worker` child), written by its owner.
ATTACHED_DIR = "attached"
#: Written by `stop()`: the workers that were running, so that the next `up` can say it did not restart them.
STOPPED_WORKERS_FILE = "workers-before-down.json"


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    address: str
    pid: int | None
    healthy: bool
    log: str | None


class EmbeddedStack:
    """The embedded stack rooted at `data_dir`: object store, broker, Schema Registry, ksqlDB and Connect on 127.0.0.1."""

    def __init__(
        self,
        data_dir: Path | str = DEFAULT_DATA_DIR,
        *,
        ephemeral: bool = False,
        ports: Mapping[str, int] | None = None,
        services: Iterable[str] = SERVICES,
        host: str = DEFAULT_HOST,
        bucket: str = DEFAULT_BUCKET,
        outlive_caller: bool = False,
        secure: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.ephemeral = ephemeral
        self.secure = secure
        self.ports = {**DEFAULT_PORTS, **(ports or {})}
        self.services = tuple(name for name in SERVICES if name in set(services))
        self.host = host
        self.bucket = bucket
        self.outlive_caller = outlive_caller  # True for `fraudstream up`; a test's stack dies with the test
        self.running: dict[str, RunningService] = {}
        #: Processes registered beside the stack by other commands (`register`), read by `attach`.
        self.attached: dict[str, RunningService] = {}
        self._builders: dict[str, Callable[[], ServiceSpec]] = {
            "objectstore": lambda: seaweedfs_spec(self.data_dir, self.ports["objectstore"], host),
            "broker": lambda: tansu_spec(
                self.ports["broker"],
                self.storage,
                self.addresses.s3_endpoint_url,
                host,
                self.password_file(),
                self._tls_files(),
            ),
            "schema-registry": self._registry_spec,
            "ksqldb": self._ksqldb_spec,
            "connect": lambda: connect_spec(self.addresses, self.ports["connect"], host, scheme=self.scheme),
            WORKER: self.worker_spec,
            PROMETHEUS: self._prometheus_spec,
        }

    @classmethod
    def on_free_ports(cls, data_dir: Path | str, **kwargs: object) -> EmbeddedStack:
        """A stack on ports the OS picks, so that tests run beside a user's own stack."""
        ports = dict(zip(DEFAULT_PORTS, supervisor.free_ports(len(DEFAULT_PORTS))))
        return cls(data_dir, ports=ports, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_addresses(
        cls, data_dir: Path | str, addresses: Addresses, worker_port: int = DEFAULT_PORTS[WORKER], **kwargs: object
    ) -> EmbeddedStack:
        """A stack listening where `addresses` point (the environment's KAFKA_BOOTSTRAP_SERVERS and friends)."""
        urls = {
            "broker": f"tcp://{addresses.bootstrap_servers.split(',')[0]}",
            "schema-registry": addresses.schema_registry_url,
            "ksqldb": addresses.ksqldb_url,
            "connect": addresses.connect_url,
            "objectstore": addresses.s3_endpoint_url,
        }
        ports = {name: urlsplit(url).port or DEFAULT_PORTS[name] for name, url in urls.items()} | {WORKER: worker_port}
        return cls(data_dir, ports=ports, bucket=addresses.bucket, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def attach(cls, data_dir: Path | str = DEFAULT_DATA_DIR) -> EmbeddedStack:
        """The stack that `fraudstream up` started in `data_dir`, as recorded in its state file."""
        path = Path(data_dir).resolve() / STATE_FILE
        if not path.exists():
            raise StackError(f"no stack state in {path.parent}: run `fraudstream up` first")
        state = json.loads(path.read_text())
        stack = cls(
            data_dir,
            ephemeral=state["ephemeral"],
            ports=state["ports"],
            bucket=state["bucket"],
            secure=state.get("secure", False),
        )
        stack.running = {entry["name"]: RunningService(**entry) for entry in state["running"]}
        for path in stack._attached_files():
            service = RunningService(**json.loads(path.read_text()))
            if service.alive():
                stack.attached[service.name] = service
            else:  # its owner was killed before it could unregister it
                path.unlink(missing_ok=True)
        return stack

    def register(self, service: RunningService) -> None:
        """Record a process started beside the stack, so that `status` lists it and `stop` stops it."""
        directory = self.data_dir / ATTACHED_DIR
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{service.name}.json").write_text(json.dumps(asdict(service)))
        self.attached[service.name] = service

    def start_beside(self, spec: ServiceSpec) -> RunningService:
        """Start a process beside the stack (another pipeline's worker) and register it, once it is healthy."""
        service = supervisor.start(self._secured(spec), self.data_dir / "logs", self.outlive_caller)
        self.register(service)
        return service

    def unregister(self, name: str) -> None:
        (self.data_dir / ATTACHED_DIR / f"{name}.json").unlink(missing_ok=True)
        self.attached.pop(name, None)

    def stopped_workers(self) -> list[str]:
        """The workers (name and address) that ran before the last `stop`; forgotten once read."""
        path = self.data_dir / STOPPED_WORKERS_FILE
        if not path.exists():
            return []
        workers = json.loads(path.read_text())
        path.unlink()
        return workers

    def _attached_files(self) -> list[Path]:
        return sorted((self.data_dir / ATTACHED_DIR).glob("*.json"))

    @property
    def storage(self) -> str:
        """The broker's storage engine: durable on the object store, or in memory for throwaway runs."""
        return "memory://tansu/" if self.ephemeral else f"s3://{self.bucket}/"

    @property
    def scheme(self) -> str:
        """The HTTP services' scheme: https on a secured stack."""
        return "https" if self.secure else "http"

    @property
    def addresses(self) -> Addresses:
        host, ports, scheme = self.host, self.ports, self.scheme
        return Addresses(
            bootstrap_servers=f"{host}:{ports['broker']}",
            schema_registry_url=f"{scheme}://{host}:{ports['schema-registry']}",
            ksqldb_url=f"{scheme}://{host}:{ports['ksqldb']}",
            connect_url=f"{scheme}://{host}:{ports['connect']}",
            s3_endpoint_url=f"http://{host}:{ports['objectstore']}",
            bucket=self.bucket,
        )

    @property
    def secrets_dir(self) -> Path:
        return self.data_dir / SECRETS_DIR

    @property
    def credentials(self) -> Credentials:
        """What clients of this stack sign in with (none for an open stack)."""
        if not self.secure:
            return Credentials()
        return Credentials.from_properties(read_properties(self.secrets_dir / CLIENT_PROPERTIES))

    def security_env(self) -> dict[str, str]:
        """The environment of every process of a secured stack: the client credentials, the users servers
        accept, and the certificate they serve TLS with."""
        if not self.secure:
            return {}
        certificates = self.certificates
        return {
            **self.credentials.to_env(),
            PASSWORD_FILE_ENV: str(self.password_file()),
            CERT_FILE_ENV: str(certificates.server),
            KEY_FILE_ENV: str(certificates.server_key),
        }

    @property
    def certificates(self) -> Certificates:
        """Where a secured stack keeps its CA and server certificate (made by `start`)."""
        return Certificates(*(self.secrets_dir / name for name in (CA_FILE, SERVER_FILE, SERVER_KEY_FILE)))

    @property
    def ca_file(self) -> str | None:
        """The CA clients of a secured stack verify its certificate against (None when open)."""
        return str(self.certificates.ca) if self.secure else None

    def password_file(self) -> str | None:
        """The users every server of a secured stack accepts (None when open)."""
        return str(self.secrets_dir / PASSWORD_PROPERTIES) if self.secure else None

    def _tls_files(self) -> tuple[str, str] | None:
        """The certificate chain and key a secured stack serves TLS with (None when open)."""
        if not self.secure:
            return None
        return str(self.certificates.server), str(self.certificates.server_key)

    def _ensure_credentials(self) -> None:
        """Generate the credentials, CA and server certificate at the first secure start (one user, a random
        password, files only the owner reads); later starts keep them and rewrite the client properties with
        the addresses of this start (a directory secured before TLS gets its CA and SASL_SSL then)."""
        ca = str(ensure_certificates(self.secrets_dir).ca)
        if (self.secrets_dir / CLIENT_PROPERTIES).exists():
            credentials = replace(self.credentials, security_protocol="SASL_SSL", ssl_ca_location=ca)
        else:
            credentials = Credentials.generate(ssl_ca_location=ca)
            users = f"{credentials.sasl_username}: {credentials.sasl_password},admin\n"
            write_private(self.secrets_dir / PASSWORD_PROPERTIES, users)
            logger.info("credentials generated in %s", self.secrets_dir)
        write_private(self.secrets_dir / CLIENT_PROPERTIES, credentials.to_properties(self.addresses))

    def start(self) -> EmbeddedStack:
        """Start every service that is not already running and healthy; on failure stop what this call started."""
        if self.secure:
            self._ensure_credentials()
        missing = [name for name in self.services if name not in self.running or not self.running[name].healthy()]
        for name in missing:  # fail before starting anything rather than half-way through
            if not supervisor.port_released(self.ports[name], self.host):
                port = self.ports[name]
                raise StackError(
                    f"{name}: port {port} on {self.host} is already in use by {supervisor.port_holder(port)}"
                )
        started: list[str] = []
        try:
            for name in missing:
                self.start_service(name)
                started.append(name)
        except BaseException:
            for name in reversed(started):
                self.stop_service(name)
            raise
        return self

    def _secured(self, spec: ServiceSpec) -> ServiceSpec:
        """`spec` as a secured stack runs it: with the credentials and certificate in its environment, and
        health probes that sign in and verify the certificate."""
        if not self.secure:
            return spec
        spec = replace(spec, env={**spec.env, **self.security_env()})
        if spec.health_url.startswith("http"):
            spec = replace(spec, password_file=self.password_file(), ca_file=self.ca_file)
        return spec

    def start_service(self, name: str) -> None:
        spec = self._secured(self._builders[name]())
        if name == "broker" and not self.ephemeral:
            self._recover_broker_log()
        self.running[name] = supervisor.start(spec, self.data_dir / "logs", self.outlive_caller)
        if name == "objectstore":
            ensure_bucket(self.bucket, self.addresses.s3_endpoint_url)
            broker = self.running.get("broker")
            if broker is not None and broker.alive() and not self.ephemeral:
                # The broker's writes failed while the store was gone, and a batch write that failed after its
                # watermark's leaves a hole only log recovery repairs: restart the broker, as Kafka halts a
                # broker whose log directory failed.
                logger.warning("the object store was restarted under the broker: restarting the broker too")
                self.stop_service("broker")
                self.start_service("broker")
        if name == "schema-registry":  # before any statement: ksql/090 infers the scores' columns from it
            from confluent_kafka.schema_registry import SchemaRegistryClient

            registry = SchemaRegistryClient(self.credentials.schema_registry(self.addresses.schema_registry_url))
            register_score_schema(registry, SCORES_TOPIC)
        self._save_state()

    def _recover_broker_log(self) -> None:
        """Put back partitions a crashed broker left with a watermark past their last stored batch
        (`stack.broker_recovery`); a recovery that fails is logged, and the broker starts as it would without it."""
        try:
            recover(ObjectLog(self.addresses.s3_endpoint_url, self.bucket))
        except Exception:  # noqa: BLE001 - recovery is a repair on top: never the reason the broker is down
            logger.exception("broker log recovery failed; starting the broker without it")

    def stop_service(self, name: str, kill: bool = False) -> None:
        """Stop one service (SIGKILL when `kill`, as a crash test wants); the others keep running."""
        service = self.running.pop(name, None)
        if service is not None:
            supervisor.stop(service, kill=kill)
            self._save_state()

    def stop(self) -> None:
        """Stop everything, last started first: workers registered beside the stack, then the stack's own
        services; the broker writes into the object store, so it goes before it."""
        workers = [
            f"{service.name} ({service.address})"
            for service in [*self.attached.values(), self.running.get(WORKER)]
            if service is not None and service.alive()
        ]
        for name, service in list(self.attached.items()):
            supervisor.stop(service)
            self.unregister(name)
        for name in STOP_ORDER:
            self.stop_service(name)
        (self.data_dir / STATE_FILE).unlink(missing_ok=True)
        if workers:
            (self.data_dir / STOPPED_WORKERS_FILE).write_text(json.dumps(workers))

    def status(self) -> list[ServiceStatus]:
        rows = []
        for name in self.services + tuple(name for name in ON_DEMAND if name in self.running):
            service = self.running.get(name)
            if service is None:
                rows.append(ServiceStatus(name, "", None, False, None))
            else:
                rows.append(ServiceStatus(name, service.address, service.pid, service.healthy(), service.log))
        for service in self.attached.values():
            rows.append(ServiceStatus(service.name, service.address, service.pid, service.healthy(), service.log))
        return rows

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _registry_spec(self) -> ServiceSpec:
        port = self.ports["schema-registry"]
        url = f"{self.scheme}://{self.host}:{port}"
        argv = [sys.executable, "-m", "stack.registry", "--host", self.host, "--port", str(port)]
        argv += ["--bootstrap-servers", self.addresses.bootstrap_servers]
        return ServiceSpec(name="schema-registry", argv=argv, ports=[port], health_url=f"{url}/subjects", address=url)

    def _ksqldb_spec(self) -> ServiceSpec:
        port = self.ports["ksqldb"]
        url = f"{self.scheme}://{self.host}:{port}"
        argv = [sys.executable, "-m", "stack.ksqldb", "--host", self.host, "--port", str(port)]
        argv += [
            "--bootstrap-servers",
            self.addresses.bootstrap_servers,
            "--schema-registry-url",
            self.addresses.schema_registry_url,
        ]
        # state files kept with the stack: a restart loads them instead of re-reading every changelog
        argv += ["--state-dir", str(self.data_dir / "ksqldb-state")]
        return ServiceSpec(
            name="ksqldb",
            argv=argv,
            ports=[port],
            health_url=f"{url}/healthcheck",
            address=url,
            env=consumer_env(self.storage),
        )

    def worker_spec(
        self, name: str = WORKER, port: int | None = None, settings: Mapping[str, str | int | Path] | None = None
    ) -> ServiceSpec:
        """A Faust scoring worker (streams/) scoring with the registry's production model.

        The stack's own worker serves the flagship pipeline; another pipeline's worker (the handbook's, which
        `fraudstream demo --pipeline handbook` starts and registers) gives its own name, port and `settings`
        (streams/settings.py names without the FRAUDSTREAM_ prefix: input and scores topics, model, ...).
        """
        port = self.ports[WORKER] if port is None else port
        overrides = {"WEB_HOST": self.host, "WEB_PORT": port, "DATA_DIR": self.data_dir / "workers", **(settings or {})}
        base = {
            **self.addresses.to_env(),
            **consumer_env(self.storage),
            "FRAUDSTREAM_MODEL_CACHE": str(self.data_dir / "model-cache"),
        }
        env = worker_env(overrides, base)
        url = f"{self.scheme}://{self.host}:{port}"
        return ServiceSpec(
            name=name,
            argv=worker_argv(),
            ports=[port],
            health_url=f"{url}/metrics",
            address=url,
            env=env,
            cwd=self.data_dir,
            start_timeout=180.0,
            stop_timeout=60.0,
        )

    def _prometheus_spec(self) -> ServiceSpec:
        """Debian's Prometheus scraping every service's /metrics; its port (9090 unless set) is kept in the state file."""
        port = self.ports.setdefault(PROMETHEUS, DEFAULT_PROMETHEUS_PORT)
        targets = scrape_targets(self.host, self.ports, self.data_dir)
        basic_auth = None
        if self.secure:  # Prometheus reads the password from a file of its own, never from its configuration
            credentials = self.credentials
            password_file = self.secrets_dir / "prometheus.password"
            write_private(password_file, credentials.sasl_password or "")
            basic_auth = {"username": credentials.sasl_username or "", "password_file": str(password_file)}
        return prometheus_spec(self.data_dir, port, targets, self.host, basic_auth, self.ca_file)

    def _save_state(self) -> None:
        state = {
            "ephemeral": self.ephemeral,
            "secure": self.secure,
            "ports": self.ports,
            "bucket": self.bucket,
            "addresses": self.addresses.to_env(),
            "running": [asdict(service) for service in self.running.values()],
        }
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / STATE_FILE).write_text(json.dumps(state, indent=2))
