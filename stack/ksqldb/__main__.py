"""Run the embedded ksqlDB-compatible server:
`python -m stack.ksqldb --bootstrap-servers HOST:PORT --schema-registry-url URL [--host H --port P]`."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import ssl
from pathlib import Path

from aiohttp import web

from fraudstream.basicauth import BasicAuth
from fraudstream.config import DEFAULT_HOST, DEFAULT_PORTS
from fraudstream.tls import server_context
from stack.ksqldb.server import create_app
from stack.ksqldb.server.entities import REALM
from stack.ksqldb.server.h2c import ALPN_PROTOCOLS, protocol_factory
from stack.ksqldb.server.service import KsqlService

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stack.ksqldb", description=__doc__)
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORTS["ksqldb"], help="default %(default)s")
    parser.add_argument("--bootstrap-servers", required=True, help="Kafka bootstrap servers, HOST:PORT")
    parser.add_argument("--schema-registry-url", default=None, help="Schema Registry URL (needed for AVRO)")
    parser.add_argument(
        "--service-id",
        default="default_",
        help="ksql.service.id: names the command topic and query groups (default %(default)s)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="ksql.streams.state.dir: persistent queries' state files (default: a temporary "
        "directory, state restored from the changelog topics on every start)",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Queries hold batches of tens of thousands of records and rows, none in cycles: with CPython's default
    # (a young collection every 700 allocations) the collector walks them again and again (+10-15% end to end).
    gc.set_threshold(50_000, 20, 100)
    service = KsqlService(
        args.bootstrap_servers, args.schema_registry_url, service_id=args.service_id, state_dir=args.state_dir
    )
    tls = server_context(
        alpn=ALPN_PROTOCOLS
    )  # https (HTTP/2 to h2-only clients) when the environment names a certificate
    scheme = "http" if tls is None else "https"
    logger.info("ksqlDB-compatible server on %s://%s:%d, Kafka at %s", scheme, args.host, args.port,
                args.bootstrap_servers)  # fmt: skip
    try:
        asyncio.run(serve(service, args.host, args.port, tls))
    except OSError as exc:  # a busy port: one line, not a traceback
        logger.error("cannot serve on %s:%d: %s", args.host, args.port, exc.strerror or exc)
        raise SystemExit(1) from None


async def serve(service: KsqlService, host: str, port: int, tls: ssl.SSLContext | None = None) -> None:
    """aiohttp for HTTP/1.1 and HTTP/2 for the streaming endpoints, on one port (over TLS with `tls`), until
    SIGTERM/SIGINT."""
    auth = BasicAuth.from_env(REALM)
    runner = web.AppRunner(create_app(service, auth), access_log=None)
    await runner.setup()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        server = await loop.create_server(protocol_factory(runner.server, service, auth), host, port, ssl=tls)
    except OSError:
        await runner.cleanup()
        raise
    try:
        await stop.wait()
    finally:
        server.close()
        await runner.cleanup()


if __name__ == "__main__":
    main()
