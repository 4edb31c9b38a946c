"""The streaming endpoints' bodies (/query, /query-stream, /inserts-stream) as async byte chunks, so that
HTTP/1.1 (aiohttp) and HTTP/2 cleartext (ksql-python's `inserts_stream` and `use_http2` queries)
send the same bytes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from fraudstream.requestbody import BadBody, parse_json

from ..errors import KsqlError
from ..pull import PullResult
from .entities import BAD_REQUEST, BAD_STATEMENT, NOT_READY, TOO_LARGE, error_body, json_value
from .service import KsqlService, PushQuery, StatementFailure

DELIMITED = "application/vnd.ksqlapi.delimited.v1"
#: Longest statement text taken (413 beyond): ksqlDB writes each statement as one record of its command topic,
#: and our longest statement file is 4 KB; parsing is CPU-bound, so a huge text would stall the server.
MAX_STATEMENT_CHARS = 64 * 1024


def ready(service: KsqlService) -> None:
    if not service.ready:
        raise StatementFailure(error_body("generic_error", NOT_READY, "The server is replaying its command topic"), 503)


def refused(bad: BadBody) -> StatementFailure:
    """A body refused by fraudstream.requestbody, as ksqlDB's error object (its code is the status * 100)."""
    return StatementFailure(error_body("generic_error", bad.status * 100, bad.message), bad.status)


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = parse_json(raw, empty={})
    except BadBody as e:
        raise refused(e) from None
    if not isinstance(body, dict):
        raise StatementFailure(error_body("generic_error", BAD_REQUEST, "The request body must be a JSON object"))
    return body


def statement_text(body: dict[str, Any], key: str) -> str:
    """The statements of a request: text, not blank, at most MAX_STATEMENT_CHARS (413 beyond)."""
    sql = body.get(key)
    if not isinstance(sql, str) or not sql.strip():
        raise StatementFailure(error_body("generic_error", BAD_REQUEST, f"The request has no '{key}' statement text"))
    if len(sql) > MAX_STATEMENT_CHARS:
        message = f"The statement text of {len(sql)} characters exceeds the limit of {MAX_STATEMENT_CHARS}"
        raise StatementFailure(error_body("generic_error", TOO_LARGE, message), 413)
    return sql


def properties(body: dict[str, Any], key: str) -> dict[str, Any]:
    """The request's properties: a JSON object, or none."""
    found = body.get(key) or {}
    if not isinstance(found, dict):
        raise StatementFailure(error_body("generic_error", BAD_REQUEST, f"'{key}' must be a JSON object"))
    return found


async def open_push(service: KsqlService, raw: bytes, sql_key: str, props_key: str) -> PushQuery | PullResult:
    ready(service)
    body = parse_body(raw)
    sql = statement_text(body, sql_key)
    return await asyncio.to_thread(service.open_push, sql, properties(body, props_key))


async def _rows(service: KsqlService, pq: PushQuery, gone: Callable[[], bool]) -> AsyncIterator[tuple[list[Any], bool]]:
    """(row, tombstone) until the LIMIT, a close-query or a client that went away; the query is closed
    afterwards."""
    try:
        while not pq.done and not gone():
            for change in await asyncio.to_thread(pq.poll, 0.5):
                yield change
    finally:
        await asyncio.to_thread(service.close_push, pq.tq.id)


async def _pull_rows(result: PullResult) -> AsyncIterator[list[Any]]:
    for row in result.rows:
        yield [json_value(v) for v in row]


async def pull_query_chunks(result: PullResult) -> AsyncIterator[bytes]:
    """A pull query on /query: the header and the rows in one JSON array (no final message)."""
    body = [json.dumps({"header": {"queryId": result.query_id, "schema": result.schema}})]
    body += [json.dumps({"row": {"columns": row}}) async for row in _pull_rows(result)]
    yield ("[" + ",\n".join(body) + "]\n").encode()


async def query_chunks(service: KsqlService, pq: PushQuery, gone: Callable[[], bool]) -> AsyncIterator[bytes]:
    header = {"header": {"queryId": pq.tq.id, "schema": pq.header.schema}}
    yield ("[" + json.dumps(header) + ",\n").encode()
    async for row, tombstone in _rows(service, pq, gone):  # a table's deleted row is flagged, as ksqlDB does
        yield (
            json.dumps({"row": {"columns": row, "tombstone": True} if tombstone else {"columns": row}}) + ",\n"
        ).encode()
    final = "Limit Reached" if pq.limit_reached else "Query Completed"
    yield (json.dumps({"finalMessage": final}) + "]\n").encode()


def query_stream_chunks(
    service: KsqlService, pq: PushQuery | PullResult, accept: str, gone: Callable[[], bool]
) -> tuple[str, AsyncIterator[bytes]]:
    """/query-stream: the header, then each row as a JSON array (a tombstone as its key columns and null
    values: this endpoint's rows carry no flag)."""
    as_json = "application/json" in accept
    if isinstance(pq, PullResult):
        header = {"queryId": pq.query_id, "columnNames": pq.names, "columnTypes": pq.types}
        rows = ((row, False) async for row in _pull_rows(pq))
    else:
        header = {"queryId": pq.tq.id, "columnNames": pq.header.names, "columnTypes": pq.header.types}
        rows = _rows(service, pq, gone)

    async def chunks() -> AsyncIterator[bytes]:
        if as_json:
            yield ("[" + json.dumps(header)).encode()
            async for row, _ in rows:
                yield ("," + json.dumps(row)).encode()
            yield b"]"
        else:
            yield (json.dumps(header) + "\n").encode()
            async for row, _ in rows:
                yield (json.dumps(row) + "\n").encode()

    return ("application/json" if as_json else DELIMITED), chunks()


def close_query(service: KsqlService, query_id: Any) -> bool:
    pq = service.push_queries.get(str(query_id))
    if pq is None:
        return False
    pq.closed = True  # the streaming response notices, closes the consumer and ends
    return True


def parse_inserts(service: KsqlService, raw: bytes) -> tuple[str, list[str]]:
    ready(service)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise StatementFailure(error_body("generic_error", BAD_REQUEST, f"The body is not valid UTF-8: {e}")) from None
    lines = [line for line in text.split("\n") if line.strip()]
    try:
        target = json.loads(lines[0])["target"] if lines else None
    except (ValueError, KeyError, TypeError, RecursionError):
        target = None
    if not isinstance(target, str):
        raise StatementFailure(error_body("generic_error", BAD_REQUEST, 'The first line must be {"target": STREAM}'))
    return target, lines[1:]


async def insert_chunks(service: KsqlService, target: str, rows: list[str]) -> AsyncIterator[bytes]:
    for seq, line in enumerate(rows):
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise KsqlError("Each row must be a JSON object")
            await asyncio.to_thread(service.insert_row, target, row)
            ack: dict[str, Any] = {"status": "ok", "seq": seq}
        except RecursionError:
            ack = {
                "status": "error",
                "seq": seq,
                "error_code": BAD_STATEMENT,
                "message": "The row is nested too deeply",
            }
        except (KsqlError, ValueError) as e:
            ack = {"status": "error", "seq": seq, "error_code": BAD_STATEMENT, "message": getattr(e, "message", str(e))}
        yield (json.dumps(ack) + "\n").encode()
