"""Durable state stores: one SQLite file per persistent query, backed by one compacted changelog topic per
store, so that a restart (or a second engine process with an empty state directory) has the same state.

Why SQLite (the standard library's sqlite3) rather than RocksDB bindings: it is well kept and ships with
Python (no new dependency, no native wheel to track), and it commits a batch of writes and the input
positions they correspond to in one atomic transaction, which is what exactly-once results need. Its weak
point, lookups per record, does not matter here: operators read and write in-memory maps (the stores of
`state.py`), and SQLite only receives each batch's changes.

How a batch becomes durable (`DurableStateStores.commit`, called by the runtime after the batch's output
is acknowledged and before input offsets are committed):

1. every entry the batch changed goes to its store's changelog topic
   (`_confluent-ksql-<service id>query_<query id>-<store>-changelog`), with a `commit` header numbering
   the commit, a tombstone for a deleted entry;
2. then a checkpoint record (epoch, commit number, input positions) goes to every changelog of the query;
3. then one SQLite transaction writes the same entries and the same checkpoint.

So the state and the input positions it reflects become durable together, in Kafka and on disk.

Restore (on open): the newest complete commit in Kafka is found from the last record of each changelog (a
checkpoint names its commit; a changelog ending in an entry of commit n proves commit n - 1 complete, since
commits are written one after the other). If the SQLite file holds exactly that checkpoint (same epoch and
commit), it is loaded; otherwise (missing, behind, or left over from another cluster) it is rebuilt from the
changelogs: entries of commits up to the checkpoint are applied in order, the tail of a commit that never
completed is ignored. Kafka is the source of truth: with no checkpoint in Kafka the state starts empty.

Known limit: compaction could, in principle, remove an entry's older record while its newest record belongs
to a commit that never completed; a restore from the changelogs alone before the commit is redone would then
miss that entry. Kafka never compacts the active segment, and the embedded broker does not compact.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from fraudstream.kafka import admin_client, end_offsets, producer_config

from .materialization import Materialization, materializes
from .state import InMemoryKeyValueStore, InMemoryWindowStore, Key, decode, encode, hashable
from .topic_reader import read_window

logger = logging.getLogger(__name__)

#: The changelog record key of checkpoints (entry keys are JSON arrays, so they never collide with it).
CHECKPOINT_KEY = encode("checkpoint")
COMMIT_HEADER = "commit"
#: How long to wait for the changelog records of one commit to be acknowledged.
ACK_TIMEOUT = 60.0

Positions = dict[str, dict[int, int]]  # source topic -> partition -> next offset to read


def changelog_topic(query_group: str, store: str) -> str:
    """ksqlDB's name for a store's changelog: `<query's consumer group>-<store>-changelog`."""
    return f"{query_group}-{store}-changelog"


@dataclass(frozen=True)
class Checkpoint:
    """Which commit a state is at, and the input positions it reflects (None before the first commit)."""

    epoch: str  # names one history of the changelogs: a file from another history is never loaded
    commit: int
    positions: Positions | None

    def encode(self) -> bytes:
        positions = (
            None
            if self.positions is None
            else {t: {str(p): o for p, o in sorted(parts.items())} for t, parts in sorted(self.positions.items())}
        )
        return json.dumps(
            {"epoch": self.epoch, "commit": self.commit, "positions": positions}, separators=(",", ":")
        ).encode()

    @classmethod
    def decode(cls, data: bytes | str) -> Checkpoint:
        raw = json.loads(data)
        positions = raw.get("positions")
        return cls(
            str(raw["epoch"]),
            int(raw["commit"]),
            None
            if positions is None
            else {t: {int(p): int(o) for p, o in parts.items()} for t, parts in positions.items()},
        )


# ---------------------------------------------------------------- in-memory stores that remember changes
class TrackedKeyValueStore(InMemoryKeyValueStore):
    """An in-memory key-value store that remembers which keys changed since the last commit."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.dirty: dict[Any, Key] = {}

    def put(self, key: Key, value: Any) -> None:
        hk = hashable(key)
        self._data[hk] = (key, value)
        self.dirty[hk] = key

    def delete(self, key: Key) -> None:
        hk = hashable(key)
        if self._data.pop(hk, None) is not None:
            self.dirty[hk] = key

    def load(self, key: Key, value: Any | None) -> None:
        """Set an entry from durable storage (not a change)."""
        if value is None:
            self._data.pop(hashable(key), None)
        else:
            self._data[hashable(key)] = (key, value)

    def changes(self) -> Iterator[tuple[Key, Any | None]]:
        """(key, value, or None when deleted) of every entry changed since the last commit."""
        for hk, key in self.dirty.items():
            entry = self._data.get(hk)
            yield key, None if entry is None else entry[1]


