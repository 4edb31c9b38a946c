"""Unit tests of the key/value formats (pure logic, no broker): DELIMITED, JSON, KAFKA and AVRO."""

import io
import struct
from decimal import Decimal

import fastavro
import pytest

from stack.ksqldb.errors import KsqlStatementError, SerdeError
from stack.ksqldb.formats import FormatInfo, InMemorySchemaRegistry, make_serde, validate
from stack.ksqldb.types import (
    BIGINT,
    BOOLEAN,
    DOUBLE,
    INTEGER,
    STRING,
    ArrayType,
    DecimalType,
    MapType,
    StructType,
)
from stack.ksqldb.values import java_double_str

COLS = [("ID", INTEGER), ("NAME", STRING), ("AMOUNT", DOUBLE), ("PRICE", DecimalType(6, 2))]


def serde(fmt, columns=COLS, is_key=False, **kw):
    return make_serde(FormatInfo(fmt, **kw), columns, is_key=is_key, topic="t", registry=InMemorySchemaRegistry())


@pytest.mark.parametrize(
    "value,text",
    [
        (1.0, "1.0"),
        (0.001, "0.001"),
        (1e-4, "1.0E-4"),
        (1e7, "1.0E7"),
        (1234567.5, "1234567.5"),
        (-2.5e-7, "-2.5E-7"),
        (float("nan"), "NaN"),
        (float("-inf"), "-Infinity"),
        (-0.0, "-0.0"),
    ],
)
def test_doubles_print_as_java_does(value, text):
    assert java_double_str(value) == text


def test_delimited_round_trip_quoting_and_nulls():
    s = serde("DELIMITED")
    assert s.deserialize(b'1,"a, b",2.5,') == [1, "a, b", 2.5, None]
    assert s.serialize([1, 'say "hi"', 1e7, Decimal("3.50")]) == b'1,"say ""hi""",1.0E7,3.50'
    assert s.serialize([-1, "x", 1.0, Decimal("1.00")]) == b'"-1",x,1.0,1.00'  # non-alphanumeric start quoted
    with pytest.raises(SerdeError, match="Unexpected field count"):
        s.deserialize(b"1,2")
    with pytest.raises(SerdeError):
        s.deserialize(b"x,a,1.0,1.0")


def test_delimited_custom_delimiter():
    s = serde("DELIMITED", delimiter="\t")
    assert s.deserialize(b"1\tx\t2.0\t") == [1, "x", 2.0, None]


def test_json_case_insensitive_fields_and_coercion():
    s = serde("JSON")
    assert s.deserialize(b'{"id": "7", "Name": 5, "AMOUNT": 1, "price": 1.005}') == [7, "5", 1.0, Decimal("1.01")]
    assert (
        s.serialize([1, "é", float("nan"), Decimal("2.50")])
        == '{"ID":1,"NAME":"é","AMOUNT":"NaN","PRICE":2.50}'.encode()
    )
    with pytest.raises(SerdeError):
        s.deserialize(b'{"ID": true}')
    with pytest.raises(SerdeError):
        s.deserialize(b"{not json")


def test_json_nested_types_and_unwrapped_single_value():
    cols = [("A", ArrayType(INTEGER)), ("M", MapType(STRING, BIGINT)), ("S", StructType((("X", BOOLEAN),)))]
    s = serde("JSON", cols)
    assert s.deserialize(b'{"a": [1, null], "m": {"k": 2}, "s": {"x": true}}') == [[1, None], {"k": 2}, {"X": True}]
    single = serde("JSON", [("V", INTEGER)], wrap_single=False)
    assert single.serialize([5]) == b"5" and single.deserialize(b"5") == [5]


def test_kafka_format_scalars_and_validation():
    assert serde("KAFKA", [("K", INTEGER)], is_key=True).serialize([7]) == struct.pack(">i", 7)
    assert serde("KAFKA", [("K", STRING)], is_key=True).deserialize(b"abc") == ["abc"]
    with pytest.raises(SerdeError, match="not 4"):
        serde("KAFKA", [("K", INTEGER)], is_key=True).deserialize(b"abc")
    with pytest.raises(KsqlStatementError, match="does not support type 'BOOLEAN'"):
        validate(FormatInfo("KAFKA"), [("K", BOOLEAN)], is_key=True)
    with pytest.raises(KsqlStatementError, match="only supports a single field"):
        validate(FormatInfo("KAFKA"), [("A", INTEGER), ("B", INTEGER)], is_key=False)


def test_avro_wire_format_schema_naming_and_round_trip():
    registry = InMemorySchemaRegistry()
    cols = COLS + [("S", StructType((("F", STRING),)))]
    s = make_serde(FormatInfo("AVRO"), cols, is_key=False, topic="payments", registry=registry)
    data = s.serialize([1, "a", 2.5, Decimal("1.5"), {"F": "x"}])
    assert data[0] == 0
    schema_id = struct.unpack(">I", data[1:5])[0]
    schema_id_latest, schema = registry.latest("payments-value")
    assert schema_id == schema_id_latest
    assert schema["name"] == "KsqlDataSourceSchema" and schema["namespace"] == "io.confluent.ksql.avro_schemas"
    nested = schema["fields"][4]["type"][1]
    assert nested["name"] == "KsqlDataSourceSchema_S"
    datum = fastavro.schemaless_reader(io.BytesIO(data[5:]), fastavro.parse_schema(schema), None)
    assert datum == {"ID": 1, "NAME": "a", "AMOUNT": 2.5, "PRICE": Decimal("1.50"), "S": {"F": "x"}}
    assert s.deserialize(data) == [1, "a", 2.5, Decimal("1.50"), {"F": "x"}]
    with pytest.raises(SerdeError, match="magic byte"):
        s.deserialize(b"\x01\x00\x00\x00\x01")


def test_avro_validation_messages():
    with pytest.raises(KsqlStatementError, match="Avro only supports MAPs with STRING keys"):
        validate(FormatInfo("AVRO"), [("M", MapType(INTEGER, STRING))], is_key=False)
    with pytest.raises(KsqlStatementError, match="Illegal initial character"):
        validate(FormatInfo("AVRO"), [("1X", INTEGER)], is_key=False)


def test_compiled_avro_encoder_writes_the_same_bytes_as_fastavro():
    import random

    from stack.ksqldb.formats.avro import record_encoder, schema_for
    from stack.ksqldb.types import BYTES

    cols = [("A", DOUBLE), ("B", INTEGER), ("C", BIGINT), ("D", STRING), ("E", BOOLEAN), ("F", BYTES)]
    schema = fastavro.parse_schema(schema_for(cols, False, None))
    encode = record_encoder(cols)
    rng = random.Random(7)
    for _ in range(500):
        values = [
            rng.choice([None, rng.uniform(-1e9, 1e9), float("inf")]),
            rng.choice([None, rng.randint(-(2**31), 2**31 - 1)]),
            rng.choice([None, rng.randint(-(2**63), 2**63 - 1)]),
            rng.choice([None, "é" * rng.randint(0, 200)]),
            rng.choice([None, True, False]),
            rng.choice([None, bytes(rng.randint(0, 300))]),
        ]
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema, dict(zip([n for n, _ in cols], values)))
        assert encode(values) == buf.getvalue()
