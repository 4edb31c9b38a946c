"""The stalled-partition watchdog's clock: how long a partition has had data waiting with no progress."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass
class StallWatch:
    """A partition is stalled when data has waited longer than `window` seconds with no batch scored.

    The clock starts when data becomes available (lag seen after none) or at the last progress, never at
    the last progress before an idle spell: a partition idle for five minutes that receives three records
    is not "stalled for 298 s" a second later.
    """

    window: float
    waiting_since: dict[Hashable, float] = field(default_factory=dict)

    def observe(self, partition: Hashable, lag: int, now: float) -> float | None:
        """Seconds `partition` has been stalled when over the window, else None (`now` from a monotonic clock)."""
        if lag <= 0:
            self.waiting_since.pop(partition, None)
            return None
        waited = now - self.waiting_since.setdefault(partition, now)
        return waited if waited > self.window else None

    def progressed(self, partition: Hashable, now: float) -> None:
        """A batch of `partition` was scored: whatever still waits has waited since now."""
        self.waiting_since[partition] = now