class TrackedWindowStore(InMemoryWindowStore):
    """An in-memory window store that remembers which windows changed since the last commit."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.dirty: dict[tuple[Any, int, int], Key] = {}

    def put(self, key: Key, start: int, end: int, value: Any) -> None:
        hk = hashable(key)  # once: puts are the hot path of windowed aggregations
        entry = self._data.get(hk)
        if entry is None:
            entry = self._data[hk] = (key, {})
        entry[1][(start, end)] = value
        self.dirty[(hk, start, end)] = key

    def delete(self, key: Key, start: int, end: int) -> None:
        super().delete(key, start, end)
        self.dirty[(hashable(key), start, end)] = key

    def load(self, key: Key, start: int, end: int, value: Any | None) -> None:
        if value is None:
            super().delete(key, start, end)
        else:
            super().put(key, start, end, value)

    def changes(self) -> Iterator[tuple[Key, int, int, Any | None]]:
        for (_, start, end), key in self.dirty.items():
            yield key, start, end, self.get(key, start, end)


# ---------------------------------------------------------------- the SQLite file
_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (store TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,
                               PRIMARY KEY (store, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS windows (store TEXT NOT NULL, key BLOB NOT NULL, wstart INTEGER NOT NULL,
                                    wend INTEGER NOT NULL, value BLOB NOT NULL,
                                    PRIMARY KEY (store, key, wstart, wend)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoint (id INTEGER PRIMARY KEY CHECK (id = 0), body TEXT NOT NULL);
"""


