"""The USERS table's records: fixed made-up card holders, written the way `ksql/050-users.sql` reads them."""

from __future__ import annotations

import json
import subprocess
import sys

from confluent_kafka import Consumer, TopicPartition

from fraudstream.kafka import consumer_config, end_offsets
from producers.generate import USERS
from producers.users import User, produce_users
from stack.embedded import EmbeddedStack


def test_a_name_always_gets_the_same_holder_and_names_differ() -> None:
    assert User.of("Kai") == User.of("Kai")
    assert len({(u.country, u.card_type, u.credit_limit, u.signup_date) for u in map(User.of, USERS)}) > len(USERS) // 2
    row = json.loads(User.of("Kai").value())
    assert set(row) == {"COUNTRY", "CARD_TYPE", "CREDIT_LIMIT", "SIGNUP_DATE"}
    assert row["CREDIT_LIMIT"] > 0


def test_users_are_written_keyed_by_name_and_stamped_with_their_signup(stack: EmbeddedStack, topic_name: str) -> None:
    bootstrap = stack.addresses.bootstrap_servers
    assert produce_users(bootstrap, topic=topic_name) == len(USERS)
    ends = end_offsets(bootstrap, topic_name)
    consumer = Consumer(consumer_config(bootstrap, f"{topic_name}-reader"))
    consumer.assign([TopicPartition(topic_name, p, 0) for p in ends])
    seen: dict[str, tuple[dict, int]] = {}
    while len(seen) < sum(ends.values()):
        for message in consumer.consume(100, timeout=1.0):
            assert message.error() is None
            seen[message.key().decode()] = (json.loads(message.value()), message.timestamp()[1])
    consumer.close()
    assert set(seen) == set(USERS)
    kai = User.of("Kai")
    assert seen["Kai"] == (json.loads(kai.value()), kai.timestamp_ms())


def test_the_cli_says_what_it_wrote_and_a_dead_broker_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fraudstream.cli", "users", "--bootstrap-servers", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "127.0.0.1:1" in result.stderr and len(result.stderr.strip().splitlines()) == 1
