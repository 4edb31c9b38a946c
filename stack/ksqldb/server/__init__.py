"""The ksqlDB REST API over aiohttp: /info, /healthcheck, /ksql, /query, /query-stream, /close-query,
/inserts-stream. Bodies and error objects follow ksqlDB's, so its clients (ksql-python, the CLI's
REST calls) work unchanged."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from ..errors import KsqlError
from .entities import BAD_REQUEST, BAD_STATEMENT, NOT_READY, error_body
from .service import KsqlService, PushQuery, StatementFailure

log = logging.getLogger(__name__)

VERSION = "0.29.0"
DELIMITED = "application/vnd.ksqlapi.delimited.v1"
SERVICE = web.AppKey("service", KsqlService)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError as e:
        raise StatementFailure(error_body("generic_error", BAD_REQUEST, f"Invalid JSON in request: {e}")) from None
    if not isinstance(body, dict):
        raise StatementFailure(error_body("generic_error", BAD_REQUEST, "The request body must be a JSON object"))
    return body


def _ready(service: KsqlService) -> None:
    if not service.ready:
        raise StatementFailure(error_body("generic_error", NOT_READY, "The server is replaying its command topic"), 503)


@web.middleware
async def failures(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except StatementFailure as e:
        return _json(e.body, e.status)


async def info(request: web.Request) -> web.Response:
    return _json({"KsqlServerInfo": {"version": VERSION, "kafkaClusterId": "fraudstream", "ksqlServiceId": "default_",
                                     "serverStatus": "RUNNING" if request.app[SERVICE].ready else "STARTING"}})


async def healthcheck(request: web.Request) -> web.Response:
    ready = request.app[SERVICE].ready
    parts = {"metastore": {"isHealthy": ready}, "kafka": {"isHealthy": ready}, "commandRunner": {"isHealthy": ready}}
    return _json({"isHealthy": ready, "details": parts}, 200 if ready else 503)


async def ksql(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    _ready(service)
    body = await _body(request)
    sql = body.get("ksql")
    if not isinstance(sql, str) or not sql.strip():
        raise StatementFailure(error_body("generic_error", BAD_REQUEST, "The request has no 'ksql' statement text"))
    return _json(await asyncio.to_thread(service.execute, sql, body.get("streamsProperties") or {}))


def _disconnected(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


async def _stream_rows(request: web.Request, pq: PushQuery, response: web.StreamResponse, render: Any) -> bool:
    """Write rows until the LIMIT, a close-query or a client that went away; True when the limit was reached."""
    while not pq.done and not _disconnected(request):
        for row in await asyncio.to_thread(pq.poll, 0.5):
            await response.write(render(row))
    return pq.remaining == 0


async def _open(request: web.Request, sql_key: str, props_key: str) -> tuple[KsqlService, PushQuery]:
    service = request.app[SERVICE]
    _ready(service)
    body = await _body(request)
    sql = body.get(sql_key)
    if not isinstance(sql, str) or not sql.strip():
        raise StatementFailure(error_body("generic_error", BAD_REQUEST, f"The request has no '{sql_key}' text"))
    return service, await asyncio.to_thread(service.open_push, sql, body.get(props_key) or {})


async def query(request: web.Request) -> web.StreamResponse:
    """POST /query: a chunked JSON array: header, one {"row": ...} per row, a final message on LIMIT."""
    service, pq = await _open(request, "ksql", "streamsProperties")
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    try:
        await response.prepare(request)
        header = {"header": {"queryId": pq.tq.id, "schema": pq.header.schema}}
        await response.write(("[" + json.dumps(header) + ",\n").encode())
        limit = await _stream_rows(request, pq, response,
                                   lambda row: (json.dumps({"row": {"columns": row}}) + ",\n").encode())
        final = {"finalMessage": "Limit Reached" if limit else "Query Completed"}
        await response.write((json.dumps(final) + "]\n").encode())
        await response.write_eof()
    except (ConnectionResetError, asyncio.CancelledError):
        log.info("push query %s: client went away", pq.tq.id)
    finally:
        await asyncio.to_thread(service.close_push, pq.tq.id)
    return response


async def query_stream(request: web.Request) -> web.StreamResponse:
    """POST /query-stream: header object then rows, newline-delimited (default) or as one JSON array."""
    service, pq = await _open(request, "sql", "properties")
    as_json = "application/json" in request.headers.get("Accept", "")
    response = web.StreamResponse(headers={"Content-Type": "application/json" if as_json else DELIMITED})
    response.enable_chunked_encoding()
    header = {"queryId": pq.tq.id, "columnNames": pq.header.names, "columnTypes": pq.header.types}
    try:
        await response.prepare(request)
        if as_json:
            await response.write(("[" + json.dumps(header)).encode())
            await _stream_rows(request, pq, response, lambda row: ("," + json.dumps(row)).encode())
            await response.write(b"]")
        else:
            await response.write((json.dumps(header) + "\n").encode())
            await _stream_rows(request, pq, response, lambda row: (json.dumps(row) + "\n").encode())
        await response.write_eof()
    except (ConnectionResetError, asyncio.CancelledError):
        log.info("push query %s: client went away", pq.tq.id)
    finally:
        await asyncio.to_thread(service.close_push, pq.tq.id)
    return response


async def close_query(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    body = await _body(request)
    qid = body.get("queryId")
    pq = service.push_queries.get(str(qid))
    if pq is None:
        return _json(error_body("generic_error", BAD_REQUEST, f"No query with id {qid}"), 400)
    pq.closed = True  # the streaming handler notices, closes the consumer and ends the response
    return web.Response(status=200)


async def inserts_stream(request: web.Request) -> web.StreamResponse:
    """POST /inserts-stream: a target line, then one JSON object per row; one ack (or error) line per row."""
    service = request.app[SERVICE]
    _ready(service)
    lines = [line for line in (await request.read()).decode("utf-8").split("\n") if line.strip()]
    try:
        target = json.loads(lines[0])["target"] if lines else None
    except (ValueError, KeyError, TypeError):
        target = None
    if not isinstance(target, str):
        raise StatementFailure(error_body("generic_error", BAD_REQUEST, "The first line must be {\"target\": STREAM}"))
    response = web.StreamResponse(headers={"Content-Type": DELIMITED})
    response.enable_chunked_encoding()
    await response.prepare(request)
    for seq, line in enumerate(lines[1:]):
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise KsqlError("Each row must be a JSON object")
            await asyncio.to_thread(service.insert_row, target, row)
            ack: dict[str, Any] = {"status": "ok", "seq": seq}
        except (KsqlError, ValueError) as e:
            ack = {"status": "error", "seq": seq, "error_code": BAD_STATEMENT,
                   "message": getattr(e, "message", str(e))}
        await response.write((json.dumps(ack) + "\n").encode())
    await response.write_eof()
    return response


def create_app(service: KsqlService) -> web.Application:
    app = web.Application(middlewares=[failures], client_max_size=64 * 1024 * 1024)
    app[SERVICE] = service
    app.router.add_get("/info", info)
    app.router.add_get("/healthcheck", healthcheck)
    app.router.add_post("/ksql", ksql)
    app.router.add_post("/query", query)
    app.router.add_post("/query-stream", query_stream)
    app.router.add_post("/close-query", close_query)
    app.router.add_post("/inserts-stream", inserts_stream)

    async def replay(app: web.Application) -> None:
        app["replay"] = asyncio.get_running_loop().run_in_executor(None, service.start)

    async def shutdown(app: web.Application) -> None:
        await asyncio.to_thread(service.close)

    app.on_startup.append(replay)
    app.on_cleanup.append(shutdown)
    return app
