"""Run the embedded Connect worker: `python -m stack.connect --bootstrap-servers HOST:PORT --schema-registry-url URL`.

The REST port answers at once (409 for API calls, 503 on GET /) and becomes healthy (GET / -> 200)
once the worker has created or read its storage topics and started the stored connectors.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import logging
import os
import signal
import threading

from aiohttp import web

from fraudstream.basicauth import BasicAuth
from fraudstream.config import DEFAULT_HOST, DEFAULT_PORTS
from fraudstream.kafka import admin_client
from fraudstream.tls import server_context
from stack.connect import definitions as d
from stack.connect.herder import Herder
from stack.connect.metrics import SinkMetrics
from stack.connect.rest import CONNECT_VERSION, HERDER, INFO, READY, REALM, create_app
from stack.connect.storage import CONFIG_TOPIC, OFFSET_TOPIC, STATUS_TOPIC, ConnectStorage

logger = logging.getLogger("stack.connect")
STARTER = web.AppKey("starter", asyncio.Task)


def worker_defaults(schema_registry_url: str | None) -> dict[str, str]:
    """The worker-level converters (as docker-compose's Connect sets them), used when a connector sets none."""
    defaults = {"key.converter": d.STRING_CONVERTER, "value.converter": d.AVRO_CONVERTER}
    if schema_registry_url:
        defaults |= {
            "key.converter.schema.registry.url": schema_registry_url,
            "value.converter.schema.registry.url": schema_registry_url,
        }
    return defaults


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stack.connect", description=__doc__)
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORTS["connect"], help="default %(default)s")
    parser.add_argument("--bootstrap-servers", required=True, help="Kafka bootstrap servers, HOST:PORT")
    parser.add_argument("--schema-registry-url", default=None, help="the worker's default for the AvroConverter")
    parser.add_argument("--config-storage-topic", default=CONFIG_TOPIC, help="default %(default)s")
    parser.add_argument("--status-storage-topic", default=STATUS_TOPIC, help="default %(default)s")
    parser.add_argument("--offset-storage-topic", default=OFFSET_TOPIC, help="default %(default)s")
    parser.add_argument("--log-level", default="INFO", help="logging level (default %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Schema Registry call otherwise
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` dumps every thread's stack to the log

    worker_id = f"{args.host}:{args.port}"
    storage = ConnectStorage(
        args.bootstrap_servers,
        config_topic=args.config_storage_topic,
        status_topic=args.status_storage_topic,
        offset_topic=args.offset_storage_topic,
    )
    herder = Herder(
        storage, args.bootstrap_servers, worker_id, worker_defaults(args.schema_registry_url), SinkMetrics()
    )
    info = {"version": CONNECT_VERSION, "commit": "fraudstream", "kafka_cluster_id": None}
    app = create_app(herder, info, BasicAuth.from_env(REALM))
    tls = server_context()  # https when the environment names a certificate
    scheme = "http" if tls is None else "https"

    async def start_herder(app: web.Application) -> None:
        async def run() -> None:
            try:
                metadata = await asyncio.to_thread(admin_client(args.bootstrap_servers).list_topics, timeout=30)
                app[INFO]["kafka_cluster_id"] = metadata.cluster_id
                await asyncio.to_thread(herder.start)
            except Exception as exc:  # one line for the user; the trace at debug level
                logger.error("the worker could not start (Kafka at %s): %s", args.bootstrap_servers, exc)
                logger.debug("start-up failure", exc_info=True)
                failed.set()
                os.kill(os.getpid(), signal.SIGTERM)  # run_app stops gracefully on it
                return
            app[READY].set()
            logger.info(
                "connect worker ready on %s://%s (cluster %s)", scheme, worker_id, app[INFO]["kafka_cluster_id"]
            )

        app[STARTER] = asyncio.create_task(run())

    async def stop_herder(app: web.Application) -> None:
        await asyncio.to_thread(app[HERDER].stop)

    failed = threading.Event()
    app.on_startup.append(start_herder)
    app.on_cleanup.append(stop_herder)
    try:
        web.run_app(app, host=args.host, port=args.port, print=None, access_log=None, ssl_context=tls)
    except OSError as exc:  # a busy port: one line, not a traceback
        logger.error("cannot serve on %s:%d: %s", args.host, args.port, exc.strerror or exc)
        raise SystemExit(1) from None
    if failed.is_set():
        raise SystemExit(1)


if __name__ == "__main__":
    main()
