"""The Serde interface shared by all formats."""

from __future__ import annotations

from typing import Any

from ..types import SqlType


class Serde:
    """Bytes <-> a list of column values (None for a null/tombstone record)."""

    def __init__(self, columns: list[tuple[str, SqlType]]) -> None:
        self.columns = columns

    def deserialize(self, data: bytes | None) -> list[Any] | None:
        raise NotImplementedError

    def serialize(self, values: list[Any] | None) -> bytes | None:
        raise NotImplementedError
