"""TopicLog, the durable state of Schema Registry, Connect and ksqlDB: writes from several threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from stack.supervisor import free_port
from stack.topiclog import TopicLog, TopicLogError


def test_writes_from_several_threads_that_the_broker_does_not_take_each_fail_with_a_topic_log_error() -> None:
    # Connect's tasks write their statuses through one log; a failed write replaces the producer, which once
    # left another thread's write holding None (a task failed with AttributeError in the chaos run).
    log = TopicLog(f"127.0.0.1:{free_port()}", "statuses", timeout=0.1)  # nothing listens there

    def write(n: int) -> str:
        with pytest.raises(TopicLogError) as failed:
            log.append([(f"key-{n}".encode(), b"{}")])
        return str(failed.value)

    with ThreadPoolExecutor(4) as pool:
        reasons = list(pool.map(write, range(24)))
    assert all("not acknowledged by the broker within 0.1 s" in reason for reason in reasons)
