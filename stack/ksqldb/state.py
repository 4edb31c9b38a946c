"""State stores for stateful queries (tables, aggregations, windows, joins).

Why the interface looks as it does:

- Operators talk to two small protocols, `KeyValueStore` and `WindowStore`, and get them from a
  `StateStores` factory by name. They never construct a store themselves, so a runtime can hand them a
  durable implementation (for example an SQLite file per store plus a changelog topic, restored on
  restart) without a change to any operator.
- Keys are tuples of plain Python values (the SQL key columns, in order); values are plain data (None,
  bool, int, float, str, bytes, Decimal, date/time values, and lists, tuples and dicts of those). No
  objects with behaviour are stored, so any store can encode them with a tagged codec (`encode`/`decode`
  below is one) and a changelog topic can carry them.
- There is no ordered range scan over arbitrary keys: SQL keys mix types (NULLs, structs, arrays) that
  have no total order, and no operator needs one. What operators do need is "all windows of one key"
  (session merging, hopping windows) and "everything older than t" (retention, EMIT FINAL), so the
  window store offers exactly those, ordered by window start.
- Every mutation is a `put` or a `delete` of one entry: exactly the changelog record a durable store
  writes. `flush()` marks a point where the runtime commits input offsets; a durable store makes its
  writes durable there (the in-memory one has nothing to do).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, Protocol

Key = tuple  # the key columns' values, in schema order


class KeyValueStore(Protocol):
    """A map from key tuples to values (a materialised table, an aggregate per group)."""

    name: str

    def get(self, key: Key) -> Any | None: ...

    def put(self, key: Key, value: Any) -> None: ...

    def delete(self, key: Key) -> None: ...

    def items(self) -> Iterator[tuple[Key, Any]]: ...

    def __len__(self) -> int: ...

    def flush(self) -> None: ...


class WindowStore(Protocol):
    """Values per (key, window start, window end); windows of a key come back ordered by start."""

    name: str

    def get(self, key: Key, start: int, end: int) -> Any | None: ...

    def put(self, key: Key, start: int, end: int, value: Any) -> None: ...

    def delete(self, key: Key, start: int, end: int) -> None: ...

    def windows(self, key: Key) -> Iterator[tuple[int, int, Any]]: ...

    def items(self) -> Iterator[tuple[Key, int, int, Any]]: ...

    def expire(self, end_before: int) -> list[tuple[Key, int, int, Any]]:
        """Remove and return every window whose end is before `end_before` (retention)."""
        ...

    def __len__(self) -> int: ...

    def flush(self) -> None: ...


class StateStores(Protocol):
    """Where a query gets its stores; one name per store within a query."""

    def key_value(self, name: str) -> KeyValueStore: ...

    def window(self, name: str) -> WindowStore: ...

    def flush(self) -> None:
        """Make every store's writes durable (before the runtime commits input offsets)."""
        ...


# ---------------------------------------------------------------- in memory
_PLAIN_KEY_TYPES = frozenset((str, int, type(None)))


def hashable(value: Any) -> Any:
    """A dict key for a SQL value, as the stores (in memory and durable) key their entries: lists (ARRAY) and
    dicts (MAP/STRUCT) become tuples, and floats and booleans are tagged so that 1, 1.0 and True stay apart."""
    if type(value) is tuple and all(type(v) in _PLAIN_KEY_TYPES for v in value):
        return value  # the common case: strings and integers are their own keys
    if isinstance(value, list):
        return ("\0list", tuple(hashable(v) for v in value))
    if isinstance(value, dict):
        return ("\0dict", tuple((k, hashable(v)) for k, v in value.items()))
    if isinstance(value, tuple):
        return tuple(hashable(v) for v in value)
    if isinstance(value, float) or isinstance(value, bool):
        return (type(value).__name__, value)  # keep 1, 1.0 and True distinct keys
    return value


class InMemoryKeyValueStore:
    def __init__(self, name: str) -> None:
        self.name = name
        self._data: dict[Any, tuple[Key, Any]] = {}

    def get(self, key: Key) -> Any | None:
        entry = self._data.get(hashable(key))
        return None if entry is None else entry[1]

    def put(self, key: Key, value: Any) -> None:
        self._data[hashable(key)] = (key, value)

    def delete(self, key: Key) -> None:
        self._data.pop(hashable(key), None)

    def items(self) -> Iterator[tuple[Key, Any]]:
        return iter(list(self._data.values()))

    def __len__(self) -> int:
        return len(self._data)

    def flush(self) -> None:
        pass


