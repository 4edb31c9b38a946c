"""Dataset sources over the pipeline itself: a Kafka topic by offsets, the lake the S3 sink writes, and the
point-in-time training set that joins the features as served with the labels known at a cutoff.

All run against the session's real stack: records produced with confluent-kafka's AvroSerializer
through the Schema Registry, and objects written with fastavro / pyarrow into SeaweedFS in the S3 sink's
documented layout.
"""

from __future__ import annotations

import io
import json
import math

import fastavro
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from fraudstream.kafka import ensure_topic, producer_config
from fraudstream.s3 import s3_client
from models.datasets import KafkaSource, LakeSource, ServedSource, load_dataset, source_from_description
from models.reference import served_features
from producers.generate import generate_payments

FIELDS = ["HOUR_OF_DAY", *(f"V{i}" for i in range(1, 29)), "AMOUNT"]
#: The value schema ksqlDB gives creditcardfraud_preprocessed_avro (nullable fields, upper-case names).
PREPROCESSED_SCHEMA = {
    "type": "record",
    "name": "KsqlDataSourceSchema",
    "namespace": "io.confluent.ksql.avro_schemas",
    "fields": [
        *({"name": f, "type": ["null", "double"], "default": None} for f in FIELDS),
        {"name": "ID", "type": ["null", "string"], "default": None},
        {"name": "EVENT_TIME", "type": ["null", "long"], "default": None},
    ],
}


def value_of(row: pd.Series) -> dict:
    """The served record of one payment row (extended layout), as ksql/020 writes it."""
    served = served_features(row.to_frame().T.reset_index(drop=True)).iloc[0]
    value = {f: float(served[f]) for f in FIELDS}
    value["ID"], value["EVENT_TIME"] = str(served["ID"]), int(served["EVENT_TIME"])
    return value


def create_topic(addresses, topic: str, partitions: int) -> None:
    ensure_topic(addresses.bootstrap_servers, topic, partitions)


def produce_payments(addresses, topic: str, frame: pd.DataFrame, partitions: int) -> None:
    create_topic(addresses, topic, partitions)
    serializer = AvroSerializer(
        SchemaRegistryClient({"url": addresses.schema_registry_url}), json.dumps(PREPROCESSED_SCHEMA)
    )
    context = SerializationContext(topic, MessageField.VALUE)
    producer = Producer(producer_config(addresses.bootstrap_servers))
    for i, (_, row) in enumerate(frame.iterrows()):
        producer.produce(
            topic, key=row["Id"].encode(), value=serializer(value_of(row), context), partition=i % partitions
        )
    assert producer.flush(30) == 0


def test_kafka_topic_by_offsets_is_pinned_and_reproducible(stack, topic_name):
    addresses = stack.addresses
    frame = generate_payments(600, seed=3, fraud_rate=0.02)
    produce_payments(addresses, topic_name, frame, partitions=2)

    source = KafkaSource(
        topic_name, bootstrap_servers=addresses.bootstrap_servers, schema_registry_url=addresses.schema_registry_url
    )
    dataset = load_dataset(source, batch_rows=128, progress=True)
    d = dataset.description
    # "to the end" resolved to the true end offsets (the broker's own "latest" would say far fewer)
    assert d["source"]["partitions"] == {"0": {"start": 0, "end": 300}, "1": {"start": 0, "end": 300}}
    assert d["rows"] == 600 and "Class" not in dataset.frame.columns  # the features alone carry no label
    loaded = dataset.frame.set_index("ID").loc[frame["Id"]]
    assert loaded["V7"].tolist() == frame["V7"].tolist()
    assert loaded["EVENT_TIME"].tolist() == served_features(frame)["EVENT_TIME"].tolist()

    # more records arrive: the stored description still loads exactly the same rows
    late = generate_payments(50, seed=9)
    producer = Producer(producer_config(addresses.bootstrap_servers))
    serializer = AvroSerializer(
        SchemaRegistryClient({"url": addresses.schema_registry_url}), json.dumps(PREPROCESSED_SCHEMA)
    )
    context = SerializationContext(topic_name, MessageField.VALUE)
    for _, row in late.iterrows():
        producer.produce(topic_name, key=b"late", value=serializer(value_of(row), context), partition=0)
    assert producer.flush(30) == 0
    again = load_dataset(source_from_description(d["source"]), batch_rows=1000)
    assert again.description["rows"] == 600
    pd.testing.assert_frame_equal(
        again.frame.sort_values("ID").reset_index(drop=True), dataset.frame.sort_values("ID").reset_index(drop=True)
    )

    # an explicit range per partition
    part = load_dataset(
        KafkaSource(topic_name, ((0, 100, 110), (1, 0, 0)), addresses.bootstrap_servers, addresses.schema_registry_url)
    )
    assert part.frame["ID"].tolist() == frame["Id"].iloc[200:220:2].tolist()


