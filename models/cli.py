"""`fraudstream train`, `fraudstream evaluate` and `fraudstream models ...`: training and the registry from a shell.

The click objects (:data:`train_command`, :data:`evaluate_command`, :data:`models_group`) are registered
on the `fraudstream` console script by ``fraudstream/cli.py``. Addresses come from the usual environment
variables (``fraudstream.config.Addresses.from_env``). Bad arguments and failures end in one line, never a
traceback.
"""

from __future__ import annotations

import functools
import json
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from fraudstream.terminal import make_console
from fraudstream.topics import LABELS_TOPIC, PREPROCESSED_TOPIC
from models.datasets import CsvSource, DatasetSource, GeneratedSource, KafkaSource, LakeSource, ServedSource
from models.kinds import UnknownKindError, canonical_kind, create_model, kind_names, kind_parameters

console = make_console()

DEFAULT_NAME = "fraud"
_RANGE = re.compile(r"^(?P<p>\d+):(?P<start>\d+)-(?P<end>\d+)$")


def _one_line_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Expected failures (bad data, unknown versions, unreachable services) become one-line click errors."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError
        from confluent_kafka import KafkaException

        from models.registry import RegistryError

        try:
            return command(*args, **kwargs)
        except click.ClickException:
            raise
        except (
            RegistryError,
            ValueError,
            LookupError,
            OSError,
            TimeoutError,
            RuntimeError,
            KafkaException,
            BotoCoreError,
            ClientError,
        ) as error:
            message = " ".join(str(error).split()) or type(error).__name__
            raise click.ClickException(message) from None

    return wrapper


