"""Run the embedded Schema Registry: `python -m stack.registry --bootstrap-servers HOST:PORT`."""

from __future__ import annotations

import argparse
import logging

from aiohttp import web

from fraudstream.basicauth import BasicAuth
from fraudstream.config import DEFAULT_HOST, DEFAULT_PORTS
from fraudstream.tls import server_context
from stack.registry.http import REALM, create_app
from stack.registry.service import DEFAULT_TOPIC, Registry
from stack.topiclog import TopicLog

logger = logging.getLogger("stack.registry")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stack.registry", description=__doc__)
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORTS["schema-registry"], help="default %(default)s")
    parser.add_argument("--bootstrap-servers", required=True, help="Kafka bootstrap servers, HOST:PORT")
    parser.add_argument("--topic", default=DEFAULT_TOPIC, help="the compacted topic holding schemas")
    parser.add_argument("--store-timeout", type=float, default=30.0, help="seconds to wait for the broker per call")
    parser.add_argument("--log-level", default="INFO", help="logging level (default %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    store = TopicLog(args.bootstrap_servers, args.topic, timeout=args.store_timeout)
    app = create_app(Registry(store), BasicAuth.from_env(REALM))
    tls = server_context()  # https when the environment names a certificate
    scheme = "http" if tls is None else "https"
    logger.info("schema registry on %s://%s:%d, schemas in %s at %s", scheme, args.host, args.port, args.topic,
                args.bootstrap_servers)  # fmt: skip
    # run_app stops gracefully on SIGTERM and SIGINT: it closes the listener and runs the cleanup hooks.
    try:
        web.run_app(app, host=args.host, port=args.port, print=None, access_log=None, ssl_context=tls)
    except OSError as exc:  # a busy port: one line, not a traceback
        logger.error("cannot serve on %s:%d: %s", args.host, args.port, exc.strerror or exc)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