def test_kafka_records_that_are_not_payments_are_set_aside(stack, topic_name):
    addresses = stack.addresses
    create_topic(addresses, topic_name, 1)
    serializer = AvroSerializer(
        SchemaRegistryClient({"url": addresses.schema_registry_url}), json.dumps(PREPROCESSED_SCHEMA)
    )
    context = SerializationContext(topic_name, MessageField.VALUE)
    good = value_of(generate_payments(1, seed=1).iloc[0])
    producer = Producer(producer_config(addresses.bootstrap_servers))
    producer.produce(topic_name, key=b"a", value=serializer({**good, "ID": None}, context))  # the key names it
    producer.produce(topic_name, key=b"b", value=serializer({**good, "AMOUNT": None}, context))
    producer.produce(topic_name, key=b"c", value=b"not avro")
    producer.produce(topic_name, key=b"d", value=serializer({**good, "V3": None}, context))
    assert producer.flush(30) == 0
    dataset = load_dataset(
        KafkaSource(
            topic_name, bootstrap_servers=addresses.bootstrap_servers, schema_registry_url=addresses.schema_registry_url
        )
    )
    assert dataset.frame["ID"].tolist() == ["a"]
    reasons = {r.line: r.reason for r in dataset.rejected}
    assert reasons[1] == "['AMOUNT'] missing or not a number"
    assert reasons[2].startswith("value is not avro")
    assert reasons[3] == "['V3'] missing or not a number"
    assert dataset.description["rejected_rows"] == 3


def put(client, bucket: str, key: str, body: bytes) -> None:
    client.put_object(Bucket=bucket, Key=key, Body=body)


def avro_object(frame: pd.DataFrame) -> bytes:
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(PREPROCESSED_SCHEMA), [value_of(r) for _, r in frame.iterrows()])
    return out.getvalue()


def parquet_object(frame: pd.DataFrame) -> bytes:
    table = pa.Table.from_pylist([value_of(r) for _, r in frame.iterrows()])
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


