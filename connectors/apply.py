"""`fraudstream connect apply [DIR]`: make a Connect cluster run the connectors in DIR/*.json, idempotently.

Each file is `{"name": ..., "config": {...}}`, as Connect's POST /connectors takes it. A connector
that does not exist is created, one whose stored config differs is updated (PUT replaces it whole),
and one that matches is left alone, so applying twice changes nothing. Works against the embedded
worker and a real Kafka Connect alike (the comparison is on the raw config, placeholders included).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import click
import httpx

from connectors.client import ConnectAPIError, ConnectClient
from fraudstream.credentials import ENV_NAMES as CREDENTIAL_ENV
from fraudstream.credentials import Credentials
from fraudstream.options import address_option

DEFAULT_DIR = Path(__file__).resolve().parent


class ConnectorFileError(ValueError):
    pass


@dataclass(frozen=True)
class ConnectorFile:
    path: Path
    name: str
    config: dict[str, str]


def load(path: Path) -> ConnectorFile:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConnectorFileError(f"{path}: not a readable JSON file: {exc}") from None
    if (
        not isinstance(document, dict)
        or not isinstance(document.get("name"), str)
        or not isinstance(document.get("config"), dict)
    ):
        raise ConnectorFileError(f'{path}: expected {{"name": ..., "config": {{...}}}}')
    config = {
        str(key): value if isinstance(value, str) else json.dumps(value) for key, value in document["config"].items()
    }
    return ConnectorFile(path, document["name"], config)


#: Confluent's Avro converter, which reads Schema Registry and so needs its credentials on a secured cluster.
AVRO_CONVERTER = "io.confluent.connect.avro.AvroConverter"


def with_registry_credentials(config: dict[str, str]) -> dict[str, str]:
    """`config`, with Schema Registry credentials for its Avro converters when this client signs in to one.

    A connector that names its converter gets none of the worker's converter settings, so a secured
    Schema Registry needs `<side>.converter.basic.auth.user.info` in the connector itself. It is added as
    a reference to the Connect worker's own variable (`${env:SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO}`, resolved
    by the worker's EnvVarConfigProvider), never as the secret itself, which `GET /connectors` would show.
    """
    if not Credentials.from_env().schema_registry_user_info:
        return config
    added = dict(config)
    for side in ("key", "value"):
        prefix = f"{side}.converter"
        if config.get(prefix) == AVRO_CONVERTER and f"{prefix}.basic.auth.user.info" not in config:
            added[f"{prefix}.basic.auth.credentials.source"] = "USER_INFO"
            added[f"{prefix}.basic.auth.user.info"] = "${env:" + CREDENTIAL_ENV["schema_registry_user_info"] + "}"
    return added


def apply_one(client: ConnectClient, connector: ConnectorFile) -> str:
    """'created', 'updated' or 'unchanged'."""
    desired = {**with_registry_credentials(connector.config), "name": connector.name}
    current = client.config(connector.name)
    if current == desired:
        return "unchanged"
    client.put_config(connector.name, desired)
    return "created" if current is None else "updated"


def apply_dir(url: str, directory: Path) -> list[tuple[str, str]]:
    files = sorted(directory.glob("*.json"))
    if not files:
        raise ConnectorFileError(f"no connector files (*.json) in {directory}")
    connectors = [load(path) for path in files]  # every file is checked before anything is sent
    client = ConnectClient(url)
    try:
        return [(connector.name, apply_one(client, connector)) for connector in connectors]
    finally:
        client.close()


@click.group("connect")
def connect_group() -> None:
    """Kafka Connect: apply the connector configs in connectors/ to any Connect REST endpoint."""


@connect_group.command("apply")
@click.argument(
    "directory", type=click.Path(exists=True, file_okay=False, path_type=Path), default=DEFAULT_DIR, required=False
)
@address_option("connect_url", "--url")
def connect_apply_command(directory: Path, connect_url: str) -> None:
    """Create or update the connectors in DIRECTORY/*.json on a Connect cluster (default: connectors/)."""
    try:
        results = apply_dir(connect_url, directory)
    except ConnectorFileError as exc:
        raise click.ClickException(str(exc)) from None
    except ConnectAPIError as exc:
        message = exc.message.split("\nYou can also find")[0].replace("\n", " ")
        raise click.ClickException(f"Connect at {connect_url} refused a connector: {message}") from None
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach Connect at {connect_url}: {exc}") from None
    for name, outcome in results:
        click.echo(f"{name}: {outcome}")