def dataset_options(required: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--csv / --generated / --topic / --lake (exactly one when ``required``, at most one otherwise)."""
    options = [
        click.option(
            "--csv",
            "csv_path",
            type=click.Path(exists=True, dir_okay=False),
            help="A payment CSV file (Kaggle or extended layout).",
        ),
        click.option(
            "--generated",
            type=click.IntRange(min=1),
            metavar="N",
            help="N generated payments (fraudstream generate's generator).",
        ),
        click.option("--data-seed", type=int, default=0, show_default=True, help="Seed of --generated."),
        click.option(
            "--fraud-rate",
            type=click.FloatRange(0, 1, min_open=True),
            default=0.0017,
            show_default=True,
            help="Fraud rate of --generated.",
        ),
        click.option(
            "--topic",
            metavar="TOPIC",
            help="The features as a topic served them (Avro values via the Schema Registry), with their labels.",
        ),
        click.option(
            "--offsets",
            "offset_ranges",
            multiple=True,
            metavar="P:START-END",
            help="With --topic: offsets of partition P, END exclusive (repeatable; default: "
            "every partition from the start to the end as it is now).",
        ),
        click.option(
            "--value-format",
            type=click.Choice(["avro", "json"]),
            default="avro",
            show_default=True,
            help="With --topic: how values are encoded.",
        ),
        click.option(
            "--lake",
            metavar="TOPIC",
            help="The features as the S3 sink landed a topic in the bucket, with their labels.",
        ),
        click.option("--topics-dir", default="topics", show_default=True, help="With --lake: the sink's topics.dir."),
        click.option(
            "--labels-topic",
            default=LABELS_TOPIC,
            show_default=True,
            help="With --topic or --lake: where the labels arrive (JSON: ID, LABEL, LABELLED_AT).",
        ),
        click.option(
            "--cutoff",
            metavar="TIME",
            help="With --topic or --lake: train on labels known by this ISO-8601 time [default: now].",
        ),
    ]

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def source_from_options(
    csv_path: str | None,
    generated: int | None,
    data_seed: int,
    fraud_rate: float,
    topic: str | None,
    offset_ranges: tuple[str, ...],
    value_format: str,
    lake: str | None,
    topics_dir: str,
    labels_topic: str = LABELS_TOPIC,
    cutoff: str | None = None,
    required: bool = True,
) -> DatasetSource | None:
    given = [
        flag
        for flag, value in (("--csv", csv_path), ("--generated", generated), ("--topic", topic), ("--lake", lake))
        if value is not None
    ]
    if len(given) > 1:
        raise click.UsageError(f"give one dataset, not {' and '.join(given)}")
    if not given:
        if required:
            raise click.UsageError("give a dataset: --csv FILE, --generated N, --topic TOPIC or --lake TOPIC")
        return None
    if offset_ranges and topic is None:
        raise click.UsageError("--offsets only applies to --topic")
    if cutoff is not None and topic is None and lake is None:
        raise click.UsageError("--cutoff only applies to --topic and --lake")
    if csv_path is not None:
        return CsvSource(csv_path)
    if generated is not None:
        return GeneratedSource(generated, data_seed, fraud_rate)
    if topic is not None:
        ranges = None
        if offset_ranges:
            parsed = []
            for text in offset_ranges:
                match = _RANGE.match(text)
                if match is None:
                    raise click.BadParameter(f"{text!r} is not P:START-END (e.g. 0:0-1000)", param_hint="--offsets")
                parsed.append((int(match["p"]), int(match["start"]), int(match["end"])))
            ranges = tuple(sorted(parsed))
        return ServedSource.of_topic(KafkaSource(topic, ranges, value_format=value_format), labels_topic, cutoff)
    return ServedSource.of_topic(LakeSource(lake, topics_dir=topics_dir), labels_topic, cutoff)


def _registry() -> Any:
    from models.registry import ModelRegistry

    return ModelRegistry.from_addresses()


def _metrics_table(metrics: dict[str, Any], title: str) -> Table:
    table = Table("metric", "value", title=title)
    for key in (
        "rows",
        "frauds",
        "roc_auc",
        "average_precision",
        "precision",
        "recall",
        "f1",
        "alert_rate",
        "recall_at_budget",
        "threshold",
    ):
        value = metrics.get(key)
        table.add_row(key, "n/a" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value)))
    confusion = metrics.get("confusion") or {}
    table.add_row("confusion (tn fp fn tp)", " ".join(str(confusion.get(k)) for k in ("tn", "fp", "fn", "tp")))
    return table


class KindChoice(click.Choice):
    """``--kind``: the kinds registered in :mod:`models.kinds`, read when asked (so a kind registered after this
    module was imported is offered too). A kind's former name is accepted and stands for the kind."""

    def __init__(self) -> None:
        self.case_sensitive = True  # click.Choice's own attribute; its choices come from the property

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        return kind_names()

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            value = canonical_kind(value)
        except UnknownKindError:
            pass  # click's message names the choices
        return super().convert(value, param, ctx)


name_option = click.option("--name", "-n", default=DEFAULT_NAME, show_default=True, help="Model name in the registry.")


@click.command("train")
@dataset_options(required=True)
@click.option("--kind", type=KindChoice(), default="autoencoder", show_default=True, help="The model kind to train.")
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Training epochs, for kinds that train in epochs (the autoencoder).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the model (and a random split).")
@click.option("--split", type=click.Choice(["chronological", "random"]), default="chronological", show_default=True)
@click.option(
    "--threshold-method", type=click.Choice(["alert_rate", "precision"]), default="alert_rate", show_default=True
)
@click.option(
    "--threshold-target",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.005,
    show_default=True,
    help="Target alert rate, or target precision.",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the artifacts here (default: a temporary folder, removed after registering).",
)
@click.option("--register/--no-register", default=True, show_default=True, help="Register as a candidate.")
@name_option
@_one_line_errors
def train_command(
    kind: str,
    epochs: int,
    seed: int,
    split: str,
    threshold_method: str,
    threshold_target: float,
    output_dir: Path | None,
    register: bool,
    name: str,
    **data_options: Any,
) -> None:
    """Train a model on a dataset, evaluate it on held-out data and register it as a candidate."""
    source = source_from_options(**data_options)
    if not register and output_dir is None:
        raise click.UsageError("--no-register needs --output-dir (otherwise the model would be thrown away)")
    from models.training import train

    # Each option goes to the kinds whose constructor takes it (the baseline has no epochs).
    options = {"seed": seed, "epochs": epochs}
    accepted = kind_parameters(kind)
    model = create_model(kind, **{k: v for k, v in options.items() if k in accepted})

    def on_epoch(epoch: int, total: int, numbers: dict[str, float]) -> None:
        shown = " ".join(f"{k}={v:.5g}" for k, v in numbers.items() if k != "seconds")
        console.print(f"epoch {epoch}/{total} {shown} ({numbers.get('seconds', 0):.1f} s)")

    with tempfile.TemporaryDirectory(prefix="fraudstream-train-") as scratch:
        out = output_dir or Path(scratch)
        result = train(
            source,
            model,
            split=split,
            seed=seed,
            threshold_method=threshold_method,
            threshold_target=threshold_target,
            output_dir=out,
            progress=console.is_terminal,
            on_epoch=on_epoch,
        )
        d = result.dataset.description
        console.print(f"dataset: {d['rows']} rows, {d['frauds']} frauds, {d['rejected_rows']} rejected")
        for warning in result.split.warnings:
            console.print(f"[yellow]warning:[/] {warning}")
        console.print(_metrics_table(result.metrics.to_dict(), f"{kind}: test part"))
        if register:
            entry = _registry().register(name, out)
            console.print(f"registered {name} version {entry['version']} ({entry['stage']})")
        if output_dir is not None:
            console.print(f"artifacts in {output_dir}")


@click.command("evaluate")
@click.argument("version")
@dataset_options(required=True)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Where the plots and the model card go.",
)
@name_option
@_one_line_errors
def evaluate_command(
    version: str,
    output_dir: Path,
    name: str,
    **data_options: Any,
) -> None:
    """Evaluate a registered VERSION (a number or 'production') on a dataset, with its own threshold."""
    import numpy as np

    from models.datasets import load_dataset
    from models.evaluate import ModelCard, evaluate, plot_all
    from models.features import labels, model_inputs

    source = source_from_options(**data_options)
    loaded = _registry().load(name, version)
    dataset = load_dataset(source, progress=console.is_terminal)
    if len(dataset.frame) == 0:
        raise click.ClickException("the dataset has no rows to evaluate on")
    y = labels(dataset.frame)
    scores = np.asarray(loaded.model.score_samples(dataset.frame))
    metrics = evaluate(y, scores, loaded.threshold.value)
    plots = plot_all(y, scores, loaded.threshold.value, output_dir, score_label=loaded.model.score_label)
    card = ModelCard(
        model={
            "kind": loaded.model.kind,
            "version": f"{name}:{loaded.version}",
            "params": loaded.model.get_params(),
            "features": model_inputs(loaded.model),
        },
        dataset={**dataset.description, "part": "all rows (evaluation)"},
        metrics=metrics.to_dict(),
        threshold=loaded.threshold.to_dict(),
        training_seconds=loaded.model.training_seconds_,
        plots=[p.name for p in plots.values()],
    )
    card.save(output_dir)
    console.print(
        _metrics_table(metrics.to_dict(), f"{name} version {loaded.version} on {dataset.description['rows']} rows")
    )
    console.print(f"plots and model card in {output_dir}")


