"""Synthetic payments: reproducible, the right shape and fraud rate, frauds learnably different, files that parse."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from producers.generate import USERS, generate_command, generate_payments, write_csv
from producers.payments import (
    EXTENDED_COLUMNS,
    FEATURES,
    PAYMENT_COLUMNS,
    Layout,
    Payment,
    frame_payments,
    read_payments,
)


def test_columns_and_types_are_the_extended_layout():
    frame = generate_payments(500, seed=1)
    assert list(frame.columns) == list(EXTENDED_COLUMNS)
    assert frame["Id"].is_unique
    assert set(frame["User"]) <= set(USERS)
    assert frame["Class"].isin([0, 1]).all()
    assert (frame["Amount"] >= 0).all()
    assert frame["Time"].is_monotonic_increasing and frame["Time"].iloc[0] == 0
    assert frame["Timestamp"].iloc[0] == "2013-09-01T00:00:00Z"
    seconds = (pd.to_datetime(frame["Timestamp"]) - pd.Timestamp("2013-09-01", tz="UTC")).dt.total_seconds()
    assert (seconds.to_numpy() == frame["Time"].to_numpy()).all()


def test_same_seed_same_payments_other_seed_other_payments():
    pd.testing.assert_frame_equal(generate_payments(300, seed=7), generate_payments(300, seed=7))
    assert not np.allclose(generate_payments(300, seed=7)["V1"], generate_payments(300, seed=8)["V1"])
    assert set(generate_payments(10, seed=7)["Id"]).isdisjoint(generate_payments(10, seed=8)["Id"])


@pytest.mark.parametrize(
    ("n", "rate", "frauds"), [(100_000, 0.0017, 170), (1000, 0.0017, 2), (200, 0.25, 50), (10, 0.0, 0)]
)
def test_fraud_count_follows_the_rate(n, rate, frauds):
    assert generate_payments(n, seed=0, fraud_rate=rate)["Class"].sum() == frauds


def test_default_fraud_rate_is_about_the_real_one():
    frame = generate_payments(50_000)
    assert 0.0015 <= frame["Class"].mean() <= 0.0019


def test_normal_feature_scales_resemble_the_pca_data():
    frame = generate_payments(20_000, seed=2, fraud_rate=0.0)
    spread = frame[list(FEATURES)].std().to_numpy()
    assert 1.8 < spread[0] < 2.1 and 0.28 < spread[-1] < 0.38
    assert (np.diff(spread) < 0.05).all()  # shrinking from V1 to V28, like PCA components


def test_frauds_are_far_from_the_normal_centroid():
    frame = generate_payments(20_000, seed=3, fraud_rate=0.02)
    features = frame[list(FEATURES)].to_numpy() / frame.loc[frame["Class"] == 0, list(FEATURES)].std().to_numpy()
    fraud = frame["Class"].to_numpy() == 1
    distance = np.linalg.norm(features - features[~fraud].mean(axis=0), axis=1)
    assert distance[fraud].mean() > 2.5 * distance[~fraud].mean()
    # and the frauds' amounts vary more, as in the real data
    assert np.log1p(frame.loc[fraud, "Amount"]).std() > np.log1p(frame.loc[~fraud, "Amount"]).std()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="fraud_rate"):
        generate_payments(10, fraud_rate=1.5)
    with pytest.raises(ValueError, match="n must be"):
        generate_payments(-1)


@pytest.mark.parametrize("layout", list(Layout))
def test_written_files_parse_back_to_the_same_payments(layout):
    frame = generate_payments(200, seed=4, fraud_rate=0.05)
    out = io.StringIO()
    write_csv(frame, out, layout)
    parsed = list(read_payments(io.StringIO(out.getvalue()), source="synthetic.csv"))
    assert all(isinstance(item, Payment) for item in parsed) and len(parsed) == 200
    expected = list(frame_payments(frame))
    features = [p.features for p in parsed]
    assert features == [p.features for p in expected]  # floats round-trip exactly
    assert [p.amount for p in parsed] == list(frame["Amount"])
    assert [p.label for p in parsed] == (list(frame["Class"]) if layout.labelled else [None] * 200)
    assert [p.timestamp for p in parsed] == [p.timestamp for p in expected]
    if layout is Layout.EXTENDED:
        assert parsed == expected
    elif layout is Layout.PAYMENTS:  # live payments: no label column at all
        assert out.getvalue().count(",") == 200 * (len(PAYMENT_COLUMNS) - 1)
    else:
        assert out.getvalue().startswith('"Time","V1","V2"')
        assert [p.id for p in parsed[:2]] == ["synthetic-2", "synthetic-3"]


def test_generate_command_writes_a_file(tmp_path):
    target = tmp_path / "payments.csv"
    result = CliRunner().invoke(generate_command, ["-n", "50", "--seed", "5", "--layout", "kaggle", "-o", str(target)])
    assert result.exit_code == 0, result.output
    lines = target.read_text().splitlines()
    assert len(lines) == 51 and lines[0].startswith('"Time"')


def test_generate_command_refuses_a_bad_rate_in_one_line():
    result = CliRunner().invoke(generate_command, ["-n", "5", "--fraud-rate", "2"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output and "fraud-rate" in result.output


def test_a_chunk_goes_on_in_time_from_where_the_last_ended():
    first = generate_payments(500, seed=0)
    second = generate_payments(500, seed=1, start_seconds=float(first["Time"].max()) + 1)
    assert second["Time"].iloc[0] == first["Time"].max() + 1 and second["Time"].is_monotonic_increasing
    assert second["Timestamp"].iloc[0] > first["Timestamp"].iloc[-1]  # ISO-8601 text orders as time does