class InMemoryWindowStore:
    def __init__(self, name: str) -> None:
        self.name = name
        self._data: dict[Any, tuple[Key, dict[tuple[int, int], Any]]] = {}

    def get(self, key: Key, start: int, end: int) -> Any | None:
        entry = self._data.get(hashable(key))
        return None if entry is None else entry[1].get((start, end))

    def put(self, key: Key, start: int, end: int, value: Any) -> None:
        hk = hashable(key)
        entry = self._data.get(hk)
        if entry is None:
            entry = self._data[hk] = (key, {})
        entry[1][(start, end)] = value

    def delete(self, key: Key, start: int, end: int) -> None:
        hk = hashable(key)
        entry = self._data.get(hk)
        if entry is not None:
            entry[1].pop((start, end), None)
            if not entry[1]:
                del self._data[hk]

    def windows(self, key: Key) -> Iterator[tuple[int, int, Any]]:
        entry = self._data.get(hashable(key))
        if entry is None:
            return iter(())
        return iter([(s, e, v) for (s, e), v in sorted(entry[1].items(), key=lambda kv: kv[0])])

    def items(self) -> Iterator[tuple[Key, int, int, Any]]:
        return iter([(key, s, e, v) for key, wins in self._data.values() for (s, e), v in sorted(wins.items())])

    def expire(self, end_before: int) -> list[tuple[Key, int, int, Any]]:
        gone = [(key, s, e, v) for key, s, e, v in self.items() if e < end_before]
        for key, s, e, _ in gone:
            self.delete(key, s, e)
        return gone

    def __len__(self) -> int:
        return sum(len(w) for _, w in self._data.values())

    def flush(self) -> None:
        pass


class InMemoryStateStores:
    """Stores that live as long as the query object (conformance runs, unit tests, push queries)."""

    def __init__(self) -> None:
        self.stores: dict[str, Any] = {}

    def key_value(self, name: str) -> KeyValueStore:
        return self.stores.setdefault(name, InMemoryKeyValueStore(name))

    def window(self, name: str) -> WindowStore:
        return self.stores.setdefault(name, InMemoryWindowStore(name))

    def flush(self) -> None:
        for store in self.stores.values():
            store.flush()


# ---------------------------------------------------------------- a codec for durable stores
def _tag(value: Any) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return {"i": str(value)}  # exact beyond 2**53
    if isinstance(value, float):
        return {"f": repr(value)}
    if isinstance(value, Decimal):
        return {"d": str(value)}
    if isinstance(value, bytes):
        return {"b": base64.b64encode(value).decode()}
    if isinstance(value, dt.datetime):
        return {"ts": value.isoformat()}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    if isinstance(value, dt.time):
        return {"time": value.isoformat()}
    if isinstance(value, tuple):
        return {"t": [_tag(v) for v in value]}
    if isinstance(value, list):
        return [_tag(v) for v in value]
    if isinstance(value, dict):
        return {"m": [[_tag(k), _tag(v)] for k, v in value.items()]}
    raise TypeError(f"cannot store a {type(value).__name__} in a state store")


def _untag(obj: Any) -> Any:
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, list):
        return [_untag(v) for v in obj]
    ((kind, raw),) = obj.items()
    if kind == "i":
        return int(raw)
    if kind == "f":
        return float(raw)
    if kind == "d":
        return Decimal(raw)
    if kind == "b":
        return base64.b64decode(raw)
    if kind == "ts":
        return dt.datetime.fromisoformat(raw)
    if kind == "date":
        return dt.date.fromisoformat(raw)
    if kind == "time":
        return dt.time.fromisoformat(raw)
    if kind == "t":
        return tuple(_untag(v) for v in raw)
    if kind == "m":
        return {_untag(k): _untag(v) for k, v in raw}
    raise ValueError(f"unknown state tag {kind!r}")


def encode(value: Any) -> bytes:
    """Plain data -> bytes that `decode` turns back into an equal value (types kept exactly)."""
    return json.dumps(_tag(value), separators=(",", ":")).encode()


def decode(data: bytes) -> Any:
    return _untag(json.loads(data))
