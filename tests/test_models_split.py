"""Train/validation/test segregation: chronological, random, explicit; uneven splits warn."""

import warnings

import pandas as pd
import pytest

from models.split import UnevenSplitWarning, chronological_split, explicit_split, random_split
from producers.generate import generate_payments


@pytest.fixture(scope="module")
def payments() -> pd.DataFrame:
    # Shuffled so that file order is not time order.
    return generate_payments(5_000, seed=3, fraud_rate=0.02).sample(frac=1.0, random_state=0)


def test_chronological_split_puts_the_past_in_training(payments):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        split = chronological_split(payments)
    assert [len(p) for p in split.parts().values()] == [3_000, 1_000, 1_000]
    stamps = {n: pd.to_datetime(p["Timestamp"]) for n, p in split.parts().items()}
    assert stamps["train"].max() <= stamps["validation"].min()
    assert stamps["validation"].max() <= stamps["test"].min()
    assert split.describe()["by"] == "Timestamp" and split.warnings == []


def test_chronological_split_by_time_when_no_timestamp(payments):
    split = chronological_split(payments.drop(columns=["Timestamp"]), fractions=(0.8, 0.0, 0.2))
    assert split.details["by"] == "Time" and len(split.validation) == 0
    assert split.train["Time"].max() <= split.test["Time"].min()


def test_random_split_is_seeded(payments):
    a, b, c = (random_split(payments, seed=s) for s in (7, 7, 8))
    assert a.test["Id"].tolist() == b.test["Id"].tolist()
    assert a.test["Id"].tolist() != c.test["Id"].tolist()
    assert set(a.train["Id"]).isdisjoint(a.test["Id"])


def test_explicit_split_by_ids(payments):
    ids = payments["Id"].tolist()
    split = explicit_split(payments, train=ids[:100], validation=ids[100:150], test=ids[150:200], by="Id", min_frauds=0)
    assert split.test["Id"].tolist() == ids[150:200]
    with pytest.raises(ValueError, match="more than one part"):
        explicit_split(payments, train=ids[:10], test=ids[5:15], by="Id")
    with pytest.raises(ValueError, match="1 test keys are not in the data"):
        explicit_split(payments, train=ids[:10], test=["nope"], by="Id")


def test_explicit_split_by_index(payments):
    index = payments.index.tolist()
    split = explicit_split(payments, train=index[:20], test=index[20:40], min_frauds=0)
    assert split.train.index.tolist() == index[:20]


def test_uneven_split_returns_with_a_warning(payments):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        split = chronological_split(payments.iloc[:500], fractions=(0.8, 0.1, 0.1))
    assert len(split.test) == 50
    assert [w.category for w in caught] == [UnevenSplitWarning] * len(split.warnings)
    assert [str(w.message) for w in caught] == split.warnings
    frauds = int(split.test["Class"].sum())
    assert frauds < 10
    assert f"the test part has {frauds} frauds in 50 rows (fewer than 10)" in " ".join(split.warnings)
    assert "warnings" in split.describe()
    with pytest.warns(UnevenSplitWarning, match="fewer than 500"):
        random_split(payments, min_frauds=500)


def test_fractions_are_checked(payments):
    with pytest.raises(ValueError, match="summing to 1"):
        random_split(payments, fractions=(0.5, 0.2, 0.2))
