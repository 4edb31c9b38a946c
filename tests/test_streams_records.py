"""Batch decoding, validation and encoding: pure logic, no server."""

from __future__ import annotations

import io
import json
import struct

import fastavro
import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram

from fraudstream.bench.replay import PREPROCESSED_SCHEMA, VALUE_FIELDS
from streams.metrics import observe_many
from streams.records import (
    DECODE,
    SCHEMA,
    SCORE_SCHEMA,
    VALIDATION,
    ScoreEncoder,
    WriterLayout,
    decode_batch,
    parse_json_rows,
    schema_id,
)

PARSED = fastavro.parse_schema(PREPROCESSED_SCHEMA)
FEATURES = tuple(name.lower() for name in VALUE_FIELDS[:-1])  # a model's inputs, named in another case


def framed(record: dict, schema=PARSED, sid: int = 7) -> bytes:
    out = io.BytesIO()
    out.write(struct.pack(">bI", 0, sid))
    fastavro.schemaless_writer(out, schema, record)
    return out.getvalue()


def rows(n: int, seed: int = 0) -> list[dict]:
    x = np.random.default_rng(seed).normal(size=(n, len(FEATURES)))
    return [{**dict(zip(VALUE_FIELDS, map(float, row))), "CLASS": i % 3 or None} for i, row in enumerate(x)]


def test_fast_path_equals_fastavro_and_routes_bad_records():
    layout = WriterLayout.from_schema(7, PREPROCESSED_SCHEMA, FEATURES)
    assert layout.fast and layout.uniform_tag is not None and layout.positions is None and layout.error is None
    good = rows(50)
    values = [framed(r) for r in good]
    bad = {
        3: {**good[3], "V5": None},
        8: {**good[8], "AMOUNT": float("inf")},
        9: {**good[9], "HOUR_OF_DAY": float("nan")},
    }
    for i, r in bad.items():
        values[i] = framed(r)
    values[20] = values[20][:100]  # truncated
    values[21] = values[21] + b"\x00\x00"  # trailing garbage after a valid record
    decoded = decode_batch(values, layout)
    assert {i: e.reason for i, e in decoded.errors.items()} == {
        3: VALIDATION,
        8: VALIDATION,
        9: VALIDATION,
        20: DECODE,
        21: DECODE,
    }
    assert "V5" in str(decoded.errors[3])
    for j, i in enumerate(decoded.index.tolist()):
        expected = [good[i][name] for name in VALUE_FIELDS[:-1]]
        assert decoded.features[j].tolist() == expected


def test_other_layouts_fall_back_to_fastavro_and_wrong_schemas_are_refused():
    reordered = {**PREPROCESSED_SCHEMA, "fields": list(reversed(PREPROCESSED_SCHEMA["fields"]))}
    layout = WriterLayout.from_schema(8, reordered, FEATURES)
    assert not layout.fast and layout.error is None  # CLASS, an int, now comes before the features
    good = rows(5)
    decoded = decode_batch([framed(r, fastavro.parse_schema(reordered), 8) for r in good], layout)
    assert not decoded.errors
    assert decoded.features.tolist() == [[r[name] for name in VALUE_FIELDS[:-1]] for r in good]

    other = WriterLayout.from_schema(
        9, {"type": "record", "name": "X", "fields": [{"name": "TIME", "type": "double"}]}, FEATURES
    )
    assert "lacks the model's input fields" in other.error
    decoded = decode_batch([b"\x00\x00\x00\x00\x09\x00"], other)
    assert decoded.errors[0].reason == SCHEMA


MIXED = {
    "type": "record",
    "name": "KsqlDataSourceSchema",
    "fields": [
        {"name": "HOUR_OF_DAY", "type": ["null", "double"]},
        {"name": "RATIO", "type": "float"},
        {"name": "ONLINE", "type": ["boolean", "null"]},
        {"name": "SPARE", "type": ["null", "double"]},
        {"name": "FLAG", "type": "boolean"},
        {"name": "AMOUNT", "type": ["null", "double"]},
        {"name": "COUNTRY", "type": ["null", "string"]},
        {"name": "N", "type": ["null", "long"]},
    ],
}