def test_lake_objects_in_the_s3_sink_layout(stack, topic_name):
    addresses = stack.addresses
    client = s3_client(addresses.s3_endpoint_url)
    bucket, topic = addresses.bucket, topic_name
    frame = generate_payments(500, seed=5, fraud_rate=0.02)
    base = f"lake-test/{topic}"
    put(client, bucket, f"{base}/partition=0/{topic}+0+0000000000.avro", avro_object(frame.iloc[0:200]))
    put(client, bucket, f"{base}/partition=0/{topic}+0+0000000200.avro", avro_object(frame.iloc[200:300]))
    put(client, bucket, f"{base}/partition=1/{topic}+1+0000000000.parquet", parquet_object(frame.iloc[300:500]))
    put(client, bucket, f"{base}/partition=1/not-a-sink-object.txt", b"ignored")

    source = LakeSource(topic, bucket, "lake-test", addresses.s3_endpoint_url)
    sizes = [len(b) for b in source.pinned().batches(batch_rows=150)]
    assert sum(sizes) == 500 and max(sizes) <= 150
    dataset = load_dataset(source, batch_rows=150, progress=True)
    d = dataset.description
    objects = [
        (o["key"].rsplit("/", 1)[1], o["partition"], o["start_offset"], o["end_offset"]) for o in d["source"]["objects"]
    ]
    assert objects == [
        (f"{topic}+0+0000000000.avro", 0, 0, 199),
        (f"{topic}+0+0000000200.avro", 0, 200, 299),
        (f"{topic}+1+0000000000.parquet", 1, 0, 199),
    ]
    assert all(len(o["etag"]) >= 32 and o["size"] > 0 for o in d["source"]["objects"])
    assert d["rows"] == 500
    assert dataset.frame["V12"].tolist() == frame["V12"].tolist()
    assert dataset.frame["EVENT_TIME"].tolist() == served_features(frame)["EVENT_TIME"].tolist()
    assert dataset.frame["ID"].tolist() == frame["Id"].tolist()

    # a new object after describing is not part of the dataset; a changed one is an error
    put(client, bucket, f"{base}/partition=0/{topic}+0+0000000300.avro", avro_object(frame.iloc[0:10]))
    assert load_dataset(source_from_description(d["source"])).description["rows"] == 500
    put(client, bucket, f"{base}/partition=0/{topic}+0+0000000200.avro", avro_object(frame.iloc[200:299]))
    with pytest.raises(ValueError, match="has changed since it was described"):
        load_dataset(source_from_description(d["source"]))


def test_lake_without_objects_is_a_clear_error(stack, topic_name):
    with pytest.raises(ValueError, match="no Avro or Parquet objects"):
        load_dataset(LakeSource(topic_name, stack.addresses.bucket, "topics", stack.addresses.s3_endpoint_url))


def test_lake_record_without_a_feature_is_rejected(stack, topic_name):
    addresses = stack.addresses
    client = s3_client(addresses.s3_endpoint_url)
    frame = generate_payments(3, seed=2)
    records = [value_of(r) for _, r in frame.iterrows()]
    records[1]["V5"] = None
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(PREPROCESSED_SCHEMA), records)
    key = f"topics/{topic_name}/partition=0/{topic_name}+0+0000000040.avro"
    put(client, addresses.bucket, key, out.getvalue())
    dataset = load_dataset(LakeSource(topic_name, addresses.bucket, endpoint_url=addresses.s3_endpoint_url))
    assert len(dataset.frame) == 2 and not math.isnan(dataset.frame["V1"].iloc[1])
    assert [(r.source, r.line) for r in dataset.rejected] == [(key, 41)]


def test_lake_objects_of_a_format_training_cannot_read_are_an_error(stack, topic_name):
    """A topic whose sink once wrote JSON lines: those records would silently be missing from the dataset."""
    addresses = stack.addresses
    client = s3_client(addresses.s3_endpoint_url)
    frame = generate_payments(20, seed=3)
    base = f"topics/{topic_name}/partition=0/{topic_name}"
    put(client, addresses.bucket, f"{base}+0+0000000000.avro", avro_object(frame.iloc[0:10]))
    lines = "".join(json.dumps(value_of(r)) + "\n" for _, r in frame.iloc[10:20].iterrows())
    put(client, addresses.bucket, f"{base}+0+0000000010.json", lines.encode())
    with pytest.raises(ValueError, match=r"\+0\+0000000010.json is a JSON object, which carries no schema"):
        load_dataset(LakeSource(topic_name, addresses.bucket, endpoint_url=addresses.s3_endpoint_url))


# --- the point-in-time training set: features as served, labels known at the cutoff -----------------


def produce_labels(addresses, topic: str, labels: list[tuple[str, object]]) -> None:
    """Label records as producers write them: key = payment id, JSON value (or raw bytes, for broken ones)."""
    create_topic(addresses, topic, 2)
    producer = Producer(producer_config(addresses.bootstrap_servers))
    for payment_id, value in labels:
        body = value if isinstance(value, bytes) else json.dumps(value).encode()
        producer.produce(topic, key=payment_id.encode(), value=body)
    assert producer.flush(30) == 0


