"""`fraudstream`: the one console script in front of the whole platform.

Each command lives beside what it drives (the producers, the engine, the models, the workers, the
benchmarks) and is imported only when it runs: `fraudstream --help` lists every command from the table
below without importing Faust, pandas or TensorFlow.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass

import click


@dataclass(frozen=True)
class LazyCommand:
    """Where a command is defined (`module:attribute`), its one-line help, and commands it gathers."""

    target: str
    short_help: str
    subcommands: tuple[str, ...] = ()

    def load(self) -> click.Command:
        command = _import(self.target)
        if isinstance(command, click.Group):
            for sub in self.subcommands:
                sub_command = _import(sub)
                command.add_command(sub_command)
        return command


#: Every command of `fraudstream`, in the order of the data flow (a test checks each help against its command).
COMMANDS: dict[str, LazyCommand] = {
    "up": LazyCommand(
        "fraudstream.lifecycle:up", "Start the embedded stack on 127.0.0.1 and wait until every service is healthy."
    ),
    "status": LazyCommand("fraudstream.lifecycle:status", "List every service with its address, pid and health."),
    "down": LazyCommand(
        "fraudstream.lifecycle:down",
        "Stop the embedded stack cleanly (broker first, then the object store it writes to).",
    ),
    "demo": LazyCommand(
        "fraudstream.demo:demo_command",
        "The whole pipeline, live: stack up, ksql/ and connectors/ applied, a model, a worker, payments produced and scored.",
    ),
    "produce": LazyCommand(
        "producers.replay:produce_command",
        "Replay card payments from FILE (Kaggle or extended CSV layout; `-` for stdin) into Kafka.",
    ),
    "generate": LazyCommand(
        "producers.generate:generate_command",
        "Generate realistic synthetic card payments (seeded; frauds a model can learn) to a file or a topic.",
    ),
    "users": LazyCommand(
        "producers.users:users_command",
        "Write the card holders the generated payments use to the USERS table's topic (one JSON record each).",
    ),
    "ksql": LazyCommand(
        "stack.ksqldb.apply:ksql_group",
        "ksqlDB statements: with no subcommand, an interactive prompt (statements in, tables out).",
        ("stack.ksqldb.qtt:conformance_command",),
    ),
    "connect": LazyCommand(
        "connectors.apply:connect_group",
        "Kafka Connect: apply the connector configs in connectors/ to any Connect REST endpoint.",
    ),
    "train": LazyCommand(
        "models.cli:train_command",
        "Train a model on a dataset, evaluate it on held-out data and register it as a candidate.",
    ),
    "evaluate": LazyCommand(
        "models.cli:evaluate_command",
        "Evaluate a registered VERSION (a number or 'production') on a dataset, with its own threshold.",
    ),
    "models": LazyCommand(
        "models.cli:models_group", "The model registry: list, show, promote, roll back, recalibrate, drift."
    ),
    "worker": LazyCommand(
        "fraudstream.lifecycle:worker_command",
        "Start stream workers that score creditcardfraud_preprocessed_avro into fraud-scores.",
    ),
    "kcat": LazyCommand(
        "fraudstream.kcat:kcat_command",
        "kcat (Debian's) with a librdkafka that reads the embedded broker; -b defaults to $KAFKA_BOOTSTRAP_SERVERS.",
    ),
    "handbook": LazyCommand(
        "producers.handbook:handbook_group",
        "The Fraud Detection Handbook's pipeline: simulated card transactions, KSQL features, its own models.",
        (
            "producers.handbook:generate_command",
            "producers.handbook:produce_command",
            "fraudstream.handbook:evaluate_command",
        ),
    ),
    "chaos": LazyCommand(
        "fraudstream.chaos:chaos_command",
        "Replay payments through a throwaway durable pipeline while killing (kill -9) and restarting the broker, "
        "the object store, ksqlDB, Connect and the stream worker; report what was lost (exit 1 if anything).",
    ),
    "bench": LazyCommand(
        "fraudstream.bench.cli:bench_command",
        "Throughput and latency benchmarks, each printed as a ratio to a raw passthrough on the same broker.",
    ),
}


def _import(target: str) -> click.Command:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


class LazyGroup(click.Group):
    """A click group whose commands are imported when they run (click's documented lazy-loading pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        lazy = COMMANDS.get(cmd_name)
        if lazy is None:
            return None
        return lazy.load()

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from the table: help without importing every command."""
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(name, click.utils.make_default_short_help(lazy.short_help, limit)) for name, lazy in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log what happens underneath.")
def main(verbose: bool) -> None:
    """fraudstream: Kafka-native fraud scoring with KSQL, Faust and Keras."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


if __name__ == "__main__":
    main()
