"""The fraud pipeline's per-user history features, as the in-memory engine runs them: a table of each user's
recent payments (LATEST_BY_OFFSET over a STRUCT, n = 100) joined to the payments, and lambdas that keep only
entries strictly earlier than the payment. The key property: no feature of a payment uses a later payment,
whatever the order payments arrive in and whether the history table was filled before the join ran.

The statements are the pipeline's, changed only where ksqlDB itself refuses them (each test below shows the
refusal):
- the aggregation reads an AVRO copy of the DELIMITED source: ksqlDB keeps an aggregation's state in the
  source's value format, and DELIMITED cannot hold LATEST_BY_OFFSET's STRUCT/ARRAY intermediate (its QTT cases
  "average - DELIMITED", "topk DELIMITED": "One of the functions used in the statement has an intermediate
  type that the value format can not handle");
- REDUCE's initial state and IFNULL's fallbacks are DOUBLE (`CAST(0.0 AS DOUBLE)`), not the DECIMAL literal
  `0.0`: ksqlDB binds a generic to exactly one type (GenericsUtil.reserveGenerics), so REDUCE's state S cannot
  be DECIMAL(1, 1) and DOUBLE at once, nor IFNULL's T DOUBLE and DECIMAL(1, 1).
"""

import io
import random
import struct
from datetime import UTC, datetime

import fastavro
import pytest

from stack.ksqldb.engine import Engine
from stack.ksqldb.errors import KsqlStatementError
from stack.ksqldb.formats import InMemorySchemaRegistry
from stack.ksqldb.records import Record
from stack.ksqldb.runtime import InMemoryRuntime

SOURCE = (
    "CREATE STREAM creditcardfraud_source (PAYMENT_ID STRING KEY, ID STRING, `TIMESTAMP` STRING, `USER` STRING, "
    "TIME DOUBLE, V1 DOUBLE, AMOUNT DOUBLE) WITH (KAFKA_TOPIC='creditcardfraud_source', KEY_FORMAT='KAFKA', "
    "VALUE_FORMAT='DELIMITED', PARTITIONS=4, TIMESTAMP='TIMESTAMP', "
    "TIMESTAMP_FORMAT='yyyy-MM-dd''T''HH:mm:ss[.SSS]X');"
)
SOURCE_AVRO = (
    "CREATE STREAM creditcardfraud_source_avro WITH (KAFKA_TOPIC='creditcardfraud_source_avro', "
    "VALUE_FORMAT='AVRO', PARTITIONS=4) AS SELECT * FROM creditcardfraud_source EMIT CHANGES;"
)
HISTORY = """CREATE TABLE creditcardfraud_user_history WITH (KAFKA_TOPIC='creditcardfraud_user_history',
  KEY_FORMAT='KAFKA', VALUE_FORMAT='AVRO', PARTITIONS=4) AS
  SELECT `USER`, LATEST_BY_OFFSET(STRUCT(T := ROWTIME, AMOUNT := AMOUNT), 100) AS RECENT
  FROM {source} GROUP BY `USER` EMIT CHANGES;"""
FEATURES = """CREATE STREAM features WITH (KAFKA_TOPIC='features', KEY_FORMAT='KAFKA', VALUE_FORMAT='AVRO',
  PARTITIONS=4) AS SELECT
  p.PAYMENT_ID AS PAYMENT_ID,
  IFNULL(CAST(ARRAY_LENGTH(FILTER(h.RECENT, e => e->T < p.ROWTIME AND e->T >= p.ROWTIME - 3600000)) AS DOUBLE),
    {zero}) AS USER_PAYMENTS_1H,
  IFNULL(REDUCE(FILTER(h.RECENT, e => e->T < p.ROWTIME AND e->T >= p.ROWTIME - 3600000), {zero},
    (s, e) => s + e->AMOUNT), {zero}) AS USER_AMOUNT_1H,
  (p.ROWTIME - ARRAY_MAX(TRANSFORM(FILTER(h.RECENT, e => e->T < p.ROWTIME), e => e->T))) / 1000.0
    AS SECONDS_SINCE_PREVIOUS,
  p.AMOUNT AS AMOUNT
FROM creditcardfraud_source p
LEFT JOIN creditcardfraud_user_history h ON p.`USER` = h.`USER`
PARTITION BY p.PAYMENT_ID
EMIT CHANGES;"""
DOUBLE_ZERO = "CAST(0.0 AS DOUBLE)"
HOUR_MS = 3_600_000
HISTORY_SIZE = 100
BASE_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def new_engine() -> Engine:
    return Engine(InMemorySchemaRegistry(), InMemoryRuntime(), {"auto.offset.reset": "earliest"})