def mixed_rows(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {
            "HOUR_OF_DAY": float(rng.integers(24)),
            "RATIO": float(np.float32(rng.normal())),
            "ONLINE": bool(rng.integers(2)),
            "SPARE": float(rng.normal()),
            "FLAG": bool(rng.integers(2)),
            "AMOUNT": float(rng.exponential(50)),
            "COUNTRY": ["FR", "DE", None][i % 3],
            "N": int(rng.integers(-1000, 1000)),
        }
        for i in range(n)
    ]


def test_any_flat_schema_of_fixed_width_fields_is_decoded_by_name_with_numpy():
    model = ("amount", "Online", "ratio", "hour_of_day", "flag")  # a model's order, not the record's
    layout = WriterLayout.from_schema(11, MIXED, model)
    assert layout.fast and layout.uniform_tag is None and layout.error is None
    assert layout.feature_fields == ("AMOUNT", "ONLINE", "RATIO", "HOUR_OF_DAY", "FLAG")
    parsed = fastavro.parse_schema(MIXED)
    good = mixed_rows(60)
    bad = {4: {**good[4], "ONLINE": None}, 5: {**good[5], "AMOUNT": float("nan")}}
    values = [framed(r, parsed, 11) for r in [bad.get(i, r) for i, r in enumerate(good)]]
    values[6] = framed({**good[6], "SPARE": None}, parsed, 11)  # a null outside the model: fastavro reads it
    values[7] = values[7][:12]  # truncated
    flipped = bytearray(values[8])
    flipped[5 + 9 + 4 + 2 + 9] = 7  # FLAG neither 0 nor 1: the fast path leaves it to fastavro, which says true
    values[8] = bytes(flipped)
    good[8] = {**good[8], "FLAG": True}
    decoded = decode_batch(values, layout)
    assert {i: e.reason for i, e in decoded.errors.items()} == {4: VALIDATION, 5: VALIDATION, 7: DECODE}
    assert sorted(decoded.index.tolist()) == [i for i in range(60) if i not in (4, 5, 7)]
    for j, i in enumerate(decoded.index.tolist()):
        expected = [float(good[i][f]) for f in layout.feature_fields]
        assert decoded.features[j].tolist() == expected

    # a double-only prefix in another order is one strided view, columns picked by position
    uniform = WriterLayout.from_schema(7, PREPROCESSED_SCHEMA, ("v2", "Hour_Of_Day", "AMOUNT"))
    assert uniform.uniform_tag is not None and uniform.positions.tolist() == [2, 0, 29]
    records = rows(5)
    decoded = decode_batch([framed(r) for r in records], uniform)
    assert decoded.features.tolist() == [[r["V2"], r["HOUR_OF_DAY"], r["AMOUNT"]] for r in records]


def test_varints_before_a_feature_go_through_fastavro_and_wrong_types_are_schema_errors():
    layout = WriterLayout.from_schema(12, MIXED, ("N", "AMOUNT"))
    assert not layout.fast and layout.error is None
    good = mixed_rows(4, seed=1)
    decoded = decode_batch([framed(r, fastavro.parse_schema(MIXED), 12) for r in good], layout)
    assert decoded.features.tolist() == [[float(r["N"]), r["AMOUNT"]] for r in good] and not decoded.errors
    assert "non-numeric input fields ['COUNTRY']" in WriterLayout.from_schema(12, MIXED, ("COUNTRY",)).error
    missing = WriterLayout.from_schema(12, MIXED, ("AMOUNT", "V1"))
    assert "lacks the model's input fields ['V1']" in missing.error
    assert {
        e.reason for e in decode_batch([framed(good[0], fastavro.parse_schema(MIXED), 12)], missing).errors.values()
    } == {SCHEMA}


