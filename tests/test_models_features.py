"""A model's input columns, learnt from the frame it is trained on, and the checks that guard them (pure logic)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from models.features import (
    LABEL_COLUMN,
    NON_FEATURE_COLUMNS,
    FeatureMismatchError,
    FeatureSet,
    check_columns,
    feature_matrix,
    has_label,
    is_feature,
    labels,
)

FEATURE_COLUMNS = ("Time", *(f"V{i}" for i in range(1, 29)), "Amount")  # this test's own frame, not the models'


def frame(rows: int = 3) -> pd.DataFrame:
    data = np.arange(rows * len(FEATURE_COLUMNS), dtype=float).reshape(rows, -1)
    out = pd.DataFrame(data, columns=list(FEATURE_COLUMNS))
    out[LABEL_COLUMN] = [0, 1, 0][:rows]
    return out


def test_inputs_are_the_frames_columns_less_the_declared_non_features():
    df = frame().assign(Id=["a", "b", "c"], Timestamp="2018-12-18T12:00:00Z", User="Kai", EVENT_TIME=1)
    learnt = FeatureSet.learn(df, ksql_sha256="ab" * 32)
    assert learnt.names == FEATURE_COLUMNS and learnt.types == ("double",) * 30 and learnt.ksql_sha256 == "ab" * 32
    assert LABEL_COLUMN in NON_FEATURE_COLUMNS and not is_feature("class") and not is_feature("payment_id")
    # any other set of columns is just another set of inputs, in column order, with its types
    other = pd.DataFrame(
        {"PAYMENT_ID": ["p"], "HOUR_OF_DAY": [3.0], "IS_ONLINE": [True], "N": np.array([2], np.int32), "CLASS": [0]}
    )
    assert FeatureSet.learn(other).names == ("HOUR_OF_DAY", "IS_ONLINE", "N")
    assert FeatureSet.learn(other).types == ("double", "boolean", "int")
    assert FeatureSet.learn(pa.Table.from_pandas(other, preserve_index=False)).types == ("double", "boolean", "int")
    assert FeatureSet.learn(np.zeros((2, 3))).names == ("x0", "x1", "x2")


def test_inputs_that_are_not_numbers_are_refused_by_name():
    with pytest.raises(FeatureMismatchError, match="numbers or booleans: \\{'Merchant'"):
        FeatureSet.learn(frame().assign(Merchant="shop"))
    with pytest.raises(FeatureMismatchError, match="no input columns"):
        FeatureSet.learn(pd.DataFrame({"Class": [0], "Id": ["a"]}))
    with pytest.raises(FeatureMismatchError, match="differ only in case"):
        FeatureSet(("Amount", "AMOUNT"))


def test_metadata_round_trip_and_older_files_with_names_only():
    learnt = FeatureSet.learn(frame(), ksql_sha256="cd" * 32)
    meta = learnt.to_metadata()
    assert meta["feature_names"] == list(FEATURE_COLUMNS) and meta["features"][0] == {"name": "Time", "type": "double"}
    assert FeatureSet.from_metadata(meta) == learnt
    assert FeatureSet.from_metadata({"feature_names": ["Time", "Amount"]}) == FeatureSet(("Time", "Amount"))


def test_matrix_follows_model_order_whatever_the_batch_order():
    df = frame()
    shuffled = df[list(reversed(df.columns))].assign(Id=["a", "b", "c"], User="Kai", Timestamp="2018-12-18T12:00:00Z")
    x = feature_matrix(shuffled, FEATURE_COLUMNS)
    assert x.shape == (3, 30) and x.dtype == np.float32
    np.testing.assert_array_equal(x, df[list(FEATURE_COLUMNS)].to_numpy(np.float32))


def test_upper_case_ksql_names_match():
    # A batch as a worker builds it from creditcardfraud_preprocessed_avro: the key plus the Avro value.
    df = frame().rename(columns=str.upper).assign(PAYMENT_ID=["a", "b", "c"])
    np.testing.assert_array_equal(feature_matrix(df, FEATURE_COLUMNS), feature_matrix(frame(), FEATURE_COLUMNS))


def test_missing_columns_are_named_and_columns_the_model_does_not_read_are_ignored():
    df = frame().drop(columns=["V7", "Amount"]).assign(Merchant="x")
    with pytest.raises(FeatureMismatchError) as error:
        feature_matrix(df, FEATURE_COLUMNS)
    assert "missing ['V7', 'Amount']" in str(error.value)
    # a stream that gained a column is still scorable by a model trained before it
    np.testing.assert_array_equal(
        feature_matrix(frame().assign(HOUR_OF_DAY=1.0), FEATURE_COLUMNS), feature_matrix(frame(), FEATURE_COLUMNS)
    )


def test_columns_differing_only_in_case_are_ambiguous():
    with pytest.raises(FeatureMismatchError, match="differ only in case"):
        check_columns([*FEATURE_COLUMNS, "AMOUNT"], FEATURE_COLUMNS)


def test_array_width_must_match():
    assert feature_matrix(np.zeros((2, 30)), FEATURE_COLUMNS, dtype=np.float64).dtype == np.float64
    with pytest.raises(FeatureMismatchError, match="shape \\(2, 29\\)"):
        feature_matrix(np.zeros((2, 29)), FEATURE_COLUMNS)


def test_arrow_table_and_record_batch():
    df = frame()
    table = pa.Table.from_pandas(df)
    np.testing.assert_array_equal(feature_matrix(table, FEATURE_COLUMNS), feature_matrix(df, FEATURE_COLUMNS))
    np.testing.assert_array_equal(
        feature_matrix(table.to_batches()[0], FEATURE_COLUMNS), feature_matrix(df, FEATURE_COLUMNS)
    )
    with_null = table.set_column(1, "V1", pa.array([1.0, None, 2.0]))
    with pytest.raises(FeatureMismatchError, match="'V1' has 1 null"):
        feature_matrix(with_null, FEATURE_COLUMNS)


def test_unsupported_batch_type():
    with pytest.raises(TypeError, match="expected a NumPy array"):
        feature_matrix([[0.0] * 30], FEATURE_COLUMNS)


def test_labels_accept_quoted_strings_and_reject_others():
    assert labels(pd.DataFrame({"Class": ["0", "1"]})).tolist() == [0, 1]
    with pytest.raises(ValueError, match="must be 0 or 1"):
        labels(pd.DataFrame({"Class": [0, 2]}))
    with pytest.raises(FeatureMismatchError, match="no label column"):
        labels(pd.DataFrame({"V1": [0.0]}))


def test_labels_from_arrow_and_has_label():
    df = frame()
    table = pa.Table.from_pandas(df)
    assert labels(table).tolist() == [0, 1, 0]
    assert has_label(df) and has_label(table) and not has_label(df.drop(columns=["Class"]))
    assert not has_label(np.zeros((1, 30)))


def test_a_model_of_the_features_stream_reads_its_value_columns_less_the_declared_ones():
    """The statements define the features: a frame of the stream's columns gives the stream's value columns,
    less the key and what NON_FEATURE_COLUMNS declares (whatever the statements project today)."""
    from stack.ksqldb.parser import parse

    statements = [
        s for p in sorted((Path(__file__).resolve().parents[1] / "ksql").glob("*.sql")) for s in parse(p.read_text())
    ]
    (statement,) = [s for s in statements if str(getattr(s, "name", "")).lower() == "creditcardfraud_preprocessed_avro"]
    projected = [item.alias or item.expr.name for item in statement.query.select]
    stream_frame = pd.DataFrame({name: [1.0] for name in projected})
    learnt = FeatureSet.learn(stream_frame)
    assert learnt.names == tuple(c for c in projected if c.lower() not in {n.lower() for n in NON_FEATURE_COLUMNS})
    assert "PAYMENT_ID" not in learnt.names and LABEL_COLUMN.upper() not in learnt.names and learnt.names
