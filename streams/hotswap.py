"""Which model scores the next batch: load, warm up and switch atomically; fall back when a new one fails.

The agent reads `holder.current` once per batch, and a `ScoringModel` is immutable and fully loaded
before it is assigned, so no event is ever scored by a half-loaded model and a switch needs no restart
or rebalance. A new version may read other input columns than the last (a model trained on a newer
schema): the pipeline decodes each batch for the model it reads here, with a layout per (schema, model).

"Better wrong than late": a new production version that cannot be loaded, or that scores a full batch
slower than the budget (at warm-up, or on three batches in a row after the switch), is refused or rolled
back to the previous version; the refusal is counted and logged and the same (version, threshold
version) is not tried again by this worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import numpy as np

from streams import metrics
from streams.modelsource import ModelSource, ScoringModel

logger = logging.getLogger(__name__)

OVER_BUDGET_BATCHES = 3


class ModelHolder:
    def __init__(
        self, source: ModelSource, budget_seconds: float, warmup_rows: int = 1000, shadow: str = "off"
    ) -> None:
        self.source = source
        self.budget = budget_seconds
        self.warmup_rows = warmup_rows
        self.shadow_mode = shadow
        self.current: ScoringModel | None = None
        self.previous: ScoringModel | None = None
        self.shadow: ScoringModel | None = None
        self.refused: set[tuple[int, int | None]] = set()
        self._over_budget = 0
        self._lock = asyncio.Lock()

    def load_initial(self) -> ScoringModel:
        """Production at startup (blocking); there is nothing to fall back to, so a failure is fatal."""
        model = self.source.load(None)
        seconds = self.warm_up(model)
        if seconds > self.budget:
            logger.warning(
                "%s scores %d rows in %.1f ms, over the %.1f ms budget; no previous version to keep",
                model.label,
                self.warmup_rows,
                seconds * 1e3,
                self.budget * 1e3,
            )
        self._set(model)
        return model

    def warm_up(self, model: ScoringModel) -> float:
        """Score a full batch of synthetic rows a few times; the best time is the model's batch cost.

        The rows are as wide as the model's own inputs: a new version may read other columns than the last.
        """
        x = np.random.default_rng(0).normal(size=(self.warmup_rows, len(model.feature_names)))
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            model.score(x)
            best = min(best, time.perf_counter() - start)
        return best

    def _set(self, model: ScoringModel) -> None:
        self.previous, self.current = self.current, model
        self._over_budget = 0
        metrics.set_model(model.name, model.version)
        logger.info("scoring with %s", model.label)

    async def switch_to(self, version: int, threshold_version: int | None = None) -> bool:
        """Load `version` off the event loop, warm it up, and make it current if it is fit; True if switched."""
        async with self._lock:
            current = self.current
            if current is not None and (current.version, current.threshold_version) == (version, threshold_version):
                return False
            if (version, threshold_version) in self.refused:
                return False
            loop = asyncio.get_running_loop()
            try:
                model = await loop.run_in_executor(None, self.source.load, version)
                seconds = await loop.run_in_executor(None, self.warm_up, model)
            except Exception as error:
                self._refuse(
                    version,
                    threshold_version,
                    "load",
                    f"could not load {self.source.name}:{version}: {error!r}; keeping "
                    f"{current.label if current else 'nothing'}",
                )
                return False
            if current is not None and seconds > self.budget:
                self._refuse(
                    version,
                    threshold_version,
                    "budget",
                    f"{model.label} scores {self.warmup_rows} rows in {seconds * 1e3:.1f} ms, over the "
                    f"{self.budget * 1e3:.1f} ms budget; keeping {current.label}",
                )
                return False
            self._set(model)
            return True

    def _refuse(self, version: int, threshold_version: int | None, reason: str, message: str) -> None:
        self.refused.add((version, threshold_version))
        metrics.MODEL_FALLBACKS.labels(reason).inc()
        logger.warning("model fallback (%s): %s", reason, message)

    def observe(self, model: ScoringModel, seconds: float, rows: int) -> None:
        """After each batch: roll back a new version that keeps scoring full batches over budget.

        Only batches of at least half the full size count: a small batch's time is mostly fixed cost, and
        scaled up to a full batch it would make any model look over budget at a trickle of events.
        """
        if model is not self.current or self.previous is None or rows * 2 < self.warmup_rows:
            return
        per_full_batch = seconds * self.warmup_rows / rows
        self._over_budget = self._over_budget + 1 if per_full_batch > self.budget else 0
        if self._over_budget >= OVER_BUDGET_BATCHES:
            previous = self.previous
            self._refuse(
                model.version,
                model.threshold_version,
                "budget",
                f"{model.label} took {per_full_batch * 1e3:.1f} ms per full batch "
                f"{OVER_BUDGET_BATCHES} times; back to {previous.label}",
            )
            self._set(previous)
            self.previous = None

    async def refresh_shadow(self, candidate: Callable[[], int | None] | None = None) -> None:
        """Load the shadow model the settings ask for, if it changed."""
        if self.shadow_mode == "off":
            return
        loop = asyncio.get_running_loop()
        try:
            if self.shadow_mode == "candidate":
                version = await loop.run_in_executor(None, candidate or self.source.newest_candidate)
            else:
                version = int(self.shadow_mode)
            if version is None or (self.shadow is not None and self.shadow.version == version):
                return
            model = await loop.run_in_executor(None, self.source.load, version)
            await loop.run_in_executor(None, self.warm_up, model)
        except Exception as error:
            logger.warning("shadow model not loaded: %r", error)
            return
        self.shadow = model
        logger.info("shadow scoring with %s", model.label)
