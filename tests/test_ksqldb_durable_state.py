"""Durable state stores: SQLite file + changelog topics; restore from either, incomplete commits ignored."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import NewTopic

from fraudstream.kafka import admin_client, producer_config
from stack.ksqldb.durable_state import Changelog, Checkpoint, DurableStateStores, StateReader, changelog_topic
from stack.ksqldb.state import encode


def _create_topic(bootstrap: str):
    admin = admin_client(bootstrap)

    def create(name: str, partitions: int, config: dict[str, str]) -> None:
        futures = admin.create_topics([NewTopic(name, partitions, 1, config=config)])
        try:
            futures[name].result(30)
        except KafkaException as e:
            if "already exists" not in str(e).lower():
                raise
        while name not in admin.list_topics(timeout=10).topics:
            pass

    return create


def _fill(stores: DurableStateStores, n: int) -> None:
    counts = stores.key_value("counts")
    wins = stores.window("windows")
    for i in range(n):
        key = (f"user{i % 3}",)
        counts.put(key, (counts.get(key) or 0) + 1)
        wins.put(key, i * 10, i * 10 + 100, [i, {"sum": float(i)}])


def _snapshot(stores: DurableStateStores) -> tuple[dict, list]:
    return dict(stores.key_value("counts").items()), sorted(stores.window("windows").items())


def test_sqlite_commit_reopen_and_rollback(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    stores = DurableStateStores(path)
    assert stores.positions is None
    _fill(stores, 5)
    stores.commit({"input": {0: 5}})
    committed = _snapshot(stores)
    stores.key_value("counts").put(("user0",), 99)  # a failed batch's change...
    stores.key_value("counts").delete(("user1",))
    stores.window("windows").put(("user9",), 0, 10, [1])
    stores.window("windows").delete(("user0",), 0, 100)
    stores.rollback()  # ...is forgotten
    assert _snapshot(stores) == committed
    stores.close()

    reopened = DurableStateStores(path)
    assert reopened.positions == {"input": {0: 5}}
    assert _snapshot(reopened) == committed
    assert reopened.key_value("counts").get(("user0",)) == 2
    reader = StateReader(path)
    assert reader.get("counts", ("user0",)) == 2
    assert [(s, e) for _, s, e, _ in reader.windows("windows", ("user1",))] == [(10, 110), (40, 140)]
    reopened.close()


def test_a_second_process_restores_from_the_changelogs(stack, tmp_path: Path) -> None:
    bootstrap = stack.addresses.bootstrap_servers
    group = f"_confluent-ksql-t{uuid.uuid4().hex[:8]}_query_CTAS_T_1"
    create = _create_topic(bootstrap)
    first = DurableStateStores(tmp_path / "a" / "q.db", Changelog(bootstrap, group, create))
    _fill(first, 6)
    first.commit({"input": {0: 6}})
    first.key_value("counts").delete(("user2",))  # a tombstone in the changelog
    _fill(first, 2)
    first.commit({"input": {0: 8}})
    expected = _snapshot(first)
    first.close()
    assert changelog_topic(group, "counts") in Changelog(bootstrap, group, create).existing()

    # another process, empty state directory
    second = DurableStateStores(tmp_path / "b" / "q.db", Changelog(bootstrap, group, create))
    assert second.positions == {"input": {0: 8}}
    assert _snapshot(second) == expected
    assert second.checkpoint.commit == 2

    second.close()

    # a crash while commit 3 was being written: entries in the changelogs, no checkpoint after them
    producer = Producer(producer_config(bootstrap))
    producer.produce(
        changelog_topic(group, "counts"), encode(123), encode(["kv", ("user0",)]), headers=[("commit", b"3")]
    )
    producer.produce(
        changelog_topic(group, "windows"), encode([5]), encode(["w", ("user5",), 0, 10]), headers=[("commit", b"3")]
    )
    producer.flush(10)
    behind = tmp_path / "d" / "q.db"
    behind.parent.mkdir()
    shutil.copy(tmp_path / "b" / "q.db", behind)  # a file at commit 2
    third = DurableStateStores(tmp_path / "b" / "q.db", Changelog(bootstrap, group, create))
    assert third.checkpoint.commit == 2 and _snapshot(third) == expected
    # the redone commit 3 changes other entries: the unfinished attempt's entries must not come back
    third.key_value("counts").put(("user7",), 7)
    third.commit({"input": {0: 9}})
    expected = _snapshot(third)
    third.close()
    for directory in ("e", "d", "b"):  # empty directory, a file behind, a file up to date
        restored = DurableStateStores(tmp_path / directory / "q.db", Changelog(bootstrap, group, create))
        assert restored.checkpoint.commit == 3 and _snapshot(restored) == expected, directory
        assert restored.key_value("counts").get(("user0",)) == 3  # not the unfinished attempt's 123
        restored.close()


def test_a_file_from_another_history_is_not_loaded(stack, tmp_path: Path) -> None:
    """A state file left by an earlier cluster (same query id, changelogs gone) does not leak into a new one."""
    bootstrap = stack.addresses.bootstrap_servers
    path = tmp_path / "q.db"
    old = DurableStateStores(path)
    _fill(old, 3)
    old.commit({"input": {0: 3}})
    old.close()
    group = f"_confluent-ksql-t{uuid.uuid4().hex[:8]}_query_CTAS_T_1"
    fresh = DurableStateStores(path, Changelog(bootstrap, group, _create_topic(bootstrap)))
    assert fresh.positions is None
    assert _snapshot(fresh) == ({}, [])
    fresh.close()


def test_checkpoint_encoding_round_trips() -> None:
    c = Checkpoint("e1", 4, {"a": {0: 10, 3: 7}, "b": {1: 0}})
    assert Checkpoint.decode(c.encode()) == c
    assert Checkpoint.decode(Checkpoint("e", 0, None).encode()).positions is None
