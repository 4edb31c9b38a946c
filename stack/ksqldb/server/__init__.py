"""The ksqlDB REST API over aiohttp: /info, /healthcheck, /ksql, /query, /query-stream, /close-query,
/inserts-stream, /status/<commandId>, and /metrics (Prometheus). Bodies and error objects follow ksqlDB's,
so its clients (ksql-python, ksqldb, ksqldb-client, the CLI's REST calls) work unchanged."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from fraudstream.basicauth import BasicAuth
from fraudstream.requestbody import MAX_BODY_BYTES, BadBody, read_body

from ..pull import PullResult
from . import streams
from .entities import BAD_REQUEST, NOT_FOUND, SERVER_ERROR, UNAUTHORIZED, error_body
from .metrics import metrics_registry
from .service import KsqlService, StatementFailure

logger = logging.getLogger(__name__)

VERSION = "0.29.0"
SERVICE = web.AppKey("service", KsqlService)
METRICS = web.AppKey("metrics", CollectorRegistry)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")


@web.middleware
async def failures(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every failure as ksqlDB's error object: a refused request, an unknown path, and a bug (logged)."""
    try:
        return await handler(request)
    except StatementFailure as e:
        return _json(e.body, e.status)
    except BadBody as e:
        return _json(streams.refused(e).body, e.status)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return _json(error_body("generic_error", e.status * 100, f"HTTP {e.status} {e.reason}"), e.status)
    except Exception as e:
        logger.exception("error serving %s %s", request.method, request.path)
        return _json(error_body("generic_error", SERVER_ERROR, f"Internal error: {e}"), 500)


async def info(request: web.Request) -> web.Response:
    return _json(
        {
            "KsqlServerInfo": {
                "version": VERSION,
                "kafkaClusterId": "fraudstream",
                "ksqlServiceId": request.app[SERVICE].service_id,
                "serverStatus": "RUNNING" if request.app[SERVICE].ready else "STARTING",
            }
        }
    )


async def healthcheck(request: web.Request) -> web.Response:
    ready = request.app[SERVICE].ready
    parts = {"metastore": {"isHealthy": ready}, "kafka": {"isHealthy": ready}, "commandRunner": {"isHealthy": ready}}
    return _json({"isHealthy": ready, "details": parts}, 200 if ready else 503)


async def ksql(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    streams.ready(service)
    body = streams.parse_body(await read_body(request))
    sql = streams.statement_text(body, "ksql")
    return _json(await asyncio.to_thread(service.execute, sql, streams.properties(body, "streamsProperties")))


def _disconnected(request: web.Request) -> Callable[[], bool]:
    return lambda: request.transport is None or request.transport.is_closing()


async def _chunked(request: web.Request, content_type: str, chunks: AsyncIterator[bytes]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": content_type})
    response.enable_chunked_encoding()
    try:
        await response.prepare(request)
        async for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
    except (ConnectionResetError, asyncio.CancelledError):
        logger.info("%s: client went away", request.path)
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
    return response


async def query(request: web.Request) -> web.StreamResponse:
    """POST /query: a chunked JSON array: header, one {"row": ...} per row, a final message on LIMIT (push
    queries); a pull query's rows all at once."""
    service = request.app[SERVICE]
    pq = await streams.open_push(service, await read_body(request), "ksql", "streamsProperties")
    if isinstance(pq, PullResult):
        return await _chunked(request, "application/json", streams.pull_query_chunks(pq))
    return await _chunked(request, "application/json", streams.query_chunks(service, pq, _disconnected(request)))


async def query_stream(request: web.Request) -> web.StreamResponse:
    """POST /query-stream: header object then rows, newline-delimited (default) or as one JSON array."""
    service = request.app[SERVICE]
    pq = await streams.open_push(service, await read_body(request), "sql", "properties")
    content_type, chunks = streams.query_stream_chunks(
        service, pq, request.headers.get("Accept", ""), _disconnected(request)
    )
    return await _chunked(request, content_type, chunks)


async def close_query(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    body = streams.parse_body(await read_body(request))
    if not streams.close_query(service, body.get("queryId")):
        return _json(error_body("generic_error", BAD_REQUEST, f"No query with id {body.get('queryId')}"), 400)
    return web.Response(status=200)


async def inserts_stream(request: web.Request) -> web.StreamResponse:
    """POST /inserts-stream: a target line, then one JSON object per row; one ack (or error) line per row."""
    service = request.app[SERVICE]
    target, rows = streams.parse_inserts(service, await read_body(request))
    return await _chunked(request, streams.DELIMITED, streams.insert_chunks(service, target, rows))


async def status(request: web.Request) -> web.Response:
    """GET /status/<commandId> (`stream/`NAME`/create`, as /ksql's commandId): the command's status."""
    command_id = request.match_info["command_id"]
    found = request.app[SERVICE].command_status(command_id)
    if found is None:
        return _json(error_body("generic_error", NOT_FOUND, f"Command not found: {command_id}"), 404)
    return _json(found)


async def metrics(request: web.Request) -> web.Response:
    body = await asyncio.to_thread(generate_latest, request.app[METRICS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(service: KsqlService, auth: BasicAuth | None = None) -> web.Application:
    """The HTTP/1.1 application; with `auth`, every request must carry a user's credentials (HTTP basic)."""
    middlewares = [failures] if auth is None else [auth.middleware(UNAUTHORIZED), failures]
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY_BYTES)
    app[SERVICE] = service
    app[METRICS] = metrics_registry(service)
    app.router.add_get("/info", info)
    app.router.add_get("/healthcheck", healthcheck)
    app.router.add_post("/ksql", ksql)
    app.router.add_post("/query", query)
    app.router.add_post("/query-stream", query_stream)
    app.router.add_post("/close-query", close_query)
    app.router.add_post("/inserts-stream", inserts_stream)
    app.router.add_get("/status/{command_id:.+}", status)
    app.router.add_get("/metrics", metrics)

    async def replay(app: web.Application) -> None:
        app["replay"] = asyncio.get_running_loop().run_in_executor(None, service.start)

    async def shutdown(app: web.Application) -> None:
        await asyncio.to_thread(service.close)

    app.on_startup.append(replay)
    app.on_cleanup.append(shutdown)
    return app
