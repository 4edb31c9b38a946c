"""Addresses of every service, in one place, and where a running embedded stack keeps its client settings.

Client code is the same against the embedded stack and a production cluster: only these addresses
differ, and they come from the environment variables a Confluent Platform user already knows. A secured
embedded stack's client properties (`fraudstream.credentials` reads its credentials from them) also give
its https addresses.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

#: Every embedded service binds here unless told otherwise.
DEFAULT_HOST = "127.0.0.1"

#: The ports users of Confluent Platform expect, so that docs and tools work unchanged.
DEFAULT_PORTS: dict[str, int] = {
    "objectstore": 8333,
    "broker": 9092,
    "schema-registry": 8081,
    "ksqldb": 8088,
    "connect": 8083,
    "worker": 6066,  # the first stream worker's web port (Faust's default): POST /score, /metrics
}

#: Where `fraudstream up` keeps data, logs and its state file unless `--data-dir` says otherwise.
DEFAULT_DATA_DIR = Path(".fraudstream")
#: The per-user file that names the data directory of the stack `fraudstream up` started last.
CURRENT_STACK_FILE = "current-stack"

#: The bucket that holds the broker's log segments, the lake and the model registry.
DEFAULT_BUCKET = "fraudstream"

#: Static credentials for the embedded object store; any S3 endpoint takes its own from the environment.
DEFAULT_S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "fraudstream",
    "AWS_SECRET_ACCESS_KEY": "fraudstream",
    "AWS_DEFAULT_REGION": "us-east-1",
}

#: The environment variable of each address, as the Confluent tools and boto3 users know them.
ENV_NAMES = {
    "bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "schema_registry_url": "SCHEMA_REGISTRY_URL",
    "ksqldb_url": "KSQLDB_URL",
    "connect_url": "CONNECT_URL",
    "s3_endpoint_url": "S3_ENDPOINT_URL",
    "bucket": "S3_BUCKET",
}


#: The REST addresses a secured embedded stack records in its client properties, by their key there.
STACK_URLS = {"schema_registry_url": "schema.registry.url", "ksqldb_url": "ksqldb.url", "connect_url": "connect.url"}


#: A secured data directory keeps its credentials here (mode 0700, files 0600).
SECRETS_DIR = "secrets"
#: Confluent's client configuration format: what clients of the stack read.
CLIENT_PROPERTIES = "client.properties"


@dataclass(frozen=True)
class Addresses:
    """Where each service listens; the only thing that differs between embedded and production."""

    bootstrap_servers: str = f"{DEFAULT_HOST}:{DEFAULT_PORTS['broker']}"
    schema_registry_url: str = f"http://{DEFAULT_HOST}:{DEFAULT_PORTS['schema-registry']}"
    ksqldb_url: str = f"http://{DEFAULT_HOST}:{DEFAULT_PORTS['ksqldb']}"
    connect_url: str = f"http://{DEFAULT_HOST}:{DEFAULT_PORTS['connect']}"
    s3_endpoint_url: str = f"http://{DEFAULT_HOST}:{DEFAULT_PORTS['objectstore']}"
    bucket: str = DEFAULT_BUCKET

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Addresses:
        """Defaults for the embedded stack, overridden by the usual environment variables.

        A REST URL the environment does not name is a secured embedded stack's own (https) when one runs
        for these bootstrap servers: its client properties list them (`running_stack_properties`).
        """
        given = {f.name: environ[ENV_NAMES[f.name]] for f in fields(cls) if ENV_NAMES[f.name] in environ}
        if any(name not in given for name in STACK_URLS):
            bootstrap = given.get("bootstrap_servers", cls.bootstrap_servers)
            recorded = running_stack_properties(environ, bootstrap) or {}
            given |= {name: recorded[key] for name, key in STACK_URLS.items() if name not in given and key in recorded}
        return cls(**given)

    def to_env(self) -> dict[str, str]:
        """The environment variables that make a child process (or a notebook) use these addresses."""
        return {ENV_NAMES[f.name]: getattr(self, f.name) for f in fields(self)}


def s3_credentials(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """AWS-style credentials: the environment's when set, else the embedded store's static ones."""
    return {name: environ.get(name, default) for name, default in DEFAULT_S3_CREDENTIALS.items()}


def user_state_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """fraudstream's per-user state directory (XDG Base Directory: $XDG_STATE_HOME, else ~/.local/state)."""
    base = environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "fraudstream"


def read_properties(path: Path) -> dict[str, str]:
    """`key=value` lines of a Java-style properties file (`#` and `!` comments, `:` separators too)."""
    properties: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        cut = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
        if cut < 0:
            properties[line] = ""
        else:
            properties[line[:cut].strip()] = line[cut + 1 :].strip()
    return properties


def running_stack_properties(environ: Mapping[str, str], bootstrap_servers: str) -> dict[str, str] | None:
    """The client properties a secured embedded stack wrote for `bootstrap_servers` (./.fraudstream's, else
    those of the stack `up` started last), or None."""
    for data_dir in _stack_data_dirs(environ):
        path = data_dir / SECRETS_DIR / CLIENT_PROPERTIES
        if path.is_file():
            properties = read_properties(path)
            if properties.get("bootstrap.servers") == bootstrap_servers:
                return properties
    return None


def _stack_data_dirs(environ: Mapping[str, str]) -> list[Path]:
    """Where a running embedded stack may keep its credentials: ./.fraudstream, then the one `up` remembers."""
    dirs = [DEFAULT_DATA_DIR.resolve()]
    pointer = user_state_dir(environ) / CURRENT_STACK_FILE
    if pointer.is_file():
        dirs.append(Path(pointer.read_text().strip()))
    return dirs
