"""SASL/SCRAM (and TLS) in front of the embedded broker: `python -m stack.saslgate --listen HOST:PORT ... -- TANSU ARGV`.

Tansu 0.6 takes `--authentication`, but its only storage engine here (dynostore, for memory:// and
s3://) keeps no SCRAM credentials (storing one is a no-op, looking one up finds none), so every client is
refused. The gate gives the broker's address what a Kafka `SASL_PLAINTEXT` listener does: it starts
Tansu as its child on an internal loopback port (advertising the gate's address, so that clients come
back through it), answers `ApiVersions` with the broker's own answer, runs the SASL handshake itself
(`SaslHandshake` v0/v1, `SaslAuthenticate` v0-v2, SCRAM-SHA-256 and -512 with the `scramp` library)
against the users of a Jetty-style password file, and only then relays the connection's bytes. Any
other request before authentication closes the connection, as Kafka does.

With `--certfile` and `--keyfile` the listener is `SASL_SSL`: the gate terminates TLS (Tansu 0.6 cannot
serve it: its `--cert` and `--key` options exclude each other) and relays plaintext to the broker on loopback.

The internal port stays reachable on loopback without credentials. Tansu advertises the gate, so a Kafka
client pointed at the internal port is sent back through it after its first metadata request; a
hand-written one that ignores advertised addresses is not stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import ssl
import struct
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from scramp import ScramException, ScramMechanism

from fraudstream.basicauth import BasicAuth
from fraudstream.tls import load_server_context

logger = logging.getLogger("stack.saslgate")

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
UNSUPPORTED_SASL_MECHANISM, ILLEGAL_SASL_STATE, SASL_AUTHENTICATION_FAILED = 33, 34, 58
MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
#: Kafka's `sasl.server.max.receive.size`: the largest request taken before authentication.
MAX_UNAUTHENTICATED_BYTES = 524_288
#: Kafka's minimum for SCRAM credentials.
ITERATIONS = 4096

AuthInfo = tuple[bytes, bytes, bytes, int]


class AuthenticationFailed(Exception):
    """The client gave wrong credentials or broke the protocol: answered if possible, then disconnected."""


class Users:
    """SCRAM credentials (salt, stored key, server key, iterations) per mechanism and user, derived at start-up."""

    def __init__(self, passwords: Mapping[str, str]) -> None:
        self.mechanisms = {name: ScramMechanism(name) for name in MECHANISMS}
        self.credentials: dict[str, dict[str, AuthInfo]] = {
            name: {user: mechanism.make_auth_info(password, ITERATIONS) for user, password in passwords.items()}
            for name, mechanism in self.mechanisms.items()
        }

    def server(self, mechanism: str) -> tuple[Any, list[str]]:
        """A SCRAM server for one exchange, and the list that receives the user it looks up."""
        known, named = self.credentials[mechanism], []

        def lookup(user: str) -> AuthInfo:
            named.append(user)
            if user not in known:
                raise ScramException("unknown user")
            return known[user]

        return self.mechanisms[mechanism].make_server(lookup), named


class Request:
    """One Kafka request: its header, and a reader over the body."""

    def __init__(self, frame: bytes) -> None:
        self.frame = frame
        self.api_key, self.api_version, self.correlation_id = struct.unpack_from(">hhi", frame)
        (client_id_length,) = struct.unpack_from(">h", frame, 8)
        self.position = 10 + max(client_id_length, 0)

    @property
    def flexible(self) -> bool:
        return self.api_key == SASL_AUTHENTICATE and self.api_version >= 2

    def string(self) -> str:
        (length,) = struct.unpack_from(">h", self.frame, self.position)
        self.position += 2 + length
        return self.frame[self.position - length : self.position].decode()

    def auth_bytes(self) -> bytes:
        if self.flexible:
            self._uvarint()  # the header's tagged fields: none that we read
            length = self._uvarint() - 1
        else:
            (length,) = struct.unpack_from(">i", self.frame, self.position)
            self.position += 4
        return self.frame[self.position : self.position + length]

    def _uvarint(self) -> int:
        value = shift = 0
        while True:
            byte = self.frame[self.position]
            self.position += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7


def uvarint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def handshake_response(request: Request, error: int) -> bytes:
    mechanisms = b"".join(struct.pack(">h", len(m)) + m.encode() for m in MECHANISMS)
    return struct.pack(">ihi", request.correlation_id, error, len(MECHANISMS)) + mechanisms


def authenticate_response(request: Request, error: int, message: str | None, data: bytes) -> bytes:
    """SaslAuthenticate's answer in the request's version (v2 is flexible: compact fields, tagged fields)."""
    text = None if message is None else message.encode()
    if request.flexible:
        body = struct.pack(">ib", request.correlation_id, 0) + struct.pack(">h", error)
        body += uvarint(0) if text is None else uvarint(len(text) + 1) + text
        return body + uvarint(len(data) + 1) + data + struct.pack(">q", 0) + b"\x00"
    body = struct.pack(">ih", request.correlation_id, error)
    body += struct.pack(">h", -1) if text is None else struct.pack(">h", len(text)) + text
    body += struct.pack(">i", len(data)) + data
    return body + (struct.pack(">q", 0) if request.api_version >= 1 else b"")


async def read_frame(reader: asyncio.StreamReader, limit: int = MAX_UNAUTHENTICATED_BYTES) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    if not 0 < size <= limit:
        raise AuthenticationFailed(f"a request of {size} bytes before authentication")
    return await reader.readexactly(size)


def write_frame(writer: asyncio.StreamWriter, payload: bytes) -> None:
    writer.write(struct.pack(">i", len(payload)) + payload)


class Gate:
    """Accepts clients on the broker's address, authenticates them, then relays them to the broker."""

    def __init__(self, users: Users, backend: tuple[str, int]) -> None:
        self.users = users
        self.backend = backend

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.backend)
        except OSError as error:
            logger.warning("broker unreachable for %s: %s", peer, error)
            writer.close()
            return
        try:
            user = await self.authenticate(reader, writer, upstream_reader, upstream_writer)
            logger.debug("%s authenticated as %s", peer, user)
            relays = [asyncio.ensure_future(relay(reader, upstream_writer)),
                      asyncio.ensure_future(relay(upstream_reader, writer))]  # fmt: skip
            await asyncio.wait(relays, return_when=asyncio.FIRST_COMPLETED)  # one side gone: the connection is over
            for task in relays:
                task.cancel()
        except AuthenticationFailed as error:
            logger.info("refused %s: %s", peer, error)
        except (asyncio.IncompleteReadError, ConnectionError, struct.error, IndexError, UnicodeDecodeError):
            pass  # a client that left, or sent garbage before authenticating
        finally:
            for stream in (writer, upstream_writer):
                stream.close()

    async def authenticate(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream_reader: asyncio.StreamReader,
        upstream_writer: asyncio.StreamWriter,
    ) -> str:
        """The SASL exchange of one connection; returns the user, or raises AuthenticationFailed."""
        mechanism: str | None = None
        legacy = False
        while mechanism is None:
            request = Request(await read_frame(reader))
            if request.api_key == API_VERSIONS:  # the broker's own versions: asked before anything else
                write_frame(upstream_writer, request.frame)
                write_frame(writer, await read_frame(upstream_reader, limit=1 << 20))
            elif request.api_key == SASL_HANDSHAKE:
                wanted = request.string()
                supported = wanted in MECHANISMS
                write_frame(writer, handshake_response(request, 0 if supported else UNSUPPORTED_SASL_MECHANISM))
                if not supported:
                    await writer.drain()
                    raise AuthenticationFailed(f"unsupported SASL mechanism {wanted!r}")
                mechanism, legacy = wanted, request.api_version == 0
            else:
                raise AuthenticationFailed(f"request type {request.api_key} before SASL authentication")
            await writer.drain()
        server, named = self.users.server(mechanism)
        steps: list[Callable[[str], str]] = [
            lambda message: (server.set_client_first(message), server.get_server_first())[1],
            lambda message: (server.set_client_final(message), server.get_server_final())[1],
        ]
        for step in steps:
            frame = await read_frame(reader)
            request = None if legacy else Request(frame)
            if request is not None and request.api_key != SASL_AUTHENTICATE:
                raise AuthenticationFailed(f"request type {request.api_key} during SASL authentication")
            token = frame if request is None else request.auth_bytes()
            try:
                answer = step(token.decode()).encode()
            except (ScramException, UnicodeDecodeError) as error:
                if request is not None:
                    message = f"Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}"
                    write_frame(writer, authenticate_response(request, SASL_AUTHENTICATION_FAILED, message, b""))
                    await writer.drain()
                raise AuthenticationFailed(str(error)) from None
            write_frame(writer, answer if request is None else authenticate_response(request, 0, None, answer))
            await writer.drain()
        return named[0]


