"""ModelHolder's rules for switching, refusing and rolling back models: pure logic, no server."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from streams import metrics
from streams.hotswap import OVER_BUDGET_BATCHES, ModelHolder
from streams.modelsource import ScoringModel

FULL_BATCH = 1000


def fallbacks(reason: str) -> float:
    return metrics.MODEL_FALLBACKS.labels(reason)._value.get()


class Versions:
    """A model source whose versions score with a constant; `slow` ones sleep, `broken` ones fail to load."""

    name = "m"

    def __init__(self, production: int = 1, slow: frozenset[int] = frozenset(), broken: frozenset[int] = frozenset()):
        self.production_version, self.slow, self.broken = production, slow, broken

    def production(self) -> tuple[int, int]:
        return self.production_version, 1

    def load(self, version: int | None = None) -> ScoringModel:
        version = self.production_version if version is None else version
        if version in self.broken:
            raise OSError(f"version {version} is corrupted")

        def score_matrix(x: np.ndarray, version: int = version) -> np.ndarray:
            if version in self.slow:
                time.sleep(0.02)
            return np.full(len(x), float(version))

        return ScoringModel(self.name, version, 0.5, 1, "constant", None, score_matrix)

    def newest_candidate(self) -> int | None:
        return None


def holder(source: Versions, budget: float = 0.01) -> ModelHolder:
    h = ModelHolder(source, budget, warmup_rows=FULL_BATCH)
    h.load_initial()
    return h


def test_a_new_version_is_loaded_warmed_and_swapped_in_whole() -> None:
    h = holder(Versions())
    first = h.current
    assert asyncio.run(h.switch_to(2, 1)) is True
    assert (h.current.version, h.previous) == (2, first)
    assert h.current.score(np.zeros((3, 2)))[0].tolist() == [2.0, 2.0, 2.0]
    assert asyncio.run(h.switch_to(2, 1)) is False  # already current: nothing to do


def test_a_version_that_cannot_load_is_refused_once_and_the_current_one_kept() -> None:
    h = holder(Versions(broken=frozenset({2})))
    before = fallbacks("load")
    assert asyncio.run(h.switch_to(2, 1)) is False
    assert h.current.version == 1 and fallbacks("load") == before + 1
    assert asyncio.run(h.switch_to(2, 1)) is False  # not tried again
    assert fallbacks("load") == before + 1


def test_a_version_over_budget_at_warm_up_is_refused() -> None:
    h = holder(Versions(slow=frozenset({2})))
    before = fallbacks("budget")
    assert asyncio.run(h.switch_to(2, 1)) is False
    assert h.current.version == 1 and fallbacks("budget") == before + 1


def test_full_batches_over_budget_roll_back_and_small_ones_do_not() -> None:
    h = holder(Versions())
    asyncio.run(h.switch_to(2, 1))
    new = h.current
    # A trickle: 10-row batches at 1 ms each would be 100 ms per full batch if scaled up; they are not judged.
    for _ in range(OVER_BUDGET_BATCHES * 2):
        h.observe(new, 0.001, 10)
    assert h.current is new
    # Full batches over the 10 ms budget, but not enough in a row: one under budget resets the count.
    for _ in range(OVER_BUDGET_BATCHES - 1):
        h.observe(new, 0.05, FULL_BATCH)
    h.observe(new, 0.001, FULL_BATCH)
    assert h.current is new
    before = fallbacks("budget")
    for _ in range(OVER_BUDGET_BATCHES):
        h.observe(new, 0.05, FULL_BATCH // 2)  # half a batch in 50 ms: 100 ms per full batch
    assert h.current.version == 1 and h.previous is None and fallbacks("budget") == before + 1
    assert asyncio.run(h.switch_to(2, 1)) is False  # refused from now on
