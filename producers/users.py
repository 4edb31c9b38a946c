"""Card holders for the USERS table (`ksql/050-users.sql`): one JSON record per user, keyed by the name
payments carry in `USER`, so the preprocessing can join payments to what is known about their holder.

The attributes are made up but fixed: the same name always gets the same country, card, limit and
signup date, so every run, test and notebook sees the same table. Each record's timestamp is the user's
signup date: a row is valid from then on, which puts it before any payment in event time, as the
stream-table join needs for replayed files whose payments are years old.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import click
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from fraudstream.kafka import producer_config
from fraudstream.options import address_option
from fraudstream.topics import USERS_TOPIC
from producers.generate import USERS
from producers.replay import RDKAFKA_LOG, BrokerUnavailable, create_topic, existing_topics

logger = logging.getLogger(__name__)


_COUNTRIES = ("DE", "FR", "NL", "ES", "IT", "GB", "US", "PL", "SE", "AT")
_CARDS = ("VISA", "MASTERCARD", "AMEX", "MAESTRO")
_FIRST_SIGNUP = date(2005, 1, 1)


@dataclass(frozen=True)
class User:
    user_id: str
    country: str
    card_type: str
    credit_limit: float
    signup_date: date

    @classmethod
    def of(cls, name: str) -> User:
        """The fixed made-up attributes of `name` (a CRC of the name picks them: stable across processes)."""
        h = zlib.crc32(name.encode())
        return cls(
            user_id=name,
            country=_COUNTRIES[h % len(_COUNTRIES)],
            card_type=_CARDS[(h >> 8) % len(_CARDS)],
            credit_limit=float(1_000 * (1 + (h >> 12) % 20)),
            signup_date=_FIRST_SIGNUP + timedelta(days=(h >> 16) % 3_000),
        )

    def value(self) -> bytes:
        """The JSON value `ksql/050-users.sql` declares (the key column travels in the record key)."""
        row = {
            "COUNTRY": self.country,
            "CARD_TYPE": self.card_type,
            "CREDIT_LIMIT": self.credit_limit,
            "SIGNUP_DATE": self.signup_date.isoformat(),
        }
        return json.dumps(row, separators=(",", ":")).encode()

    def timestamp_ms(self) -> int:
        return int(
            datetime(self.signup_date.year, self.signup_date.month, self.signup_date.day, tzinfo=UTC).timestamp() * 1000
        )


def produce_users(
    bootstrap_servers: str, names: Iterable[str] = USERS, topic: str = USERS_TOPIC, partitions: int = 4
) -> int:
    """Write one record per user to `topic` (created first if missing) and wait until all are acknowledged."""
    producer = Producer(producer_config(bootstrap_servers, logger=RDKAFKA_LOG))
    if topic not in existing_topics(producer, bootstrap_servers):
        create_topic(bootstrap_servers, topic, partitions)
    errors: list[str] = []

    def delivered(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            errors.append(error.str())

    users = [User.of(name) for name in names]
    for user in users:
        producer.produce(
            topic, key=user.user_id.encode(), value=user.value(), timestamp=user.timestamp_ms(), on_delivery=delivered
        )
    if producer.flush(30) or errors:
        raise BrokerUnavailable(
            f"users not all acknowledged by {bootstrap_servers}: {'; '.join(errors) or 'timed out'}"
        )
    logger.info("wrote %d users to %s", len(users), topic)
    return len(users)


@click.command("users")
@click.option("--topic", default=USERS_TOPIC, show_default=True, help="Topic of the USERS table.")
@address_option("bootstrap_servers")
def users_command(topic: str, bootstrap_servers: str) -> None:
    """Write the card holders the generated payments use to the USERS table's topic (one JSON record each)."""
    try:
        count = produce_users(bootstrap_servers, topic=topic)
    except BrokerUnavailable as error:
        raise click.ClickException(str(error)) from None
    except KafkaException as error:
        raise click.ClickException(f"Kafka: {error.args[0].str()}") from None
    click.echo(f"{topic}: {count} users written")
