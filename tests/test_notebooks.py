"""The notebooks run headless against the session's embedded stack, and are committed without outputs.

Each notebook is executed with nbclient in the `python3` kernel (ipykernel installed in this
interpreter's environment). Parameters are overridden as papermill does: a cell inserted after the
one tagged `parameters`. Addresses reach the kernel through the environment (it inherits ours).
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from fraudstream.kafka import end_offsets
from models.registry import ModelRegistry

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
KERNEL = "python3"


def committed_notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def with_parameters(notebook: nbformat.NotebookNode, **values: Any) -> nbformat.NotebookNode:
    """A copy of `notebook` with a cell setting `values` right after its `parameters` cell (papermill's way)."""
    copy = nbformat.from_dict(notebook)
    index = next(i for i, cell in enumerate(copy.cells) if "parameters" in cell.metadata.get("tags", []))
    cell = nbformat.v4.new_code_cell("\n".join(f"{name} = {value!r}" for name, value in values.items()))
    cell.metadata["tags"] = ["injected-parameters"]
    copy.cells.insert(index + 1, cell)
    return copy


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def execute(path: Path, env: dict[str, str], **parameters: Any) -> nbformat.NotebookNode:
    notebook = with_parameters(nbformat.read(path, as_version=4), **parameters)
    with environment(env):
        NotebookClient(
            notebook, kernel_name=KERNEL, timeout=600, resources={"metadata": {"path": str(NOTEBOOKS)}}
        ).execute()
    return notebook


def text_outputs(notebook: nbformat.NotebookNode) -> str:
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", "") + output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def images(notebook: nbformat.NotebookNode) -> int:
    return sum("image/png" in output.get("data", {}) for cell in notebook.cells for output in cell.get("outputs", []))


@pytest.mark.parametrize("path", committed_notebooks(), ids=lambda p: p.name)
def test_committed_notebooks_carry_no_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == KERNEL
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, f"{path.name} has no code"
    assert [i for i, cell in enumerate(code) if cell.outputs] == [], f"{path.name} has outputs"
    assert [i for i, cell in enumerate(code) if cell.execution_count is not None] == [], (
        f"{path.name} has execution counts"
    )


def test_the_notebooks_are_committed() -> None:
    assert [p.name for p in committed_notebooks()] == [
        "01-explore-with-ksql.ipynb",
        "02-train-autoencoder.ipynb",
        "03-handbook-pipeline.ipynb",
    ]


def test_the_kernel_is_this_environments_python() -> None:
    """CI installs ipykernel into its venv; the `python3` kernel must then run that venv's interpreter."""
    from jupyter_client.manager import KernelManager

    command = KernelManager(kernel_name=KERNEL).format_kernel_cmd()
    assert Path(command[0]) == Path(sys.executable), command


def test_notebooks_explore_then_train_and_promote(stack, tmp_path) -> None:
    prefix = f"nb{uuid.uuid4().hex[:8]}"
    model = f"notebook-{prefix}"
    env = {**stack.addresses.to_env(), "FRAUDSTREAM_MODEL_CACHE": str(tmp_path / "cache")}
    payments, unlabelled = 1000, 0.05

    explored = execute(
        NOTEBOOKS / "01-explore-with-ksql.ipynb",
        env,
        PREFIX=prefix,
        GENERATE=payments,
        FRAUD_RATE=0.03,
        UNLABELLED=unlabelled,
    )
    bootstrap = stack.addresses.bootstrap_servers
    source = sum(end_offsets(bootstrap, f"{prefix}_creditcardfraud_source").values())
    preprocessed = sum(end_offsets(bootstrap, f"{prefix}_creditcardfraud_preprocessed_avro").values())
    labelled = sum(end_offsets(bootstrap, f"{prefix}_creditcardfraud_labels").values())
    assert source == preprocessed == payments  # every payment is served for scoring, labelled or not
    assert labelled == payments - round(payments * unlabelled)
    shown = text_outputs(explored)
    counted = re.search(r"(\d+) payments, (\d+) labels, (\d+) frauds", shown)
    assert counted is not None, shown
    assert (int(counted[1]), int(counted[2])) == (payments, labelled)
    frauds = int(counted[3])
    assert frauds > 0
    assert images(explored) >= 1
    assert "unknown" in shown  # the enriched stream's IFNULL default, next to a user left empty

    trained = execute(
        NOTEBOOKS / "02-train-autoencoder.ipynb",
        env,
        PREFIX=prefix,
        MODEL_NAME=model,
        EPOCHS=2,
        HIDDEN=(8, 4, 4),
        BATCH_SIZE=64,
    )
    shown = text_outputs(trained)
    assert re.search(
        rf"features from the kafka, labels known at \S+: {labelled} payments, {frauds} frauds, 0 rejected", shown
    ), shown
    assert "version 1 promoted (first model)" in shown
    assert images(trained) >= 5  # the learning curve and the four evaluation plots

    registry = ModelRegistry.from_addresses(stack.addresses, cache_dir=tmp_path / "cache")
    assert registry.index(model)["production"] == 1
    # On held-out payments (the latest, by time) the model flags about its budget of 0.5%, not nearly all of
    # them, as a model fed the raw Time counter did: at most ten times the budget on this small a stream.
    held_out = registry.version(model, 1)["metrics"]
    assert held_out["rows"] > 0 and held_out["alert_rate"] <= 0.05, held_out

    # Again: version 2 now faces production on the same held-out rows, and the notebook reports what the gate said.
    retrained = text_outputs(
        execute(
            NOTEBOOKS / "02-train-autoencoder.ipynb",
            env,
            PREFIX=prefix,
            MODEL_NAME=model,
            EPOCHS=2,
            HIDDEN=(8, 4, 4),
            BATCH_SIZE=64,
        )
    )
    promoted = "version 2 promoted over version 1" in retrained
    refused = "version 2 stays a candidate" in retrained and "does not beat production version 1" in retrained
    assert promoted != refused, retrained
    assert registry.index(model)["production"] == (2 if promoted else 1)
    assert registry.version(model, 2)["stage"] == ("production" if promoted else "candidate")


def test_the_handbook_notebook_explores_evaluates_by_the_protocol_and_promotes(stack, tmp_path) -> None:
    prefix = f"nb{uuid.uuid4().hex[:8]}"
    model = f"notebook-{prefix}"
    env = {**stack.addresses.to_env(), "FRAUDSTREAM_MODEL_CACHE": str(tmp_path / "cache")}
    ran = execute(
        NOTEBOOKS / "03-handbook-pipeline.ipynb",
        env,
        PREFIX=prefix,
        MODEL_NAME=model,
        CUSTOMERS=64,
        DAYS=24,
        WARMUP_DAYS=5,
        TRAIN_DAYS=7,
        TEST_DAYS=5,
        EPOCHS=2,
        FLUSH_SIZE=500,
        WAIT_SECONDS=600,
    )
    bootstrap = stack.addresses.bootstrap_servers
    sent, served, labelled = (
        sum(end_offsets(bootstrap, f"{prefix}_handbook_{name}").values())
        for name in ("transactions", "features", "labels")
    )
    assert sent > 1000 and served == sent and labelled == sent  # every transaction served; the simulator labels all
    shown = text_outputs(ran)
    counted = re.search(r"(\d+) transactions, (\d+) labels, (\d+) frauds", shown)
    assert counted is not None, shown
    assert (int(counted[1]), int(counted[2])) == (sent, sent) and int(counted[3]) > 0
    assert re.search(r"streamed features equal to the offline reference: transactions matched 100\.0%", shown), shown
    assert re.search(rf"lake: {sent} transactions; labels known at \S+: \d+ examples", shown), shown
    # Each kind on each feature set, by the protocol; the numbers are the run's own (between 0 and 1).
    measured = re.findall(
        r"(logistic-baseline|autoencoder) on ([^:]+): ROC-AUC ([\d.]+), AP ([\d.]+), CP@100 ([\d.]+)", shown
    )
    assert {(kind, features) for kind, features, *_ in measured} == {
        (kind, features)
        for kind in ("logistic-baseline", "autoencoder")
        for features in ("ksql/handbook (lake)", "raw fields", "offline reference")
    }, shown
    assert all(0 <= float(v) <= 1 for *_, auc, ap, cp in measured for v in (auc, ap, cp))
    assert images(ran) >= 3

    registry = ModelRegistry.from_addresses(stack.addresses, cache_dir=tmp_path / "cache")
    assert "logistic-baseline version 1 promoted (first model)" in shown
    assert registry.index(model)["production"] in (1, 2)
    promoted = "autoencoder version 2 promoted over version 1" in shown
    refused = "autoencoder version 2 stays a candidate" in shown and "does not beat production version 1" in shown
    assert promoted != refused, shown
    assert registry.index(model)["production"] == (2 if promoted else 1)
    assert registry.version(model, 1)["kind"] == "logistic-baseline"
