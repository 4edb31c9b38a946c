"""The herder: the connectors this worker runs, their target states, tasks and statuses.

One worker owns every connector (no cluster of workers). Each change is written to the storage
topics first and applied second; tasks run as threads (one Kafka consumer each, committing to the
connector's group `connect-<name>`) and report their state back here, which records it in the status
topic. Calls block (they start and join threads), so the REST layer runs them in a thread.
"""

from __future__ import annotations

import logging
import os
import threading
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from fraudstream.kafka import consumer_config
from stack.connect.definitions import S3_SINK_CLASS
from stack.connect.metrics import SinkMetrics
from stack.connect.settings import ConfigError, SinkSettings, connector_class
from stack.connect.storage import ConnectStorage
from stack.connect.task import SinkTask, group_id

logger = logging.getLogger(__name__)

TASK_CLASS = "io.confluent.connect.s3.S3SinkTask"


class NotFound(LookupError):
    pass


class Conflict(RuntimeError):
    pass


@dataclass
class TaskStatus:
    state: str = "UNASSIGNED"
    trace: str | None = None


@dataclass
class Connector:
    name: str
    config: dict[str, str]
    target: str = "STARTED"
    state: str = "UNASSIGNED"
    trace: str | None = None
    tasks: dict[int, TaskStatus] = field(default_factory=dict)
    threads: dict[int, SinkTask] = field(default_factory=dict)
    settings: SinkSettings | None = None


