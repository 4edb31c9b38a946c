"""Command-line options for the service addresses, each read from its usual environment variable.

Every command that talks to a service takes its address the same way: the option, else the variable
(`KAFKA_BOOTSTRAP_SERVERS`, `KSQLDB_URL`, ...), else the embedded stack's default, as `Addresses.from_env`
has it (a secured stack's https URLs for its cluster).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from fraudstream.config import ENV_NAMES, Addresses

_HELP = {
    "bootstrap_servers": "Kafka bootstrap servers.",
    "schema_registry_url": "Schema Registry URL.",
    "ksqldb_url": "ksqlDB REST address.",
    "connect_url": "The Kafka Connect REST endpoint.",
    "s3_endpoint_url": "S3 endpoint URL.",
    "bucket": "S3 bucket.",
}


def address_option(field: str, *flags: str) -> Callable[[Any], Any]:
    """A click option for the address `field` of `Addresses` (flag defaults to `--field-name`), passed as `field`."""
    env = ENV_NAMES[field]
    default = getattr(Addresses(), field)
    return click.option(
        *(flags or ("--" + field.replace("_", "-"),)),
        field,
        envvar=env,
        default=lambda: getattr(Addresses.from_env(), field),
        show_default=f"${env} or {default}",
        help=_HELP[field],
    )
