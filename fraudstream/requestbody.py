"""JSON request bodies of our REST servers (Schema Registry, ksqlDB, Connect, a worker's `POST /score`).

One size limit, one rule for content types, and one parse that fails only with `BadBody`: each server puts
its status and message into its own error object (`{"error_code": ..., "message": ...}`), so that hostile
input (a body too large, not JSON, not UTF-8, nested beyond the parser's reach) gets a 4xx that says why
and never a 500.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

#: Largest request body accepted (413 beyond): eight times Kafka's default record size (1 MB), which bounds
#: a schema, a statement and a connector config anyway; room for a /score batch or an /inserts-stream.
MAX_BODY_BYTES = 8 * 1024 * 1024

#: Media types taken as a JSON body besides `application/json` and any `+json` type: Jersey's generic
#: `application/octet-stream` (which Confluent's servers accept too) and ksqlDB's delimited rows.
OTHER_ACCEPTED = ("application/octet-stream", "application/vnd.ksqlapi.delimited.v1")

_READ_CHUNK = 64 * 1024


class BadBody(ValueError):
    """A request body refused: `status` is the HTTP status (400, 413 or 415), `message` says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def check_content_type(request: web.BaseRequest) -> None:
    """415 for a body declared as something other than JSON (a form, XML, text); none declared is fine."""
    declared = request.headers.get("Content-Type")
    if declared is None or not declared.strip():
        return
    media = declared.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json") or media in OTHER_ACCEPTED:
        return
    raise BadBody(415, f"Unsupported Media Type: {declared!r}; send the body as application/json")


async def read_body(request: web.BaseRequest, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, at most `limit` bytes (413 beyond, said before reading when Content-Length tells)."""
    check_content_type(request)
    if request.content_length is not None and request.content_length > limit:
        raise BadBody(413, f"Request body of {request.content_length} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise BadBody(413, f"Request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes, empty: Any = None) -> Any:
    """The JSON document in `raw` (`empty` when there is none); BadBody(400) for anything else."""
    if not raw.strip():
        if empty is not None:
            return empty
        raise BadBody(400, "The request body is empty; expected a JSON document")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody(400, f"The request body is not valid UTF-8: {exc}") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise BadBody(400, "The request body is nested too deeply to parse") from None
    except ValueError as exc:
        raise BadBody(400, f"The request body is not valid JSON: {exc}") from None


async def read_json(request: web.BaseRequest, empty: Any = None) -> Any:
    """`read_body` then `parse_json`."""
    return parse_json(await read_body(request), empty)