class Herder:
    def __init__(
        self,
        storage: ConnectStorage,
        bootstrap_servers: str,
        worker_id: str,
        defaults: Mapping[str, str],
        metrics: SinkMetrics,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.storage = storage
        self.bootstrap_servers = bootstrap_servers
        self.worker_id = worker_id
        self.defaults = dict(defaults)
        self.metrics = metrics
        self.environ = environ
        self.connectors: dict[str, Connector] = {}
        self._lock = threading.RLock()

    # -- start-up and shutdown ----------------------------------------------------------------------

    def start(self) -> None:
        self.storage.ensure_topics()
        stored = self.storage.load()
        with self._lock:
            for name, config in stored.configs.items():
                connector = Connector(name, config, stored.target_states.get(name, "STARTED"))
                self.connectors[name] = connector
                self._start(connector)
        logger.info("herder started with %d connector(s)", len(stored.configs))

    def stop(self) -> None:
        with self._lock:
            for connector in self.connectors.values():
                self._stop_tasks(connector)
        self.storage.close()

    # -- reads ------------------------------------------------------------------------------------------

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self.connectors)

    def get(self, name: str) -> Connector:
        with self._lock:
            if name not in self.connectors:
                raise NotFound(f"Connector {name} not found")
            return self.connectors[name]

    def info(self, name: str) -> dict[str, Any]:
        connector = self.get(name)
        return {
            "name": name,
            "config": dict(connector.config),
            "tasks": [{"connector": name, "task": task_id} for task_id in sorted(connector.tasks)],
            "type": "sink",
        }

    def status(self, name: str) -> dict[str, Any]:
        connector = self.get(name)
        tasks = dict(connector.tasks)
        return {
            "name": name,
            "connector": self._status_body(connector.state, connector.trace),
            "tasks": [
                {"id": task_id, **self._status_body(task.state, task.trace)} for task_id, task in sorted(tasks.items())
            ],
            "type": "sink",
        }

    def task_configs(self, name: str) -> list[dict[str, Any]]:
        connector = self.get(name)
        config = {**connector.config, "task.class": TASK_CLASS}
        return [{"id": {"connector": name, "task": task_id}, "config": config} for task_id in sorted(connector.tasks)]

    def offsets(self, name: str) -> dict[str, Any]:
        """The committed offsets of the connector's consumer group, in Connect's sink offsets shape."""
        connector = self.get(name)
        topics = [t.strip() for t in connector.config.get("topics", "").split(",") if t.strip()]
        consumer = Consumer(consumer_config(self.bootstrap_servers, group_id(name), enable_auto_commit=False))
        try:
            partitions = [
                TopicPartition(topic, p)
                for topic in topics
                for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions
            ]
            committed = consumer.committed(partitions, timeout=10) if partitions else []
        finally:
            consumer.close()
        return {
            "offsets": [
                {
                    "partition": {"kafka_topic": tp.topic, "kafka_partition": tp.partition},
                    "offset": {"kafka_offset": tp.offset},
                }
                for tp in committed
                if tp.offset >= 0
            ]
        }

    # -- changes ----------------------------------------------------------------------------------------

    def check(self, config: Mapping[str, str]) -> SinkSettings:
        """Validate a config as the worker would run it; raises ConfigError listing every bad key."""
        return SinkSettings.parse(config, self.environ, self.defaults)

    def put(self, name: str, config: dict[str, str], create_only: bool = False, initial_state: str = "STARTED") -> bool:
        """Create or replace a connector's config; True when it was created (in `initial_state`, STARTED or PAUSED)."""
        config = {**config, "name": name}
        self.check(config)
        with self._lock:
            existing = self.connectors.get(name)
            if existing is not None and create_only:
                raise Conflict(f"Connector {name} already exists")
            self.storage.put_config(name, config)
            if existing is not None:
                self._stop_tasks(existing)
                existing.config = config
                self._start(existing)
                return False
            if initial_state != "STARTED":
                self.storage.put_target_state(name, initial_state)
            connector = Connector(name, config, initial_state)
            self.connectors[name] = connector
            self._start(connector)
            return True

    def delete(self, name: str) -> None:
        with self._lock:
            connector = self.get(name)
            self.storage.delete(name)
            self._stop_tasks(connector)
            del self.connectors[name]
            self.storage.put_status(f"status-connector-{name}", None)
            for task_id in connector.tasks:
                self.storage.put_status(f"status-task-{name}-{task_id}", None)

    def pause(self, name: str) -> None:
        with self._lock:
            connector = self.get(name)
            self.storage.put_target_state(name, "PAUSED")
            connector.target = "PAUSED"
            self._stop_tasks(connector)
            self._start(connector)

    def resume(self, name: str) -> None:
        with self._lock:
            connector = self.get(name)
            self.storage.put_target_state(name, "STARTED")
            connector.target = "STARTED"
            if connector.state == "PAUSED":
                self._start(connector)

    def restart(self, name: str, include_tasks: bool = False, only_failed: bool = False) -> None:
        """Restart the connector (and its tasks when asked; with only_failed, just the failed ones)."""
        with self._lock:
            connector = self.get(name)
            if connector.state == "FAILED" or (include_tasks and not only_failed):
                self._stop_tasks(connector)
                self._start(connector)
            elif include_tasks:
                for task_id, task in list(connector.tasks.items()):
                    if task.state == "FAILED":
                        self._start_task(connector, task_id)

    def restart_task(self, name: str, task_id: int) -> None:
        with self._lock:
            connector = self.get(name)
            if task_id not in connector.tasks:
                raise NotFound(f"Task {name}-{task_id} not found")
            thread = connector.threads.pop(task_id, None)
            if thread is not None:
                thread.stop()
                thread.join(timeout=30)
            self._start_task(connector, task_id)

    # -- running ----------------------------------------------------------------------------------------

    def _start(self, connector: Connector) -> None:
        try:
            connector.settings = self.check(connector.config)
        except ConfigError as exc:
            self._set_connector(connector, "FAILED", f"{exc}\n")
            return
        connector.tasks = {task_id: TaskStatus() for task_id in range(connector.settings["tasks.max"])}
        if connector.target == "PAUSED":
            self._set_connector(connector, "PAUSED")
            for task_id in connector.tasks:
                self._set_task(connector, task_id, "PAUSED", None)
            return
        self._set_connector(connector, "RUNNING")
        for task_id in connector.tasks:
            self._start_task(connector, task_id)

    def _start_task(self, connector: Connector, task_id: int) -> None:
        assert connector.settings is not None
        try:
            thread = SinkTask(
                connector.settings,
                task_id,
                self.bootstrap_servers,
                self.metrics,
                lambda task, state, trace, c=connector: self._task_reported(c, task, state, trace),
            )
        except Exception:  # a task that cannot even be built (registry client, format) fails like one that crashed
            self._set_task(connector, task_id, "FAILED", traceback.format_exc())
            return
        connector.threads[task_id] = thread
        self._set_task(connector, task_id, "UNASSIGNED", None)
        thread.start()

    def _task_reported(self, connector: Connector, task: SinkTask, state: str, trace: str | None) -> None:
        """Called from a task's thread; never takes the herder's lock (which may be joining that thread)."""
        if connector.threads.get(task.task_id) is task:
            self._set_task(connector, task.task_id, state, trace)

    def _stop_tasks(self, connector: Connector) -> None:
        threads = list(connector.threads.values())
        connector.threads.clear()
        for thread in threads:
            thread.stop()
        for thread in threads:
            thread.join(timeout=60)
            if thread.is_alive():
                logger.warning("task %s did not stop within 60 s", thread.name)

    def _set_connector(self, connector: Connector, state: str, trace: str | None = None) -> None:
        connector.state, connector.trace = state, trace
        self.storage.put_status(f"status-connector-{connector.name}", self._record(state, trace))

    def _set_task(self, connector: Connector, task_id: int, state: str, trace: str | None) -> None:
        connector.tasks[task_id] = TaskStatus(state, trace)  # one assignment: safe from a task's thread
        self.storage.put_status(f"status-task-{connector.name}-{task_id}", self._record(state, trace))

    def _record(self, state: str, trace: str | None) -> dict[str, Any]:
        return {"state": state, "trace": trace, "worker_id": self.worker_id, "generation": 0}

    def _status_body(self, state: str, trace: str | None) -> dict[str, Any]:
        return {"state": state, "worker_id": self.worker_id} | ({"trace": trace} if trace else {})


def plugin_class(plugin: str) -> str:
    """The connector class a plugin path names, or NotFound."""
    full = connector_class(plugin)
    if full != S3_SINK_CLASS:
        raise NotFound(f"Failed to find any class that implements Connector and which name matches {plugin}")
    return full
