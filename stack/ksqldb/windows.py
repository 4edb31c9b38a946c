"""Windows: the WINDOW clause, window assignment, and windowed keys as ksqlDB writes them.

Semantics follow Kafka Streams, which ksqlDB runs on:
- TUMBLING and HOPPING windows are aligned to the epoch; a record belongs to every window
  [start, start + size) containing its timestamp, with no window starting before 0.
- A window closes when stream time (the highest timestamp seen) reaches its end plus the grace period;
  records for a closed window are dropped. Without GRACE PERIOD the grace is 24 hours.
- SESSION windows merge every session of the key whose bounds lie within the inactivity gap of a record;
  a session closes when stream time reaches its end plus the gap plus the grace period.
- On the output topic a windowed key is the key's bytes followed by the window start as an 8-byte
  big-endian long (time windows), or by the window end and then the start (session windows).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any

from .errors import KsqlStatementError, ParseError, SerdeError
from .formats.base import Serde

DEFAULT_GRACE_MS = 24 * 60 * 60 * 1000

_UNITS = {
    "MILLISECOND": 1,
    "MILLISECONDS": 1,
    "SECOND": 1000,
    "SECONDS": 1000,
    "MINUTE": 60_000,
    "MINUTES": 60_000,
    "HOUR": 3_600_000,
    "HOURS": 3_600_000,
    "DAY": 86_400_000,
    "DAYS": 86_400_000,
}


@dataclass(frozen=True)
class WindowSpec:
    """A query's WINDOW clause (sizes in milliseconds)."""

    type: str  # TUMBLING / HOPPING / SESSION
    size: int = 0  # window size; the inactivity gap for SESSION
    advance: int = 0  # HOPPING advance (== size for TUMBLING)
    grace: int | None = None  # None: not given (the default applies)
    retention: int | None = None

    @property
    def grace_ms(self) -> int:
        return DEFAULT_GRACE_MS if self.grace is None else self.grace

    @property
    def is_session(self) -> bool:
        return self.type == "SESSION"

    @property
    def close_after(self) -> int:
        """How long after a window's end it stays open for late records."""
        return self.grace_ms + (self.size if self.is_session else 0)

    @property
    def retention_ms(self) -> int:
        """How long a window stays in the store after its end (Kafka Streams' minimum, as its default)."""
        if self.retention is not None:
            return max(self.retention - (0 if self.is_session else self.size), 0)
        return self.close_after

    def windows_for(self, ts: int) -> list[tuple[int, int]]:
        """The [start, end) time windows that contain `ts`, earliest first."""
        size, advance = self.size, self.advance
        start = (max(0, ts - size + advance) // advance) * advance
        out = []
        while start <= ts:
            out.append((start, start + size))
            start += advance
        return out

    def info(self) -> WindowInfo:
        return WindowInfo(self.type, None if self.is_session else self.size)


@dataclass(frozen=True)
class WindowInfo:
    """What a windowed source's key carries: the window type and, for time windows, the size."""

    type: str  # TUMBLING / HOPPING / SESSION
    size: int | None = None

    @property
    def is_session(self) -> bool:
        return self.type == "SESSION"


def parse_duration(text: str, what: str = "duration") -> int:
    """'30 SECONDS' -> 30000; raises ParseError for an unknown unit."""
    m = re.fullmatch(r"\s*(\d+)\s+([A-Za-z]+)\s*", text)
    if not m:
        raise ParseError(f"Invalid {what}: '{text.strip()}'")
    unit = m.group(2).upper()
    if unit not in _UNITS:
        raise ParseError(f"Invalid {what}: '{text.strip()}'. Unknown time unit: '{unit}'")
    return int(m.group(1)) * _UNITS[unit]


def parse_window(text: str) -> WindowSpec:
    """Parse the WINDOW clause as the parser hands it over: 'TUMBLING (SIZE 30 SECONDS, GRACE PERIOD 1 MINUTE)'."""
    m = re.fullmatch(r"\s*([A-Za-z_]+)\s*\((.*)\)\s*", text, re.S)
    if not m:
        raise ParseError(f"Syntax Error: invalid WINDOW clause: {text}")
    kind = m.group(1).upper()
    if kind not in ("TUMBLING", "HOPPING", "SESSION"):
        raise ParseError(f"Syntax Error: unknown window type {kind}")
    size = advance = grace = retention = None
    for part in (p.strip() for p in m.group(2).split(",")):
        words = part.split()
        head = words[0].upper() if words else ""
        if head == "SIZE" and kind != "SESSION":
            size = _duration(words[1:])
        elif head == "ADVANCE" and kind == "HOPPING" and len(words) > 1 and words[1].upper() == "BY":
            advance = _duration(words[2:])
        elif head == "GRACE" and len(words) > 1 and words[1].upper() == "PERIOD":
            grace = _duration(words[2:])
        elif head == "RETENTION":
            retention = _duration(words[1:])
        elif kind == "SESSION" and size is None and words and words[0].isdigit():
            size = _duration(words)
        else:
            raise ParseError(f"Syntax Error: unexpected '{part}' in {kind} window")
    if size is None or (kind == "HOPPING" and advance is None):
        raise ParseError(f"Syntax Error: {kind} window needs {'ADVANCE BY' if size is not None else 'a size'}")
    if size <= 0:
        raise KsqlStatementError(f"{kind.title()} window size must be positive.")
    if kind == "TUMBLING":
        advance = size
    if kind == "HOPPING":
        assert advance is not None
        if advance <= 0 or advance > size:
            raise KsqlStatementError(
                "Window advancement interval should be more than zero and less than or equal to window size"
            )
    spec = WindowSpec(kind, size, advance or 0, grace, retention)
    if retention is not None and retention < size + spec.grace_ms:
        raise KsqlStatementError(
            f"The retention period ({retention} ms) must be no smaller than the window size plus the grace "
            f"period ({size + spec.grace_ms} ms)."
        )
    return spec


def _duration(words: list[str]) -> int:
    if len(words) != 2 or not words[0].isdigit() or words[1].upper() not in _UNITS:
        raise ParseError(f"Syntax Error: invalid duration '{' '.join(words)}'")
    return int(words[0]) * _UNITS[words[1].upper()]


def parse_window_source(window_type: Any, window_size: Any) -> WindowInfo:
    """WINDOW_TYPE / WINDOW_SIZE of a CREATE STREAM/TABLE over a windowed topic."""
    kind = str(window_type).strip().upper()
    if kind not in ("TUMBLING", "HOPPING", "SESSION"):
        raise KsqlStatementError(
            f"Invalid value {window_type} for property WINDOW_TYPE: String must be one of: SESSION, HOPPING, TUMBLING"
        )
    if kind == "SESSION":
        if window_size is not None:
            raise KsqlStatementError("'WINDOW_SIZE' should not be set for SESSION windows.")
        return WindowInfo(kind)
    if window_size is None:
        raise KsqlStatementError(f"'WINDOW_SIZE' must be set for {kind} windows.")
    try:
        size = parse_duration(str(window_size))
    except ParseError as e:
        raise ParseError(f"Configuration WINDOW_SIZE is invalid: {e.message}") from None
    return WindowInfo(kind, size)


# ---------------------------------------------------------------- windowed keys
_LONG = struct.Struct(">q")
_TWO_LONGS = struct.Struct(">qq")


def encode_windowed_key(key: bytes | None, window: WindowInfo, start: int, end: int) -> bytes:
    inner = key or b""
    if window.is_session:
        return inner + _TWO_LONGS.pack(end, start)
    return inner + _LONG.pack(start)


def decode_windowed_key(data: bytes, window: WindowInfo) -> tuple[bytes, int, int]:
    """(key bytes, window start, window end)."""
    if window.is_session:
        if len(data) < 16:
            raise SerdeError(f"A session-windowed key needs at least 16 bytes, got {len(data)}")
        end, start = _TWO_LONGS.unpack_from(data, len(data) - 16)
        return data[:-16], start, end
    if len(data) < 8:
        raise SerdeError(f"A time-windowed key needs at least 8 bytes, got {len(data)}")
    (start,) = _LONG.unpack_from(data, len(data) - 8)
    assert window.size is not None
    return data[:-8], start, start + window.size


class WindowedKeySerde(Serde):
    """A key serde for windowed topics: the inner key's serde plus the window bounds.

    `serialize(values)` takes the key values followed by (start, end); `deserialize` returns them in the
    same layout, so the window bounds travel with the key columns through a query.
    """

    def __init__(self, inner: Serde, window: WindowInfo) -> None:
        super().__init__(inner.columns)
        self.inner = inner
        self.window = window

    def deserialize(self, data: bytes | None) -> list[Any] | None:
        if data is None:
            return [None] * (len(self.inner.columns) + 2)
        key, start, end = decode_windowed_key(data, self.window)
        values = self.inner.deserialize(key) if self.inner.columns else []
        return list(values or [None] * len(self.inner.columns)) + [start, end]

    def serialize(self, values: list[Any] | None) -> bytes | None:
        if values is None:
            return None
        *keys, start, end = values
        return encode_windowed_key(self.inner.serialize(keys) if self.inner.columns else None, self.window, start, end)
