"""The model's input columns and the checks that guard them (pure logic, no server)."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from models.features import (
    FEATURE_COLUMNS,
    LABEL_COLUMN,
    FeatureMismatchError,
    check_columns,
    feature_matrix,
    has_label,
    labels,
)


def frame(rows: int = 3) -> pd.DataFrame:
    data = np.arange(rows * len(FEATURE_COLUMNS), dtype=float).reshape(rows, -1)
    out = pd.DataFrame(data, columns=list(FEATURE_COLUMNS))
    out[LABEL_COLUMN] = [0, 1, 0][:rows]
    return out


def test_inputs_are_the_preprocessed_value_columns_without_the_label():
    assert FEATURE_COLUMNS == ("Time", *(f"V{i}" for i in range(1, 29)), "Amount")
    assert LABEL_COLUMN not in FEATURE_COLUMNS


def test_matrix_follows_model_order_whatever_the_batch_order():
    df = frame()
    shuffled = df[list(reversed(df.columns))].assign(Id=["a", "b", "c"], User="Kai", Timestamp="2018-12-18T12:00:00Z")
    x = feature_matrix(shuffled)
    assert x.shape == (3, 30) and x.dtype == np.float32
    np.testing.assert_array_equal(x, df[list(FEATURE_COLUMNS)].to_numpy(np.float32))


def test_upper_case_ksql_names_match():
    # A batch as a worker builds it from creditcardfraud_preprocessed_avro: the key plus the Avro value.
    df = frame().rename(columns=str.upper).assign(PAYMENT_ID=["a", "b", "c"])
    np.testing.assert_array_equal(feature_matrix(df), feature_matrix(frame()))


def test_missing_and_unexpected_columns_are_named():
    df = frame().drop(columns=["V7", "Amount"]).assign(Merchant="x")
    with pytest.raises(FeatureMismatchError) as error:
        feature_matrix(df)
    message = str(error.value)
    assert "missing ['V7', 'Amount']" in message and "unexpected ['Merchant']" in message


def test_columns_differing_only_in_case_are_ambiguous():
    with pytest.raises(FeatureMismatchError, match="differ only in case"):
        check_columns([*FEATURE_COLUMNS, "AMOUNT"])


def test_array_width_must_match():
    assert feature_matrix(np.zeros((2, 30)), dtype=np.float64).dtype == np.float64
    with pytest.raises(FeatureMismatchError, match="shape \\(2, 29\\)"):
        feature_matrix(np.zeros((2, 29)))


def test_arrow_table_and_record_batch():
    df = frame()
    table = pa.Table.from_pandas(df)
    np.testing.assert_array_equal(feature_matrix(table), feature_matrix(df))
    np.testing.assert_array_equal(feature_matrix(table.to_batches()[0]), feature_matrix(df))
    with_null = table.set_column(1, "V1", pa.array([1.0, None, 2.0]))
    with pytest.raises(FeatureMismatchError, match="'V1' has 1 null"):
        feature_matrix(with_null)


def test_unsupported_batch_type():
    with pytest.raises(TypeError, match="expected a NumPy array"):
        feature_matrix([[0.0] * 30])


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


def test_features_are_the_preprocessed_streams_value_columns():
    """The model's inputs are exactly what ksql/020-preprocessed.sql projects, less the key and the label."""
    from pathlib import Path

    from stack.ksqldb.parser import parse

    statement = parse((Path(__file__).resolve().parents[1] / "ksql" / "020-preprocessed.sql").read_text())[0]
    projected = [item.alias or item.expr.name for item in statement.query.select]
    key, *values = projected
    assert key == "PAYMENT_ID"
    assert [v.lower() for v in values] == [c.lower() for c in (*FEATURE_COLUMNS, LABEL_COLUMN)]
