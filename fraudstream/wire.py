"""The Confluent wire format: magic byte 0, a big-endian 4-byte schema id, then the serialized body.

Every serializer and deserializer of fraudstream that frames or unframes Schema Registry records (the
engine's Avro format and its vectorized path, the workers' decoder and score encoder, the Connect
worker's Avro converter) uses this module, so the framing is written once.
"""

from __future__ import annotations

import struct

MAGIC_BYTE = 0
#: Bytes before the body: the magic byte and the schema id.
HEADER_SIZE = 5

_HEADER = struct.Struct(">bI")


class WireFormatError(ValueError):
    """Bytes that are not a Confluent-framed record (too short, or another magic byte)."""


def header(schema_id: int) -> bytes:
    """The 5 bytes that precede a body written with schema `schema_id`."""
    return _HEADER.pack(MAGIC_BYTE, schema_id)


def frame(schema_id: int, body: bytes) -> bytes:
    return header(schema_id) + body


def schema_id(data: bytes | bytearray | memoryview | None) -> int:
    """The schema id of a framed record, or WireFormatError ("Unknown magic byte!" as Confluent's clients say)."""
    if data is None or len(data) < HEADER_SIZE or data[0] != MAGIC_BYTE:
        raise WireFormatError("Unknown magic byte!")
    return _HEADER.unpack_from(data)[1]


def unframe(data: bytes) -> tuple[int, bytes]:
    """The schema id and the body of a framed record."""
    return schema_id(data), data[HEADER_SIZE:]