class StateFile:
    """The SQLite file of one query's stores: entries per store and the checkpoint they are at."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # used by the thread that restores, then by the query's thread: never at the same time
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # a process crash loses nothing; the changelog covers the OS
        self.db.executescript(_SCHEMA)

    def checkpoint(self) -> Checkpoint | None:
        row = self.db.execute("SELECT body FROM checkpoint WHERE id = 0").fetchone()
        return None if row is None else Checkpoint.decode(row[0])

    def kv_rows(self) -> Iterator[tuple[str, Key, Any]]:
        for store, key, value in self.db.execute("SELECT store, key, value FROM kv"):
            yield store, decode(key), decode(value)

    def window_rows(self) -> Iterator[tuple[str, Key, int, int, Any]]:
        for store, key, start, end, value in self.db.execute("SELECT store, key, wstart, wend, value FROM windows"):
            yield store, decode(key), start, end, decode(value)

    def kv_get(self, store: str, key: Key) -> Any | None:
        row = self.db.execute("SELECT value FROM kv WHERE store = ? AND key = ?", (store, encode(key))).fetchone()
        return None if row is None else decode(row[0])

    def window_get(self, store: str, key: Key, start: int, end: int) -> Any | None:
        row = self.db.execute(
            "SELECT value FROM windows WHERE store = ? AND key = ? AND wstart = ? AND wend = ?",
            (store, encode(key), start, end),
        ).fetchone()
        return None if row is None else decode(row[0])

    def write(
        self,
        checkpoint: Checkpoint,
        kv: list[tuple[str, bytes, bytes | None]],
        windows: list[tuple[str, bytes, int, int, bytes | None]],
        replace: bool = False,
    ) -> None:
        """One transaction: the changed entries (value None deletes) and the checkpoint; `replace` empties
        the file first (a rebuild)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            if replace:
                db.execute("DELETE FROM kv")
                db.execute("DELETE FROM windows")
            db.executemany(
                "INSERT OR REPLACE INTO kv (store, key, value) VALUES (?, ?, ?)", [e for e in kv if e[2] is not None]
            )
            db.executemany("DELETE FROM kv WHERE store = ? AND key = ?", [e[:2] for e in kv if e[2] is None])
            db.executemany(
                "INSERT OR REPLACE INTO windows (store, key, wstart, wend, value) VALUES (?, ?, ?, ?, ?)",
                [e for e in windows if e[4] is not None],
            )
            db.executemany(
                "DELETE FROM windows WHERE store = ? AND key = ? AND wstart = ? AND wend = ?",
                [e[:4] for e in windows if e[4] is None],
            )
            db.execute("INSERT OR REPLACE INTO checkpoint (id, body) VALUES (0, ?)", (checkpoint.encode().decode(),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()


class StateReader:
    """Read-only access to a query's committed state (pull queries), on its own connection so that readers
    never wait for, or see half of, the query's current batch."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _rows(self, sql: str, args: tuple) -> list[tuple]:
        """The rows of a query on the committed state; none before the first commit created the file."""
        if not self.path.exists():
            return []
        db = sqlite3.connect(self.path, timeout=30)
        try:
            return db.execute(sql, args).fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):  # the query's first commit is creating the file right now
                return []
            raise
        finally:
            db.close()

    def get(self, store: str, key: Key) -> Any | None:
        rows = self._rows("SELECT value FROM kv WHERE store = ? AND key = ?", (store, encode(key)))
        return decode(rows[0][0]) if rows else None

    def items(self, store: str) -> list[tuple[Key, Any]]:
        return [(decode(k), decode(v)) for k, v in self._rows("SELECT key, value FROM kv WHERE store = ?", (store,))]

    def windows(self, store: str, key: Key | None = None) -> list[tuple[Key, int, int, Any]]:
        """Every window of `key` (of every key when None), ordered by key then window start."""
        if key is None:
            rows = self._rows(
                "SELECT key, wstart, wend, value FROM windows WHERE store = ? ORDER BY key, wstart, wend", (store,)
            )
        else:
            rows = self._rows(
                "SELECT key, wstart, wend, value FROM windows WHERE store = ? AND key = ? ORDER BY wstart, wend",
                (store, encode(key)),
            )
        return [(decode(k), s, e, decode(v)) for k, s, e, v in rows]


# ---------------------------------------------------------------- the changelog topics
def _entry_key(key: Key, window: tuple[int, int] | None) -> bytes:
    return encode(["kv", key] if window is None else ["w", key, window[0], window[1]])


class Changelog:
    """The changelog topics of one query's stores (one partition each, compacted, created explicitly)."""

    def __init__(
        self, bootstrap: str, query_group: str, create_topic: Callable[[str, int, dict[str, str]], None]
    ) -> None:
        self.bootstrap = bootstrap
        self.group = query_group
        self.create_topic = create_topic
        self._producer: Producer | None = None
        self._failures: list[KafkaError] = []
        self._created: set[str] = set()

    def topic(self, store: str) -> str:
        return changelog_topic(self.group, store)

    def existing(self) -> list[str]:
        """This query's changelog topics on the cluster."""
        prefix, suffix = f"{self.group}-", "-changelog"
        topics = admin_client(self.bootstrap).list_topics(timeout=10).topics
        return sorted(t for t in topics if t.startswith(prefix) and t.endswith(suffix))

    def ensure(self, store: str) -> str:
        topic = self.topic(store)
        if topic not in self._created:
            self.create_topic(topic, 1, {"cleanup.policy": "compact"})
            self._created.add(topic)
        return topic

    # ------------------------------------------------------------ writing
    def _delivered(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self._failures.append(err)

    def _produce(self, topic: str, key: bytes, value: bytes | None, headers: list | None = None) -> None:
        if self._producer is None:
            self._producer = Producer(
                producer_config(
                    self.bootstrap, linger_ms=5, batch_num_messages=10_000, queue_buffering_max_messages=1_000_000
                )
            )
        while True:
            try:
                self._producer.produce(topic, value, key, headers=headers, on_delivery=self._delivered)
                return
            except BufferError:
                self._producer.poll(0.05)

    def _await(self) -> None:
        assert self._producer is not None
        remaining = self._producer.flush(ACK_TIMEOUT)
        if remaining or self._failures:
            failure = self._failures[0] if self._failures else KafkaError(KafkaError._MSG_TIMED_OUT)
            self._failures.clear()
            # The caller writes the whole commit again. A new producer gets a new id: an idempotent producer's
            # errors after a broker restart (PRODUCER_FENCED, out-of-order sequence) are fatal to that producer.
            self._producer.purge()
            self._producer = None
            raise KafkaException(failure)

    def write(
        self, checkpoint: Checkpoint, entries: dict[str, list[tuple[bytes, bytes | None]]], stores: list[str]
    ) -> None:
        """Every changed entry, acknowledged, then the checkpoint to every store's changelog, acknowledged."""
        headers = [(COMMIT_HEADER, str(checkpoint.commit).encode())]
        self._failures.clear()
        for store, records in entries.items():
            topic = self.ensure(store)
            for key, value in records:
                self._produce(topic, key, value, headers)
        if self._producer is not None:
            self._await()
        body = checkpoint.encode()
        for store in stores:
            self._produce(self.ensure(store), CHECKPOINT_KEY, body)
        self._await()

    # ------------------------------------------------------------ reading
    def committed(self) -> tuple[Checkpoint | None, bool]:
        """(the newest checkpoint among the changelogs' last records, whether some changelog ends in entries
        of a commit that never completed; `read` must then scan them)."""
        best: Checkpoint | None = None
        tail = False
        for topic in self.existing():
            end = end_offsets(self.bootstrap, topic).get(0, 0)
            if end == 0:
                continue
            last = read_window(self.bootstrap, topic, {0: end - 1})[-1]
            if last.key() != CHECKPOINT_KEY:
                tail = True
                continue
            found = Checkpoint.decode(last.value())
            if best is None or found.commit > best.commit:
                best = found
        return best, tail

    def read(self) -> tuple[Checkpoint | None, dict[str, dict[bytes, bytes | None]], dict[str, list[bytes]]]:
        """(the newest complete checkpoint; per store, the latest record per entry key up to it; per store, the
        entry keys written after the store's last checkpoint, by a commit that never completed)."""
        pending: dict[str, list[tuple[int, bytes, bytes | None]]] = {}
        tails: dict[str, list[bytes]] = {}
        checkpoints: list[Checkpoint] = []
        for topic in self.existing():
            store = topic[len(self.group) + 1 : -len("-changelog")]
            records = pending.setdefault(store, [])
            tail: list[bytes] = []
            for m in read_window(self.bootstrap, topic, {0: 0}):
                if m.key() == CHECKPOINT_KEY:
                    checkpoints.append(Checkpoint.decode(m.value()))
                    tail = []
                else:
                    records.append((_commit_of(m), m.key(), m.value()))
                    tail.append(m.key())
            if tail:
                tails[store] = tail
        complete = max(checkpoints, key=lambda c: c.commit, default=None)
        limit = complete.commit if complete is not None else 0
        state: dict[str, dict[bytes, bytes | None]] = {}
        for store, records in pending.items():
            entries = state.setdefault(store, {})
            for commit, key, value in records:
                if commit <= limit:
                    entries[key] = value
        return complete, state, tails

    def delete(self, delete_topic: Callable[[str], None]) -> None:
        for topic in self.existing():
            delete_topic(topic)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)


def _commit_of(m: Any) -> int:
    for k, v in m.headers() or []:
        if k == COMMIT_HEADER and v is not None:
            return int(v)
    raise ValueError(f"changelog record without a {COMMIT_HEADER} header in {m.topic()}@{m.offset()}")


# ---------------------------------------------------------------- the factory
class DurableStateStores:
    """`StateStores` for one persistent query: in-memory stores, restored on open and made durable by
    `commit(positions)`; `rollback()` forgets uncommitted changes (a failed batch)."""

    def __init__(self, path: Path, changelog: Changelog | None = None) -> None:
        self.path = path
        self.changelog = changelog
        self.stores: dict[str, TrackedKeyValueStore | TrackedWindowStore] = {}
        self._file: StateFile | None = None
        self._loaded_kv: dict[str, list[tuple[Key, Any]]] = {}
        self._loaded_windows: dict[str, list[tuple[Key, int, int, Any]]] = {}
        self._repair: dict[str, list[list[Any]]] = {}  # store -> decoded entry keys to write at the next commit
        self.checkpoint = self._restore()

    @property
    def positions(self) -> Positions | None:
        """The input positions the state reflects (None: no input processed yet)."""
        return self.checkpoint.positions

    def reader(self) -> StateReader:
        return StateReader(self.path)

    # ------------------------------------------------------------ StateStores
    def key_value(self, name: str) -> TrackedKeyValueStore:
        store = self.stores.get(name)
        if store is None:
            store = self.stores[name] = TrackedKeyValueStore(name)
            for key, value in self._loaded_kv.pop(name, []):
                store.load(key, value)
            for _, key in self._repair.pop(name, []):
                store.dirty[hashable(key)] = key
        assert isinstance(store, TrackedKeyValueStore), f"store {name} is a window store"
        return store

    def window(self, name: str) -> TrackedWindowStore:
        store = self.stores.get(name)
        if store is None:
            store = self.stores[name] = TrackedWindowStore(name)
            for key, start, end, value in self._loaded_windows.pop(name, []):
                store.load(key, start, end, value)
            for _, key, start, end in self._repair.pop(name, []):
                store.dirty[(hashable(key), start, end)] = key
        assert isinstance(store, TrackedWindowStore), f"store {name} is a key-value store"
        return store

    # ------------------------------------------------------------ restore
    def _open_file(self) -> StateFile:
        if self._file is None:
            self._file = StateFile(self.path)
        return self._file

    def _restore(self) -> Checkpoint:
        local = self._open_file().checkpoint() if self.path.exists() else None
        if self.changelog is None:
            remote, tail = local, False
        else:
            remote, tail = self.changelog.committed()
        if remote is not None and local == remote and not tail:
            self._load_file()
            logger.info("state %s: loaded at commit %d from %s", self.path.stem, local.commit, self.path)
            return local
        fresh = Checkpoint(uuid.uuid4().hex, 0, None)
        if remote is None and not tail:
            if local is not None:
                logger.warning(
                    "state %s: %s is at commit %d but no changelog has a checkpoint: starting empty",
                    self.path.stem,
                    self.path,
                    local.commit,
                )
                self._open_file().write(fresh, [], [], replace=True)
            return fresh
        assert self.changelog is not None
        checkpoint, entries, tails = self.changelog.read()
        kv_rows: list[tuple[str, bytes, bytes | None]] = []
        window_rows: list[tuple[str, bytes, int, int, bytes | None]] = []
        for store, records in entries.items():
            for raw_key, raw_value in records.items():
                if raw_value is None:
                    continue
                kind, key, *window = decode(raw_key)
                if kind == "kv":
                    kv_rows.append((store, encode(key), raw_value))
                else:
                    window_rows.append((store, encode(key), window[0], window[1], raw_value))
        # the entries of a commit that never completed are written again by the next commit (with their
        # restored values, or as tombstones), so that they can never be taken for part of a later commit
        for store, raw_keys in tails.items():
            self._repair[store] = [decode(k) for k in dict.fromkeys(raw_keys)]
        checkpoint = checkpoint or fresh
        self._open_file().write(checkpoint, kv_rows, window_rows, replace=True)
        self._load_file()
        logger.info(
            "state %s: rebuilt from its changelogs at commit %d (%d entries, %d to repair)",
            self.path.stem,
            checkpoint.commit,
            len(kv_rows) + len(window_rows),
            sum(len(k) for k in self._repair.values()),
        )
        return checkpoint

    def _load_file(self) -> None:
        f = self._open_file()
        for store, key, value in f.kv_rows():
            self._loaded_kv.setdefault(store, []).append((key, value))
        for store, key, start, end, value in f.window_rows():
            self._loaded_windows.setdefault(store, []).append((key, start, end, value))

    # ------------------------------------------------------------ commit / rollback
    def commit(self, positions: Positions) -> None:
        """Make every change since the last commit durable, with the input positions it reflects."""
        checkpoint = Checkpoint(self.checkpoint.epoch, self.checkpoint.commit + 1, positions)
        for name, keys in list(self._repair.items()):  # stores the query has not asked for (yet)
            (self.key_value if keys[0][0] == "kv" else self.window)(name)
        kv: list[tuple[str, bytes, bytes | None]] = []
        windows: list[tuple[str, bytes, int, int, bytes | None]] = []
        entries: dict[str, list[tuple[bytes, bytes | None]]] = {}
        for name, store in self.stores.items():
            records = entries.setdefault(name, [])
            if isinstance(store, TrackedKeyValueStore):
                for key, value in store.changes():
                    raw = None if value is None else encode(value)
                    kv.append((name, encode(key), raw))
                    records.append((_entry_key(key, None), raw))
            else:
                for key, start, end, value in store.changes():
                    raw = None if value is None else encode(value)
                    windows.append((name, encode(key), start, end, raw))
                    records.append((_entry_key(key, (start, end)), raw))
        if self.changelog is not None:
            self.changelog.write(checkpoint, entries, sorted(self.stores))
        self._open_file().write(checkpoint, kv, windows)
        for store in self.stores.values():
            store.dirty.clear()
        self.checkpoint = checkpoint

    def rollback(self) -> None:
        """Forget every change since the last commit (the in-memory stores go back to the committed state)."""
        f = self._open_file() if self.path.exists() else None
        for name, store in self.stores.items():
            if isinstance(store, TrackedKeyValueStore):
                for key, _ in list(store.changes()):
                    store.load(key, f.kv_get(name, key) if f is not None else None)
            else:
                for key, start, end, _ in list(store.changes()):
                    store.load(key, start, end, f.window_get(name, key, start, end) if f is not None else None)
            store.dirty.clear()

    def close(self) -> None:
        if self.changelog is not None:
            self.changelog.close()
        if self._file is not None:
            self._file.close()
            self._file = None

    def destroy(self, delete_topic: Callable[[str], None] | None = None) -> None:
        """TERMINATE: close, delete the file and (when given a way to) the changelog topics."""
        self.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        if self.changelog is not None and delete_topic is not None:
            self.changelog.delete(delete_topic)


# ---------------------------------------------------------------- what a runtime does with a query's state
class QueryState:
    """A persistent query's durable state as a runtime drives it, batch by batch: keep a TABLE sink's rows
    for pull queries, commit after the batch's output is acknowledged (with the input positions after the
    batch), roll a failed batch back. A query that uses no store (a stateless stream query) has nothing
    to commit."""

    def __init__(self, query: Any, stores: DurableStateStores) -> None:
        self.query = query
        self.stores = stores
        window = getattr(getattr(query, "plan", None), "window", None)  # a windowed aggregation's WindowSpec
        retention = getattr(window, "retention_ms", None)
        self.materialization = Materialization(query.sink, stores, retention) if materializes(query.sink) else None

    @property
    def active(self) -> bool:
        return bool(self.stores.stores)

    def includes(self, positions: Positions) -> bool:
        """Whether the committed state already reflects every input before `positions`."""
        return self.active and self.stores.positions == positions

    def record(self, keys: list[bytes | None], values: list[bytes | None], timestamps: list[int]) -> None:
        """A batch's output records (all of them, also those a recovery skips as already produced)."""
        if self.materialization is not None:
            self.materialization.apply(keys, values, timestamps)

    def commit(self, positions: Positions) -> None:
        if self.active:
            self.stores.commit(positions)

    def rollback(self) -> bool:
        """Forget a failed batch's changes; False when the query cannot reload its own view of the state
        (then it must not go on: a re-evaluated batch would be applied twice)."""
        if not self.active:
            return True
        self.stores.rollback()
        reload = getattr(self.query, "reload_state", None)
        if reload is None:
            return self.materialization is not None and len(self.stores.stores) == 1  # only the view: nothing cached
        reload()
        return True