async def relay(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
    """Copy bytes one way until the source ends or fails."""
    with contextlib.suppress(ConnectionError):
        while data := await source.read(1 << 16):
            target.write(data)
            await target.drain()


async def serve(
    listen: tuple[str, int],
    backend: tuple[str, int],
    users: Users,
    broker_argv: list[str],
    tls: ssl.SSLContext | None = None,
) -> int:
    """Start the broker, wait for its port, serve the gate (over TLS with `tls`) until SIGTERM/SIGINT or the
    broker's exit."""
    broker = await asyncio.create_subprocess_exec(*broker_argv)
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        try:
            _, probe = await asyncio.open_connection(*backend)
            probe.close()
            break
        except OSError:
            if broker.returncode is not None or asyncio.get_running_loop().time() > deadline:
                logger.error("the broker did not open %s:%d", *backend)
                return broker.returncode or 1
            await asyncio.sleep(0.05)
    gate = Gate(users, backend)
    server = await asyncio.start_server(
        gate.handle, *listen, reuse_address=True, ssl=tls, ssl_handshake_timeout=None if tls is None else 10.0
    )
    protocol = "SASL_PLAINTEXT" if tls is None else "SASL_SSL"
    logger.info("%s (SCRAM) on %s:%d in front of the broker on %s:%d", protocol, *listen, *backend)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    exited = asyncio.ensure_future(broker.wait())
    await asyncio.wait([exited, asyncio.ensure_future(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    server.close()
    if broker.returncode is None:
        broker.terminate()
    code = await broker.wait()
    return 0 if stop.is_set() else code


def address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stack.saslgate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", type=address, required=True, help="HOST:PORT clients connect to")
    parser.add_argument("--backend", type=address, required=True, help="HOST:PORT the broker listens on")
    parser.add_argument("--password-file", type=Path, required=True, help="users, as `name: password[,role]` lines")
    parser.add_argument("--certfile", type=Path, help="the listener's certificate chain (PEM): serve SASL_SSL")
    parser.add_argument("--keyfile", type=Path, help="its private key (PEM)")
    parser.add_argument("broker", nargs=argparse.REMAINDER, help="-- then the broker's command line")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    broker_argv = args.broker[1:] if args.broker[:1] == ["--"] else args.broker
    users = Users(BasicAuth.from_file(args.password_file, "kafka").users)
    tls = None if args.certfile is None else load_server_context(args.certfile, args.keyfile)
    sys.exit(asyncio.run(serve(args.listen, args.backend, users, broker_argv, tls)))


if __name__ == "__main__":
    main()