def label(payment_id: str, verdict: object, at: pd.Timestamp | str) -> tuple[str, dict]:
    at_text = at if isinstance(at, str) else at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return payment_id, {"ID": payment_id, "LABEL": verdict, "LABELLED_AT": at_text}


def test_a_training_set_holds_only_what_was_known_at_the_cutoff(stack, topic_name):
    addresses = stack.addresses
    frame = generate_payments(6, seed=21)
    ids = frame["Id"].tolist()
    times = pd.to_datetime(frame["Timestamp"], utc=True, format="ISO8601").tolist()
    produce_payments(addresses, topic_name, frame, partitions=2)
    cutoff = times[-1] + pd.Timedelta(days=3)
    hour, day = pd.Timedelta(hours=1), pd.Timedelta(days=1)
    labels_topic = f"{topic_name}-labels"
    produce_labels(addresses, labels_topic, [
        label(ids[0], 1, times[0] + day),                       # known by the cutoff: an example
        label(ids[1], 1, cutoff + pd.Timedelta(seconds=1)),     # known a second after: not yet an example
        label(ids[2], 0, times[2] + hour),                      # revised before the cutoff: the later verdict
        label(ids[2], 1, times[2] + 2 * hour),
        label(ids[3], 0, times[3] + hour),                      # revised only after the cutoff: the earlier one
        label(ids[3], 1, cutoff + hour),
        label(ids[4], 1, times[4] - hour),                      # known before the payment happened: impossible
        label("ghost", 1, times[0] + day),                      # no such payment among the features
        label(ids[5], 2, times[5] + hour),                      # not 0 or 1
        label(ids[5], 1, "the day after"),                      # no time
        (ids[5], b"not json"),
    ])  # fmt: skip
    features = KafkaSource(
        topic_name, bootstrap_servers=addresses.bootstrap_servers, schema_registry_url=addresses.schema_registry_url
    )
    labels_source = KafkaSource(labels_topic, bootstrap_servers=addresses.bootstrap_servers, value_format="json")
    source = ServedSource(features, labels_source, cutoff.strftime("%Y-%m-%dT%H:%M:%SZ"))
    dataset = load_dataset(source)
    got = dict(zip(dataset.frame["ID"], dataset.frame["Class"]))
    assert got == {ids[0]: 1, ids[2]: 1, ids[3]: 0}  # ids[1]'s label and ids[3]'s fraud verdict would leak
    reasons = sorted(r.reason for r in dataset.rejected)
    assert len(reasons) == 4
    assert any(r.startswith(f"label of payment {ids[4]} known at") and "before the payment" in r for r in reasons)
    assert "LABEL must be 0 or 1, got 2" in reasons
    assert any(r.startswith("LABELLED_AT 'the day after' is not") for r in reasons)
    assert any(r.startswith("value is not json") for r in reasons)
    counts = dataset.description["source"]["counts"]
    assert counts["labels_without_features"] == 1 and counts["labels_after_cutoff"] == 2
    assert dataset.description["source"]["cutoff"] == cutoff.strftime("%Y-%m-%dT%H:%M:%SZ")

    # the description loads the same examples, whatever arrives later
    produce_labels(addresses, labels_topic, [label(ids[1], 0, times[1] + hour)])
    again = load_dataset(source_from_description(dataset.description["source"]))
    assert dict(zip(again.frame["ID"], again.frame["Class"])) == got


def test_the_features_carry_nothing_from_the_label(stack, topic_name):
    """Scoring and training read the same served columns: the label exists only in the training set's join."""
    addresses = stack.addresses
    frame = generate_payments(20, seed=8, fraud_rate=0.2)
    produce_payments(addresses, topic_name, frame, partitions=1)
    served = load_dataset(
        KafkaSource(
            topic_name, bootstrap_servers=addresses.bootstrap_servers, schema_registry_url=addresses.schema_registry_url
        )
    ).frame
    assert not any("class" in c.lower() or "label" in c.lower() for c in served.columns)
