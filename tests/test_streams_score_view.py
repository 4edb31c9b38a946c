"""POST /score's answers (issue 16, item 11): every score is finite JSON, or the record is refused naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from models.autoencoder import Autoencoder
from models.datasets import GeneratedSource
from models.training import train
from streams.modelsource import DirectorySource
from streams.scoring import Pipeline
from streams.settings import WorkerSettings


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """The worker's scoring path with a real autoencoder (the demo's kind), loaded as a worker loads it."""
    output = tmp_path_factory.mktemp("model")
    model_dir = train(GeneratedSource(2_000, seed=1, fraud_rate=0.05), Autoencoder(epochs=1), output_dir=output)
    model = DirectorySource(Path(model_dir.output_dir)).load()
    return Pipeline(WorkerSettings(), SimpleNamespace(current=model))  # type: ignore[arg-type]


def record(pipeline: Pipeline, **values: float) -> dict[str, float | str]:
    names = pipeline.holder.current.feature_names
    return {"payment_id": "p1", **dict.fromkeys(names, 0.0), **values}


def test_an_amount_no_score_can_follow_is_refused_naming_the_field(pipeline: Pipeline) -> None:
    with pytest.raises(ValueError, match=r"record 1: field AMOUNT \(1e\+308\) is out of the range"):
        pipeline.score_rows([record(pipeline, AMOUNT=12.5), record(pipeline, AMOUNT=1e308)])


def test_every_answered_score_is_strict_json(pipeline: Pipeline) -> None:
    answer = pipeline.score_rows([record(pipeline, AMOUNT=12.5), record(pipeline, AMOUNT=1e6, V1=-40.0)])
    text = json.dumps(answer, allow_nan=False)  # raises on Infinity or NaN
    assert [row["payment_id"] for row in json.loads(text)["scores"]] == ["p1", "p1"]
