"""The worker's durable state in Kafka, in the three compacted topics Connect keeps it in.

- `connect-configs`: `connector-<name>` -> {"properties": {...}} (a tombstone deletes it) and
  `target-state-<name>` -> {"state": "STARTED" | "PAUSED"}, as Connect writes them.
- `connect-status`: `status-connector-<name>` and `status-task-<name>-<id>` -> {"state", "trace", "worker_id", "generation"}.
- `connect-offsets`: source connectors' offsets. A sink's offsets live where Connect keeps them too,
  in its consumer group `connect-<name>`, committed only after the objects are stored.

The configs topic is read to its true end at start-up (`fraudstream.kafka.end_offsets`), and a change is
applied in memory only after the broker acknowledged it, so memory never runs ahead of the log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from stack.topiclog import TopicLog, TopicLogError

logger = logging.getLogger(__name__)

CONFIG_TOPIC = "connect-configs"
STATUS_TOPIC = "connect-status"
OFFSET_TOPIC = "connect-offsets"

#: A lost status write is repaired by the next one, so status writes wait less than config writes.
STATUS_TIMEOUT = 5.0


@dataclass
class StoredConnectors:
    configs: dict[str, dict[str, str]] = field(default_factory=dict)
    target_states: dict[str, str] = field(default_factory=dict)


class ConnectStorage:
    def __init__(
        self,
        bootstrap_servers: str,
        timeout: float = 30.0,
        config_topic: str = CONFIG_TOPIC,
        status_topic: str = STATUS_TOPIC,
        offset_topic: str = OFFSET_TOPIC,
    ) -> None:
        self.config_topic, self.status_topic, self.offset_topic = config_topic, status_topic, offset_topic
        self.configs = TopicLog(bootstrap_servers, config_topic, timeout)
        self.statuses = TopicLog(bootstrap_servers, status_topic, STATUS_TIMEOUT)
        self.offsets = TopicLog(bootstrap_servers, offset_topic, timeout)

    def ensure_topics(self) -> None:
        """Create the three topics (compacted, one partition so that order is total) unless they exist."""
        for log in (self.configs, self.statuses, self.offsets):
            log.ensure_topic()

    def load(self) -> StoredConnectors:
        """The connector configs and target states, replayed from the configs topic."""
        stored = StoredConnectors()
        for key, value in _decoded(self.configs.replay()):
            if key.startswith("connector-"):
                name = key.removeprefix("connector-")
                if value is None:
                    stored.configs.pop(name, None)
                    stored.target_states.pop(name, None)
                else:
                    stored.configs[name] = value["properties"]
            elif key.startswith("target-state-"):
                name = key.removeprefix("target-state-")
                if value is None:
                    stored.target_states.pop(name, None)
                else:
                    stored.target_states[name] = value.get("state.v2") or value["state"]
        return stored

    def put_config(self, name: str, config: dict[str, str]) -> None:
        self.configs.append(_encoded([(f"connector-{name}", {"properties": config})]))

    def put_target_state(self, name: str, state: str) -> None:
        self.configs.append(_encoded([(f"target-state-{name}", {"state": state, "state.v2": state})]))

    def delete(self, name: str) -> None:
        self.configs.append(_encoded([(f"connector-{name}", None), (f"target-state-{name}", None)]))

    def put_status(self, key: str, status: dict[str, Any] | None) -> None:
        """Best effort, as in Connect: a lost status write is repaired by the next one."""
        try:
            self.statuses.append(_encoded([(key, status)]))
        except TopicLogError as exc:
            logger.warning("status %s not written: %s", key, exc)

    def close(self) -> None:
        for log in (self.configs, self.statuses, self.offsets):
            log.close()


def _encoded(records: list[tuple[str, Any]]) -> list[tuple[bytes, bytes | None]]:
    return [(key.encode(), None if value is None else json.dumps(value).encode()) for key, value in records]


def _decoded(records: Iterator[tuple[bytes, bytes | None]]) -> Iterator[tuple[str, Any]]:
    for key, value in records:
        yield key.decode(), (None if value is None else json.loads(value))