def avro_records(engine: Engine, topic: str) -> list[tuple[bytes, dict | None, int]]:
    """(key, value, timestamp) of an AVRO topic's records."""
    out = []
    for rec in engine.runtime.topics[topic]:
        if rec.value is None:
            out.append((rec.key, None, rec.timestamp))
            continue
        schema_id = struct.unpack(">I", rec.value[1:5])[0]
        schema = fastavro.parse_schema(engine.registry.schema_by_id(schema_id))
        out.append((rec.key, fastavro.schemaless_reader(io.BytesIO(rec.value[5:]), schema, None), rec.timestamp))
    return out


def payments(seed: int, n: int = 160) -> list[dict]:
    """Payments of a few users (and some without a user), event times on a coarse grid so that many tie,
    in shuffled order."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ts = BASE_MS + rng.randrange(0, 4 * 60) * 60_000 + rng.choice([0, 0, 0, 500])
        user = rng.choice(["alice", "bob", "carol", "dave", "erin", None])
        out.append({"id": f"p{i:04d}", "ts": ts, "user": user, "amount": round(rng.uniform(1, 500), 2)})
    rng.shuffle(out)
    return out


def produce(engine: Engine, pays: list[dict]) -> None:
    """The payments as DELIMITED records; each record's Kafka timestamp is its event time too (Kafka Streams
    orders a replay by the extracted TIMESTAMP column; the in-memory runtime orders it by record timestamps)."""
    for p in pays:
        stamp = datetime.fromtimestamp(p["ts"] / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        value = f"{p['id']},{stamp},{p['user'] or ''},0.0,0.0,{p['amount']}"
        engine.runtime.produce(Record("creditcardfraud_source", p["id"].encode(), value.encode(), p["ts"]))


def expected(p: dict, history: list[dict] | None) -> tuple[float, float, float | None]:
    """Brute force: the features from the history entries strictly earlier than the payment."""
    earlier = [e for e in history or [] if e["T"] < p["ts"]]
    last_hour = [e for e in earlier if e["T"] >= p["ts"] - HOUR_MS]
    since = (p["ts"] - max(e["T"] for e in earlier)) / 1000 if earlier else None
    return float(len(last_hour)), sum(e["AMOUNT"] for e in last_hour), since


def check_row(p: dict, row: dict, history: list[dict] | None) -> None:
    count, amount, since = expected(p, history)
    assert row["USER_PAYMENTS_1H"] == count, p
    assert row["USER_AMOUNT_1H"] == pytest.approx(amount), p
    if since is None:
        assert row["SECONDS_SINCE_PREVIOUS"] is None, p
    else:
        assert float(row["SECONDS_SINCE_PREVIOUS"]) == pytest.approx(since), p
    assert row["AMOUNT"] == p["amount"]


def create_pipeline(engine: Engine, features: bool = True) -> None:
    engine.execute(SOURCE)
    engine.execute(SOURCE_AVRO)
    engine.execute(HISTORY.format(source="creditcardfraud_source_avro"))
    if features:
        engine.execute(FEATURES.format(zero=DOUBLE_ZERO))


def entries(pays: list[dict]) -> list[dict]:
    return [{"T": q["ts"], "AMOUNT": q["amount"]} for q in pays]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_live_features_use_only_strictly_earlier_payments(seed):
    """Payments arrive in shuffled event-time order while every query runs: each payment joins the history as
    it stands when the payment arrives (its own entry and every entry of a later or equal time left out)."""
    engine = new_engine()
    create_pipeline(engine)
    pays = payments(seed)
    produce(engine, pays)

    rows = {k.decode(): v for k, v, _ in avro_records(engine, "features")}
    assert sorted(rows) == sorted(p["id"] for p in pays)  # every payment scored once, NULL users included
    for i, p in enumerate(pays):
        if p["user"] is None:
            history = None  # a NULL key joins nothing: the LEFT JOIN pads it with NULLs
        else:
            # the aggregation runs before the join (the runtime delivers records depth first), so the table
            # holds the user's payments up to this one, by offset, the latest 100
            history = entries([q for q in pays[: i + 1] if q["user"] == p["user"]])[-HISTORY_SIZE:]
        check_row(p, rows[p["id"]], history)
        used = {(e["T"], e["AMOUNT"]) for e in (history or []) if e["T"] < p["ts"]}
        assert all(t < p["ts"] for t, _ in used)


@pytest.mark.parametrize("seed", [4, 5])
def test_history_filled_before_the_join_still_hides_later_payments(seed):
    """The history table's topic is complete before the features query starts, so the table it joins holds
    payments later than the one being scored (the query replays both topics in timestamp order, as Kafka
    Streams does); the lambdas must still see only strictly earlier ones."""
    engine = new_engine()
    create_pipeline(engine, features=False)
    pays = payments(seed)
    produce(engine, pays)
    history_records = avro_records(engine, "creditcardfraud_user_history")
    engine.execute(FEATURES.format(zero=DOUBLE_ZERO))

    rows = {k.decode(): v for k, v, _ in avro_records(engine, "features")}
    assert sorted(rows) == sorted(p["id"] for p in pays)
    # replay order: each topic in offset order, the next record the head with the lowest timestamp, ties to
    # the stream side (listed first)
    source = [(p["ts"], 0, i, p) for i, p in enumerate(pays)]
    table = [(ts, 1, i, (k.decode(), v)) for i, (k, v, ts) in enumerate(history_records)]
    state: dict[str, list[dict]] = {}
    saw_later = False
    heads = [source, table]
    pos = [0, 0]
    while pos[0] < len(source) or pos[1] < len(table):
        options = [(heads[t][pos[t]][0], t) for t in (0, 1) if pos[t] < len(heads[t])]
        _, t = min(options)
        _, _, _, item = heads[t][pos[t]]
        pos[t] += 1
        if t == 1:
            user, value = item
            state[user] = value["RECENT"] if value is not None else None
            continue
        p = item
        history = state.get(p["user"]) if p["user"] is not None else None
        saw_later = saw_later or any(e["T"] >= p["ts"] for e in history or [])
        check_row(p, rows[p["id"]], history)
        # independently of the replay order: only the user's own payments, strictly earlier ones
        allowed = {(q["ts"], q["amount"]) for q in pays if q["user"] == p["user"] and q["ts"] < p["ts"]}
        assert {(e["T"], e["AMOUNT"]) for e in history or [] if e["T"] < p["ts"]} <= allowed
    assert saw_later  # the table did hold later payments when some were scored


def test_full_history_gives_the_features_of_all_earlier_payments():
    """Payments in event-time order (ties included): the features are exactly those of every strictly earlier
    payment of the user in the last hour, and the time since the user's previous payment."""
    engine = new_engine()
    create_pipeline(engine)
    pays = sorted(payments(7), key=lambda p: p["ts"])
    produce(engine, pays)
    rows = {k.decode(): v for k, v, _ in avro_records(engine, "features")}
    for p in pays:
        earlier = [q for q in pays if p["user"] is not None and q["user"] == p["user"] and q["ts"] < p["ts"]]
        check_row(p, rows[p["id"]], entries(earlier)[-HISTORY_SIZE:] if p["user"] is not None else None)


