"""The model registry: versions, stages and thresholds in object storage, stage changes on Kafka.

Everything lives under ``models/`` in the stack's bucket (SeaweedFS by default, any S3 endpoint via
``S3_ENDPOINT_URL``), as plain files so that any S3 tool can inspect it::

    models/<name>/index.json                      versions, stages, history (the only mutable object)
    models/<name>/<version>/artifacts/<file>      the training output folder, file by file (immutable)
    models/<name>/<version>/metrics.json          the test metrics recorded at registration
    models/<name>/<version>/thresholds/<n>.json   threshold versions (a recalibration adds one)

Concurrency: ``index.json`` is updated read-modify-write with a compare-and-swap on its ETag
(``PutObject`` with ``If-Match``, or ``If-None-Match: *`` to create it), retried on 412. SeaweedFS, AWS S3
and MinIO honour these conditions; a store that ignored them would silently lose the guarantee, so the
registry checks it once per process (:meth:`ModelRegistry.check_conditional_writes`). A new version number
is reserved in the index before its files are uploaded, so two registrations never write the same prefix.

Every stage change is published, after the index has changed, to the ``model-updates`` topic (one
partition; key = model name) so running workers can switch models without polling S3. The JSON value::

    {"model": "fraud", "version": 3, "stage": "production", "previous": 2, "previous_stage": "candidate",
     "threshold_version": 1, "at": "2026-...+00:00"}

``previous`` is the version that held ``stage`` before (production events; null otherwise) and
``previous_stage`` the stage this version left. A recalibrated production threshold is published as a
production event of the same version with the new ``threshold_version``. A worker reacts to
``stage == "production"`` by ``ModelRegistry.load(model, version)``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from botocore.exceptions import ClientError

from fraudstream.kafka import ensure_topic
from fraudstream.topics import MODEL_UPDATES_TOPIC, ModelUpdate
from models.artifacts import META_FILE, artifact_files, load_model, model_kind
from models.calibrate import THRESHOLD_FILE, Threshold, recalibrate
from models.datasets import Dataset, DatasetSource, load_dataset, source_from_description
from models.evaluate import CARD_JSON, DEFAULT_ALERT_BUDGET, evaluate
from models.features import has_label, labels
from models.kinds import FraudModel, UnknownKindError, canonical_kind
from models.split import chronological_split, random_split

logger = logging.getLogger(__name__)

PREFIX = "models/"
UPDATES_TOPIC = MODEL_UPDATES_TOPIC  # the registry publishes every stage change there
INDEX = "index.json"
CANDIDATE, PRODUCTION, ARCHIVED = "candidate", "production", "archived"
REGISTERING = "registering"
"""A version whose number is reserved and whose files are being uploaded (left so if that was interrupted)."""
STAGES = (CANDIDATE, PRODUCTION, ARCHIVED)
DEFAULT_METRIC = "average_precision"
GATE_METRICS = ("average_precision", "roc_auc", "recall_at_budget", "f1", "precision", "recall")
"""Metrics the gate can compare; for each, higher is better."""
CAS_ATTEMPTS = 20

T = TypeVar("T")


class RegistryError(Exception):
    """A registry operation that cannot be done as asked (the message says why)."""


class PromotionRefused(RegistryError):
    """The candidate does not beat production on the same held-out data."""

    def __init__(self, message: str, gate: dict[str, Any]) -> None:
        super().__init__(message)
        self.gate = gate


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class LoadedModel:
    name: str
    version: int
    model: FraudModel
    threshold: Threshold
    directory: Path


@dataclass(frozen=True)
class Promotion:
    name: str
    version: int
    previous: int | None
    forced: bool
    gate: dict[str, Any] | None


class ModelRegistry:
    """Register, list, promote, roll back, recalibrate and load model versions (see the module docstring)."""

    def __init__(
        self,
        bucket: str,
        endpoint_url: str | None = None,
        bootstrap_servers: str | None = None,
        cache_dir: str | Path | None = None,
        prefix: str = PREFIX,
    ) -> None:
        from fraudstream.s3 import s3_client

        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.bootstrap_servers = bootstrap_servers
        self.prefix = prefix.rstrip("/") + "/"
        default_cache = os.environ.get("FRAUDSTREAM_MODEL_CACHE", Path.home() / ".cache" / "fraudstream" / "models")
        self.cache_dir = Path(cache_dir or default_cache)
        self.s3 = s3_client(endpoint_url)
        self._producer: Any = None
        self._conditional_checked = False

    @classmethod
    def from_addresses(cls, addresses: Any = None, cache_dir: str | Path | None = None) -> ModelRegistry:
        """The registry of a stack's addresses (default: the environment's, else the embedded stack's)."""
        from fraudstream.config import Addresses

        addresses = addresses or Addresses.from_env()
        return cls(addresses.bucket, addresses.s3_endpoint_url, addresses.bootstrap_servers, cache_dir)

    # object store ------------------------------------------------------------------------------------
    def _key(self, name: str, *parts: Any) -> str:
        return self.prefix + "/".join([name, *(str(p) for p in parts)])

    def _get_json(self, key: str) -> tuple[dict[str, Any] | None, str | None]:
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None, None
            raise
        return json.loads(response["Body"].read()), response["ETag"]

    def _put_json(self, key: str, value: dict[str, Any], **conditions: str) -> str:
        body = (json.dumps(value, indent=2, default=_json_default) + "\n").encode()
        return self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json", **conditions)[
            "ETag"
        ]

    def check_conditional_writes(self) -> None:
        """Fail loudly if the store ignores If-Match (then compare-and-swap would silently not happen)."""
        if self._conditional_checked:
            return
        key = self.prefix + ".conditional-write-probe"
        self._put_json(key, {"probe": 1})
        try:
            self._put_json(key, {"probe": 2}, IfMatch='"00000000000000000000000000000000"')
        except ClientError as error:
            if error.response["ResponseMetadata"]["HTTPStatusCode"] == 412:
                self._conditional_checked = True
                return
            raise
        raise RegistryError(
            f"the object store at {self.endpoint_url} ignores If-Match on PutObject: the "
            "registry's index cannot be updated safely there"
        )

    def _update(self, name: str, change: Callable[[dict[str, Any]], T], create: bool = False) -> T:
        """Apply ``change`` to the index of ``name`` and write it back only if nobody wrote in between."""
        self.check_conditional_writes()
        key = self._key(name, INDEX)
        for _ in range(CAS_ATTEMPTS):
            index, etag = self._get_json(key)
            if index is None:
                if not create:
                    raise RegistryError(f"no model named {name!r} in s3://{self.bucket}/{self.prefix}")
                index = {"name": name, "next_version": 1, "production": None, "production_history": [], "versions": {}}
            result = change(index)
            try:
                self._put_json(key, index, **({"IfMatch": etag} if etag else {"IfNoneMatch": "*"}))
                return result
            except ClientError as error:
                status = error.response["ResponseMetadata"]["HTTPStatusCode"]
                if status not in (409, 412):
                    raise
                logger.info("index of %s changed underneath (HTTP %d); retrying", name, status)
        raise RegistryError(f"index of {name!r} kept changing underneath; gave up after {CAS_ATTEMPTS} attempts")

    def index(self, name: str) -> dict[str, Any]:
        index, _ = self._get_json(self._key(name, INDEX))
        if index is None:
            raise RegistryError(f"no model named {name!r} in s3://{self.bucket}/{self.prefix}")
        return index

    # reading -----------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        found = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"
        ):
            found += [p["Prefix"][len(self.prefix) :].rstrip("/") for p in page.get("CommonPrefixes", [])]
        return sorted(found)

    def versions(self, name: str) -> list[dict[str, Any]]:
        index = self.index(name)
        return [index["versions"][k] for k in sorted(index["versions"], key=int)]

    def version(self, name: str, version: int | str | None = None) -> dict[str, Any]:
        """One version's entry; ``None`` or ``"production"`` means the production version."""
        index = self.index(name)
        number = self._resolve(index, version)
        return index["versions"][str(number)]

    def _resolve(self, index: dict[str, Any], version: int | str | None) -> int:
        if version is None or version == PRODUCTION:
            if index["production"] is None:
                raise RegistryError(f"model {index['name']!r} has no production version yet")
            return int(index["production"])
        try:
            number = int(version)
        except ValueError:
            raise RegistryError(f"version must be a number or 'production', got {version!r}") from None
        if str(number) not in index["versions"]:
            known = ", ".join(sorted(index["versions"], key=int)) or "none"
            raise RegistryError(f"model {index['name']!r} has no version {number} (versions: {known})")
        return number

    def card(self, name: str, version: int) -> dict[str, Any] | None:
        card, _ = self._get_json(self._key(name, version, "artifacts", CARD_JSON))
        return card

    def threshold(self, name: str, version: int, threshold_version: int | None = None) -> Threshold:
        entry = self.version(name, version)
        n = threshold_version or entry["threshold_version"]
        data, _ = self._get_json(self._key(name, version, "thresholds", f"{n}.json"))
        if data is None:
            raise RegistryError(f"{name} version {version} has no threshold version {n}")
        return Threshold.from_dict(data)

    # registering -------------------------------------------------------------------------------------
    def register(self, name: str, artifacts_dir: str | Path, note: str | None = None) -> dict[str, Any]:
        """Upload a training output folder as the next version of ``name``, stage candidate."""
        if not name or "/" in name or name.startswith("."):
            raise RegistryError(f"model name must be non-empty without '/', got {name!r}")
        directory = Path(artifacts_dir)
        for required in (META_FILE, THRESHOLD_FILE):
            if not (directory / required).is_file():
                raise RegistryError(f"{directory} is not a trained model folder: {required} is missing")
        threshold = Threshold.load(directory)
        card = json.loads((directory / CARD_JSON).read_text()) if (directory / CARD_JSON).is_file() else None
        try:
            kind = canonical_kind(model_kind(directory))
        except UnknownKindError as error:
            raise RegistryError(f"{directory}: {error}") from None

        def reserve(index: dict[str, Any]) -> int:
            number = int(index["next_version"])
            index["next_version"] = number + 1
            index["versions"][str(number)] = {
                "version": number,
                "stage": REGISTERING,
                "kind": kind,
                "created_at": _now(),
                "history": [],
            }
            return number

        number = self._update(name, reserve, create=True)
        files: dict[str, str] = {}
        for relative in artifact_files(directory):
            key = self._key(name, number, "artifacts", relative.as_posix())
            with open(directory / relative, "rb") as body:
                files[relative.as_posix()] = self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)["ETag"]
        metrics = (card or {}).get("metrics")
        self._put_json(self._key(name, number, "metrics.json"), metrics or {})
        first = replace(threshold, version=1, model_version=f"{name}:{number}")
        self._put_json(self._key(name, number, "thresholds", "1.json"), first.to_dict())

        def finish(index: dict[str, Any]) -> dict[str, Any]:
            entry = index["versions"][str(number)]
            entry.update(
                stage=CANDIDATE,
                files=files,
                threshold_version=1,
                threshold=first.value,
                metrics=metrics,
                dataset=(card or {}).get("dataset"),
            )
            entry["history"].append(
                {"at": _now(), "event": "registered", "stage": CANDIDATE, **({"note": note} if note else {})}
            )
            return entry

        entry = self._update(name, finish)
        self._publish(name, number, CANDIDATE, previous_stage=None, previous=None, threshold_version=1)
        logger.info("registered %s version %d (%s)", name, number, kind)
        return entry

    # stages ------------------------------------------------------------------------------------------
    def promote(
        self,
        name: str,
        version: int | str,
        *,
        metric: str = DEFAULT_METRIC,
        force: bool = False,
        data: DatasetSource | Dataset | None = None,
    ) -> Promotion:
        """Make a candidate production if it beats production on the same held-out data (or ``force``).

        The held-out data is ``data`` when given, else the candidate's own test part rebuilt from its
        model card (dataset description and split); both versions score the same rows, each with its
        own threshold. "Beats" means strictly higher ``metric``. A refusal is recorded in the
        candidate's history and raised as :class:`PromotionRefused`; ``force`` promotes anyway and is
        recorded with the numbers.
        """
        if metric not in GATE_METRICS:
            raise RegistryError(f"metric must be one of {', '.join(GATE_METRICS)}; got {metric!r}")
        index = self.index(name)
        number = self._resolve(index, version)
        stage = index["versions"][str(number)]["stage"]
        if stage != CANDIDATE:
            raise RegistryError(
                f"{name} version {number} is {stage}; only candidates can be promoted"
                + (" (use rollback to return to an earlier production version)" if stage == ARCHIVED else "")
            )
        current = index["production"]
        gate = None
        if current is not None:
            gate = self._gate(name, number, int(current), metric, data)
            if not gate["passed"]:
                message = (
                    f"{name} version {number} does not beat production version {current} on "
                    f"{metric}: {_fmt(gate['candidate'])} vs {_fmt(gate['production'])} on "
                    f"{gate['rows']} held-out rows ({gate['frauds']} frauds)"
                )
                if not force:
                    self._record(name, number, {"event": "promotion refused", "gate": gate})
                    raise PromotionRefused(message, gate)
                logger.warning("forced: %s", message)

        def apply(index: dict[str, Any]) -> None:
            if index["production"] != current:
                raise RegistryError(
                    f"production of {name} changed to version {index['production']} while the gate ran; promote again"
                )
            entry = index["versions"][str(number)]
            if entry["stage"] != CANDIDATE:
                raise RegistryError(f"{name} version {number} became {entry['stage']} meanwhile")
            at = _now()
            entry["stage"] = PRODUCTION
            entry["history"].append(
                {
                    "at": at,
                    "event": "promoted",
                    "stage": PRODUCTION,
                    "previous": current,
                    "forced": bool(force and gate is not None and not gate["passed"]),
                    "force_requested": force,
                    "gate": gate,
                }
            )
            if current is not None:
                old = index["versions"][str(current)]
                old["stage"] = ARCHIVED
                old["history"].append({"at": at, "event": "archived", "stage": ARCHIVED, "replaced_by": number})
            index["production"] = number
            index["production_history"].append(number)

        self._update(name, apply)
        entry = self.version(name, number)
        self._publish(
            name,
            number,
            PRODUCTION,
            previous_stage=CANDIDATE,
            previous=current,
            threshold_version=entry["threshold_version"],
        )
        if current is not None:
            old = self.version(name, current)
            self._publish(
                name,
                current,
                ARCHIVED,
                previous_stage=PRODUCTION,
                previous=None,
                threshold_version=old["threshold_version"],
            )
        return Promotion(name, number, current, bool(force and gate is not None and not gate["passed"]), gate)

    def rollback(self, name: str) -> Promotion:
        """Return production to the version that held it before the current one; the current is archived."""
        moved: dict[str, int] = {}

        def apply(index: dict[str, Any]) -> None:
            current = index["production"]
            if current is None:
                raise RegistryError(f"model {name!r} has no production version to roll back")
            history = [v for v in index["production_history"] if v != current]
            if not history:
                raise RegistryError(
                    f"{name} version {current} is the only version that was ever in production: nothing to roll back to"
                )
            previous = history[-1]
            at = _now()
            index["versions"][str(current)]["stage"] = ARCHIVED
            index["versions"][str(current)]["history"].append(
                {"at": at, "event": "rolled back", "stage": ARCHIVED, "replaced_by": previous}
            )
            index["versions"][str(previous)]["stage"] = PRODUCTION
            index["versions"][str(previous)]["history"].append(
                {"at": at, "event": "restored by rollback", "stage": PRODUCTION, "previous": current}
            )
            index["production"] = previous
            index["production_history"] = history
            moved.update(current=current, previous=previous)

        self._update(name, apply)
        current, previous = moved["current"], moved["previous"]
        self._publish(
            name,
            previous,
            PRODUCTION,
            previous_stage=ARCHIVED,
            previous=current,
            threshold_version=self.version(name, previous)["threshold_version"],
        )
        self._publish(
            name,
            current,
            ARCHIVED,
            previous_stage=PRODUCTION,
            previous=None,
            threshold_version=self.version(name, current)["threshold_version"],
        )
        return Promotion(name, previous, current, False, None)

    def recalibrate(
        self,
        name: str,
        version: int | str,
        data: DatasetSource | Dataset,
        *,
        method: str | None = None,
        target: float | None = None,
    ) -> Threshold:
        """A new threshold version for ``version`` from fresh scores on ``data``; the model is not retrained."""
        loaded = self.load(name, version)
        dataset = data if isinstance(data, Dataset) else load_dataset(data)
        frame = dataset.frame
        y = labels(frame) if has_label(frame) else None
        fresh = recalibrate(loaded.threshold, loaded.model.score_samples(frame), y, target=target, method=method)
        number = loaded.version
        # a new number per attempt, written only if absent, so concurrent recalibrations never overwrite
        for _ in range(CAS_ATTEMPTS):
            try:
                self._put_json(
                    self._key(name, number, "thresholds", f"{fresh.version}.json"), fresh.to_dict(), IfNoneMatch="*"
                )
                break
            except ClientError as error:
                if error.response["ResponseMetadata"]["HTTPStatusCode"] not in (409, 412):
                    raise
                fresh = replace(fresh, version=fresh.version + 1)
        else:
            raise RegistryError(f"could not find a free threshold version for {name} version {number}")

        def apply(index: dict[str, Any]) -> str:
            entry = index["versions"][str(number)]
            entry["threshold_version"] = max(fresh.version, int(entry["threshold_version"]))
            entry["threshold"] = fresh.value if entry["threshold_version"] == fresh.version else entry["threshold"]
            entry["history"].append(
                {
                    "at": _now(),
                    "event": "recalibrated",
                    "threshold_version": fresh.version,
                    "threshold": fresh.value,
                    "method": fresh.method,
                    "target": fresh.target,
                    "achieved": fresh.achieved,
                    "dataset": dataset.description,
                }
            )
            return entry["stage"]

        stage = self._update(name, apply)
        if stage == PRODUCTION:  # workers must pick up the new threshold
            self._publish(
                name, number, PRODUCTION, previous_stage=PRODUCTION, previous=number, threshold_version=fresh.version
            )
        return fresh

    def _record(self, name: str, number: int, event: dict[str, Any]) -> None:
        def apply(index: dict[str, Any]) -> None:
            index["versions"][str(number)]["history"].append({"at": _now(), **event})

        self._update(name, apply)

    # the gate ----------------------------------------------------------------------------------------
    def held_out(self, name: str, version: int) -> Dataset:
        """The version's own test part, rebuilt from its model card's dataset description and split."""
        card = self.card(name, version)
        if not card or "source" not in card.get("dataset", {}):
            raise RegistryError(
                f"{name} version {version} has no model card with a dataset description; give the data to compare on"
            )
        described = card["dataset"]
        dataset = load_dataset(source_from_description(described["source"]))
        split = described.get("split", {})
        fractions = split.get("fractions", (0.6, 0.2, 0.2))
        if split.get("method") == "random":
            parts = random_split(dataset.frame, fractions, seed=int(split.get("seed", 0)))
        elif split.get("method", "chronological") == "chronological":
            parts = chronological_split(dataset.frame, fractions)
        else:
            raise RegistryError(
                f"{name} version {version} was split {split.get('method')!r}, which cannot be "
                "rebuilt from its card; give the data to compare on"
            )
        description = {**dataset.description, "part": "test", "split": parts.describe(), "of": f"{name}:{version}"}
        return Dataset(parts.test.reset_index(drop=True), description, dataset.rejected)

    def _gate(
        self, name: str, candidate: int, production: int, metric: str, data: DatasetSource | Dataset | None
    ) -> dict[str, Any]:
        if data is None:
            dataset = self.held_out(name, candidate)
        else:
            dataset = data if isinstance(data, Dataset) else load_dataset(data)
        frame = dataset.frame
        if len(frame) == 0:
            raise RegistryError("the held-out data has no rows: nothing to compare on")
        y = labels(frame)
        values: dict[int, float | None] = {}
        for number in (candidate, production):
            loaded = self.load(name, number)
            measured = evaluate(
                y, loaded.model.score_samples(frame), loaded.threshold.value, DEFAULT_ALERT_BUDGET
            ).to_dict()
            values[number] = measured[metric]
        c, p = values[candidate], values[production]
        passed = c is not None and (p is None or c > p)
        return {
            "metric": metric,
            "candidate": c,
            "production": p,
            "production_version": production,
            "passed": passed,
            "rows": int(len(frame)),
            "frauds": int(y.sum()),
            "dataset": dataset.description,
        }

    # loading -----------------------------------------------------------------------------------------
    def load(self, name: str, version: int | str | None = None) -> LoadedModel:
        """Download a version's artifacts to the cache (once) and load it with safe mode, plus its threshold."""
        index = self.index(name)
        number = self._resolve(index, version)
        entry = index["versions"][str(number)]
        if entry["stage"] == REGISTERING:
            raise RegistryError(f"{name} version {number} is still being registered (or its upload was interrupted)")
        files: dict[str, str] = entry["files"]
        digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
        target = self.cache_dir / self.bucket / name / f"{number}-{digest}"
        if not target.is_dir():
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{number}-", dir=target.parent))
            try:
                for relative in files:
                    path = staging / relative
                    path.parent.mkdir(parents=True, exist_ok=True)
                    self.s3.download_file(self.bucket, self._key(name, number, "artifacts", relative), str(path))
                try:
                    staging.rename(target)  # atomic: a half-downloaded folder is never taken for a model
                except OSError:
                    if not target.is_dir():
                        raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        model = load_model(target)
        return LoadedModel(name, number, model, self.threshold(name, number, entry["threshold_version"]), target)

    # events ------------------------------------------------------------------------------------------
    def _publish(
        self,
        name: str,
        version: int,
        stage: str,
        *,
        previous_stage: str | None,
        previous: int | None,
        threshold_version: int,
    ) -> None:
        """One ``model-updates`` record per stage change: key = model name, JSON value."""
        if self.bootstrap_servers is None:
            logger.warning("no Kafka bootstrap servers: %s version %d -> %s not published", name, version, stage)
            return
        from confluent_kafka import KafkaException, Producer

        from fraudstream.kafka import producer_config

        if self._producer is None:
            _ensure_topic(self.bootstrap_servers, UPDATES_TOPIC)
            self._producer = Producer(producer_config(self.bootstrap_servers))
        event = ModelUpdate(
            model=name,
            version=version,
            stage=stage,
            previous=previous,
            previous_stage=previous_stage,
            threshold_version=threshold_version,
            at=_now(),
        )
        failures: list[str] = []

        def delivered(error: Any, _message: Any) -> None:
            if error is not None:
                failures.append(str(error))

        try:
            self._producer.produce(UPDATES_TOPIC, key=name.encode(), value=event.to_json(), on_delivery=delivered)
        except KafkaException as error:
            failures.append(str(error))
        if self._producer.flush(30) or failures:
            raise RegistryError(
                f"{name} version {version} is {stage} in the registry, but the {UPDATES_TOPIC} "
                f"event was not delivered ({'; '.join(failures) or 'timed out'}): workers will "
                "not hear of it until the next change"
            )


def _ensure_topic(bootstrap_servers: str, topic: str) -> None:
    """One partition, so that every worker sees the updates of a model in order."""
    ensure_topic(bootstrap_servers, topic, 1)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")
