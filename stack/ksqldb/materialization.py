"""A TABLE sink's materialised state: the latest row per key of everything its query produced, kept in the
query's state stores by the runtime, so that pull queries (pull.py) can read it."""

from __future__ import annotations

from .metastore import DataSource
from .state import StateStores
from .windows import WindowInfo, decode_windowed_key

#: The store holding a table sink's latest row per key (ksqlDB's materialised table store).
MATERIALIZED = "Materialize"


class Materialization:
    """A TABLE sink's latest row per key, kept from the records its query produces: key bytes -> [value
    bytes, timestamp] (per window for windowed tables); a tombstone deletes the row. Windows older than
    the query's retention (behind the newest output timestamp) are dropped, as from ksqlDB's window store."""

    SWEEP_EVERY = 10_000  # output records between retention sweeps

    def __init__(self, sink: DataSource, stores: StateStores, retention_ms: int | None = None) -> None:
        self.window: WindowInfo | None = sink.window
        self.rows = stores.key_value(MATERIALIZED) if self.window is None else None
        self.windows = stores.window(MATERIALIZED) if self.window is not None else None
        self.retention_ms = retention_ms
        self._newest = -1
        self._since_sweep = 0

    def apply(self, keys: list[bytes | None], values: list[bytes | None], timestamps: list[int]) -> None:
        rows, windows, window = self.rows, self.windows, self.window
        if windows is not None and self.retention_ms is not None and timestamps:
            self._newest = max(self._newest, max(timestamps))
            self._since_sweep += len(timestamps)
            if self._since_sweep >= self.SWEEP_EVERY:
                self._since_sweep = 0
                windows.expire(self._newest - self.retention_ms)
        latest = dict(zip(keys, zip(values, timestamps)))  # only each key's last row of the batch matters
        for key, (value, ts) in latest.items():
            if key is None:
                continue
            if windows is not None:
                assert window is not None
                inner, start, end = decode_windowed_key(key, window)
                if value is None:
                    windows.delete((inner,), start, end)
                else:
                    windows.put((inner,), start, end, [value, ts])
            elif value is None:
                rows.delete((key,))  # type: ignore[union-attr]
            else:
                rows.put((key,), [value, ts])  # type: ignore[union-attr]


def materializes(sink: DataSource) -> bool:
    return sink.kind == "TABLE"