@click.group("models")
def models_group() -> None:
    """The model registry: list, show, promote, roll back, recalibrate, drift."""


@models_group.command("list")
@name_option
@_one_line_errors
def list_command(name: str) -> None:
    """Versions of a model with their stage and test metrics."""
    registry = _registry()
    names = registry.names()
    if name not in names:
        known = ", ".join(names) or "none yet (fraudstream train registers one)"
        raise click.ClickException(f"no model named {name!r}; models: {known}")
    table = Table("version", "stage", "kind", "created", "avg precision", "ROC-AUC", "threshold", title=name)
    for entry in registry.versions(name):
        metrics = entry.get("metrics") or {}
        table.add_row(
            str(entry["version"]),
            entry["stage"],
            str(entry.get("kind")),
            entry["created_at"],
            _num(metrics.get("average_precision")),
            _num(metrics.get("roc_auc")),
            f"{_num(entry.get('threshold'))} (v{entry.get('threshold_version')})",
        )
    console.print(table)


@models_group.command("show")
@click.argument("version", default="production")
@name_option
@_one_line_errors
def show_command(version: str, name: str) -> None:
    """One VERSION (default: production) as JSON: stage, metrics, dataset, threshold, history."""
    entry = _registry().version(name, version)
    click.echo(json.dumps(entry, indent=2))


