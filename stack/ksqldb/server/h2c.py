"""HTTP/2 (cleartext with prior knowledge, or negotiated over TLS) beside aiohttp's HTTP/1.1 on the same port.

ksql-python sends `inserts_stream` (and queries with `use_http2=True`) as HTTP/2, without TLS as a real
ksqlDB accepts, or over TLS; aiohttp only speaks HTTP/1.1. A TLS connection whose handshake selected `h2`
(ALPN) is HTTP/2; any other connection is routed by its first bytes: the HTTP/2 preface goes to a small h2
(the `h2` library) handler for the streaming endpoints, anything else to aiohttp. (httpx with `http1=False`,
as ksql-python uses it, offers `http/1.1` too and speaks HTTP/2 whatever the server selects.)
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from fraudstream.basicauth import BasicAuth

from . import streams
from .entities import NOT_FOUND, UNAUTHORIZED, error_body
from .service import KsqlService, StatementFailure

logger = logging.getLogger(__name__)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: The application protocols a TLS handshake may select (ALPN), the server's preferred first. HTTP/1.1 first:
#: the HTTP/2 handler serves the streaming endpoints only, so a client that offers both (curl, Prometheus,
#: browsers) gets every endpoint over HTTP/1.1; one that offers only `h2`, or sends the HTTP/2 preface, HTTP/2.
ALPN_PROTOCOLS = ("http/1.1", "h2")


class Sniffer(asyncio.Protocol):
    """Chooses HTTP/2 or HTTP/1.1 from a connection's first bytes, then steps aside."""

    def __init__(self, http1: Callable[[], asyncio.Protocol], service: KsqlService, auth: BasicAuth | None) -> None:
        self.http1 = http1
        self.service = service
        self.auth = auth
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        tls = transport.get_extra_info("ssl_object")
        if tls is not None and tls.selected_alpn_protocol() == "h2":  # negotiated: no need to wait for bytes
            self._hand_over(H2Protocol(self.service, self.auth))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) < len(PREFACE) and PREFACE.startswith(self.buffer):
            return
        self._hand_over(H2Protocol(self.service, self.auth) if self.buffer.startswith(PREFACE) else self.http1())

    def _hand_over(self, inner: asyncio.Protocol) -> None:
        assert self.transport is not None
        self.transport.set_protocol(inner)
        inner.connection_made(self.transport)
        if self.buffer:
            inner.data_received(self.buffer)

    def connection_lost(self, exc: Exception | None) -> None:
        pass


class H2Protocol(asyncio.Protocol):
    def __init__(self, service: KsqlService, auth: BasicAuth | None = None) -> None:
        self.service = service
        self.auth = auth
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.transport: asyncio.Transport | None = None
        self.requests: dict[int, tuple[dict[str, str], bytearray]] = {}
        self.window_open = asyncio.Event()
        self.closed = False
        self.reset: set[int] = set()
        self.tasks: set[asyncio.Task] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.conn.initiate_connection()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.window_open.set()

    def _flush(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            logger.info("HTTP/2 protocol error: %s", e)
            self._flush()
            if self.transport is not None:
                self.transport.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self.requests[event.stream_id] = (dict(event.headers), bytearray())
            elif isinstance(event, h2.events.DataReceived):
                self.requests[event.stream_id][1].extend(event.data)
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                headers, body = self.requests.pop(event.stream_id)
                task = asyncio.get_running_loop().create_task(self._handle(event.stream_id, headers, bytes(body)))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            elif isinstance(event, h2.events.StreamReset):
                self.reset.add(event.stream_id)
                self.window_open.set()
            elif isinstance(event, h2.events.WindowUpdated):
                self.window_open.set()
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.closed = True
                self.window_open.set()
        self._flush()

    def _gone(self, stream_id: int) -> Callable[[], bool]:
        return lambda: self.closed or stream_id in self.reset

    async def _handle(self, stream_id: int, headers: dict[str, str], body: bytes) -> None:
        path = headers.get(":path", "").split("?")[0]
        service = self.service
        if self.auth is not None and not self.auth.allows(headers.get("authorization")):
            body = json.dumps(UNAUTHORIZED).encode()
            challenge = [("www-authenticate", self.auth.challenge)]
            await self._respond(stream_id, 401, "application/json", _once(body), challenge)
            return
        try:
            if headers.get(":method") != "POST":
                raise StatementFailure(error_body("generic_error", NOT_FOUND, f"{path} takes POST"), 405)
            if path == "/inserts-stream":
                target, rows = streams.parse_inserts(service, body)
                content_type, chunks = streams.DELIMITED, streams.insert_chunks(service, target, rows)
            elif path == "/query-stream":
                pq = await streams.open_push(service, body, "sql", "properties")
                content_type, chunks = streams.query_stream_chunks(
                    service, pq, headers.get("accept", ""), self._gone(stream_id)
                )
            elif path == "/close-query":
                found = streams.close_query(service, streams.parse_body(body).get("queryId"))
                if not found:
                    raise StatementFailure(error_body("generic_error", 40000, "No query with that id"))
                await self._respond(stream_id, 200, "application/json", _once(b""))
                return
            else:
                raise StatementFailure(error_body("generic_error", NOT_FOUND, f"{path} is served over HTTP/1.1"), 404)
        except StatementFailure as e:
            await self._respond(stream_id, e.status, "application/json", _once(json.dumps(e.body).encode()))
            return
        await self._respond(stream_id, 200, content_type, chunks)

    async def _respond(
        self,
        stream_id: int,
        status: int,
        content_type: str,
        chunks: AsyncIterator[bytes],
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        try:
            self.conn.send_headers(
                stream_id, [(":status", str(status)), ("content-type", content_type), *(headers or [])]
            )
            self._flush()
            async for chunk in chunks:
                await self._send(stream_id, chunk)
            if not self._gone(stream_id)():
                self.conn.end_stream(stream_id)
                self._flush()
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, ConnectionError) as e:
            logger.info("HTTP/2 stream %d ended early: %s", stream_id, e)
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]

    async def _send(self, stream_id: int, data: bytes) -> None:
        while data:
            if self._gone(stream_id)():
                raise ConnectionError("client went away")
            window = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
            if window <= 0:
                self.window_open.clear()
                await self.window_open.wait()
                continue
            self.conn.send_data(stream_id, data[:window])
            self._flush()
            data = data[window:]


async def _once(data: bytes) -> AsyncIterator[bytes]:
    if data:
        yield data


def protocol_factory(
    http1: Callable[[], Any], service: KsqlService, auth: BasicAuth | None = None
) -> Callable[[], asyncio.Protocol]:
    return lambda: Sniffer(http1, service, auth)