def test_schema_id_and_score_encoding_matches_fastavro():
    assert schema_id(b"\x00\x00\x00\x01\x02rest") == 258
    for value in (None, b"", b"\x01\x00\x00\x00\x01", b"\x00\x00"):
        with pytest.raises(ValueError, match="not Confluent Avro"):
            schema_id(value)
    parsed = fastavro.parse_schema(json.loads(json.dumps(SCORE_SCHEMA)))
    encoder = ScoreEncoder(42, 0.5, "fraud", 3, 1, "ab" * 32, 1_700_000_000_123)
    cases = [
        ("p-1", 2, 10, 1_700_000_000_000, 0.25, False),
        (None, 0, 0, 0, 7.5, True),
        ("ü-" * 40, 65, 2**40, 2**62, -1e-300, True),
        ("", 1, 127, -1, 0.0, False),
        ("tail\x00", 3, 128, -(2**63), 1e300, False),
        ("x" * 300, 2**31 - 1, 2**63 - 1, 63, 0.5, True),
    ]
    ids, partitions, offsets, stamps, scores, frauds = zip(*cases)
    values = encoder.encode(
        [None if pid is None else pid.encode() for pid in ids],
        np.array(partitions),
        np.array(offsets),
        np.array(stamps),
        np.array(scores),
        np.array(frauds),
    )
    assert len(values) == len(cases) and encoder.encode([], *[np.empty(0)] * 5) == []
    for data, (pid, partition, offset, ts, score, fraud) in zip(values, cases):
        assert schema_id(data) == 42
        expected = io.BytesIO()
        fastavro.schemaless_writer(
            expected,
            parsed,
            {
                "payment_id": pid,
                "source_partition": partition,
                "source_offset": offset,
                "event_timestamp": ts,
                "score": score,
                "threshold": 0.5,
                "is_fraud": fraud,
                "model_name": "fraud",
                "model_version": 3,
                "threshold_version": 1,
                "ksql_hash": "ab" * 32,
                "scored_at": 1_700_000_000_123,
            },
        )
        assert data[5:] == expected.getvalue()


def test_json_rows_for_the_score_view():
    row = {name.lower(): 1.5 for name in FEATURES}
    matrix, ids = parse_json_rows([{**row, "payment_id": "a"}, row], FEATURES)
    assert matrix.shape == (2, len(FEATURES)) and ids == ["a", None]
    with pytest.raises(ValueError, match="missing fields"):
        parse_json_rows({"time": 1}, FEATURES)
    with pytest.raises(ValueError, match="must be a finite number"):
        parse_json_rows({**row, "v1": None}, FEATURES)
    with pytest.raises(ValueError, match="non-empty list"):
        parse_json_rows([], FEATURES)
    # another model's inputs, in its order; JSON booleans only where the model's input is a boolean
    matrix, _ = parse_json_rows(
        {"ONLINE": True, "AMOUNT": 2.5, "x": "ignored"}, ("Amount", "online"), ("double", "boolean")
    )
    assert matrix.tolist() == [[2.5, 1.0]]
    with pytest.raises(ValueError, match="Amount must be a finite number"):
        parse_json_rows({"ONLINE": True, "AMOUNT": True}, ("Amount", "online"), ("double", "boolean"))


def test_observe_many_matches_one_by_one():
    registry = CollectorRegistry()
    bulk = Histogram("bulk", "b", buckets=(0.1, 1, 10), registry=registry)
    single = Histogram("single", "s", buckets=(0.1, 1, 10), registry=registry)
    values = np.array([0.05, 0.1, 0.5, 1.0, 3, 10, 11, 100])
    observe_many(bulk, values)
    for v in values:
        single.observe(v)
    samples = {
        s.name.split("_", 1)[1] + str(s.labels): s.value
        for m in registry.collect()
        for s in m.samples
        if m.name == "bulk"
    }
    expected = {
        s.name.split("_", 1)[1] + str(s.labels): s.value
        for m in registry.collect()
        for s in m.samples
        if m.name == "single"
    }
    samples.pop("created{}"), expected.pop("created{}")
    assert samples == pytest.approx(expected)