def test_payment_without_user_is_scored_with_empty_history():
    """A NULL `USER` cannot be grouped (the history table drops it, as ksqlDB drops NULL GROUP BY keys) and
    joins nothing; the LEFT JOIN keeps the payment with NULL history columns (Kafka Streams 3.7+, KIP-962,
    which the ksqlDB this engine follows runs on): counts 0.0, no previous payment."""
    engine = new_engine()
    create_pipeline(engine)
    produce(
        engine,
        [
            {"id": "a", "ts": BASE_MS, "user": None, "amount": 5.0},
            {"id": "b", "ts": BASE_MS + 1000, "user": None, "amount": 6.0},
        ],
    )
    assert avro_records(engine, "creditcardfraud_user_history") == []
    rows = {k.decode(): v for k, v, _ in avro_records(engine, "features")}
    assert rows == {
        "a": {"USER_PAYMENTS_1H": 0.0, "USER_AMOUNT_1H": 0.0, "SECONDS_SINCE_PREVIOUS": None, "AMOUNT": 5.0},
        "b": {"USER_PAYMENTS_1H": 0.0, "USER_AMOUNT_1H": 0.0, "SECONDS_SINCE_PREVIOUS": None, "AMOUNT": 6.0},
    }


def test_history_table_holds_the_latest_100_structs_per_user():
    engine = new_engine()
    create_pipeline(engine, features=False)
    pays = [{"id": f"x{i}", "ts": BASE_MS + i * 1000, "user": "alice", "amount": float(i)} for i in range(105)]
    produce(engine, pays)
    *_, (key, value, _) = avro_records(engine, "creditcardfraud_user_history")
    assert key == b"alice"
    assert value == {"RECENT": entries(pays[5:])}


def test_aggregating_the_delimited_source_is_refused_as_in_ksqldb():
    engine = new_engine()
    engine.execute(SOURCE)
    with pytest.raises(KsqlStatementError, match="intermediate type that the value format can not handle"):
        engine.execute(HISTORY.format(source="creditcardfraud_source"))


def test_reduce_with_a_decimal_initial_state_is_refused_as_in_ksqldb():
    engine = new_engine()
    create_pipeline(engine, features=False)
    with pytest.raises(KsqlStatementError) as err:
        engine.execute(FEATURES.format(zero="0.0"))
    assert str(err.value) == (
        "Found invalid instance of generic schema when mapping LAMBDA (S, T) => S to LAMBDA (DECIMAL(2, 1), "
        "STRUCT<`T` BIGINT, `AMOUNT` DOUBLE>) => DOUBLE. Cannot map S to both DECIMAL(2, 1) and DOUBLE"
    )