@models_group.command("drift")
@click.argument("version", default="production")
@click.option("--topic", default=PREPROCESSED_TOPIC, show_default=True, help="The served features to compare.")
@click.option(
    "--last", type=click.IntRange(1), default=10_000, show_default=True, help="How many of the newest records."
)
@name_option
@_one_line_errors
def drift_command(version: str, topic: str, last: int, name: str) -> None:
    """Population stability index of each input and of the score: TOPIC's newest records against VERSION's
    training data (below 0.1 stable, up to 0.25 moderate, above significant)."""
    from models.datasets import load_dataset
    from models.drift import SCORE, Reference, drift_report, verdict
    from models.features import feature_matrix

    loaded = _registry().load(name, version)
    reference = Reference.load(loaded.directory)
    if reference is None:
        raise click.ClickException(f"{name} version {loaded.version} has no drift reference: retrain it")
    frame = load_dataset(KafkaSource(topic).newest(last)).frame
    if frame.empty:
        raise click.ClickException(f"{topic} holds no records to compare")
    names = loaded.model.feature_names
    scores = loaded.model.score_samples(frame)
    report = drift_report(reference, feature_matrix(frame, names), names, scores)
    table = Table(
        "input", "PSI", "reading", title=f"{name} v{loaded.version} against the newest {len(frame):,} of {topic}"
    )
    for key in (*names, SCORE):
        table.add_row(key, f"{report[key]:.3f}", verdict(report[key]))
    console.print(table)


@models_group.command("promote")
@click.argument("version")
@click.option("--force", is_flag=True, help="Promote even if it does not beat production (recorded).")
@click.option(
    "--metric",
    type=click.Choice(["average_precision", "roc_auc", "recall_at_budget", "f1", "precision", "recall"]),
    default="average_precision",
    show_default=True,
)
@dataset_options(required=False)
@name_option
@_one_line_errors
def promote_command(
    version: str,
    force: bool,
    metric: str,
    name: str,
    **data_options: Any,
) -> None:
    """Make candidate VERSION production if it beats production on the same held-out data.

    The held-out data is the dataset given, else the candidate's own test part.
    """
    from models.registry import PromotionRefused

    source = source_from_options(**data_options, required=False)
    try:
        done = _registry().promote(name, version, metric=metric, force=force, data=source)
    except PromotionRefused as refused:
        raise click.ClickException(f"{refused} (use --force to promote anyway)") from None
    if done.gate is not None:
        g = done.gate
        console.print(
            f"{metric}: candidate {_num(g['candidate'])} vs production {_num(g['production'])} "
            f"on {g['rows']} held-out rows" + (" [yellow](forced)[/]" if done.forced else "")
        )
    console.print(
        f"{name} version {done.version} is production"
        + (f"; version {done.previous} archived" if done.previous is not None else "")
    )


@models_group.command("rollback")
@name_option
@_one_line_errors
def rollback_command(name: str) -> None:
    """Return production to the version before the current one."""
    done = _registry().rollback(name)
    console.print(f"{name} version {done.version} is production again; version {done.previous} archived")


@models_group.command("recalibrate")
@click.argument("version")
@click.option("--target", type=click.FloatRange(0, 1, min_open=True), help="New target (default: the current one).")
@click.option("--method", type=click.Choice(["alert_rate", "precision"]), help="Default: the current one.")
@dataset_options(required=True)
@name_option
@_one_line_errors
def recalibrate_command(
    version: str,
    target: float | None,
    method: str | None,
    name: str,
    **data_options: Any,
) -> None:
    """A new threshold version for VERSION from fresh data, without retraining."""
    source = source_from_options(**data_options)
    fresh = _registry().recalibrate(name, version, source, method=method, target=target)
    console.print(
        f"{name} version {version}: threshold version {fresh.version} = {fresh.value:.6g} "
        f"({fresh.method} {fresh.target}; achieved {fresh.achieved})"
    )


def _num(value: Any) -> str:
    return "n/a" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))
