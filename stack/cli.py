"""`fraudstream`: the one console script in front of the whole platform."""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path

import authlib.deprecate  # noqa: F401  (see the warnings filter below)
import click
from rich.table import Table

from stack.config import DEFAULT_DATA_DIR, DEFAULT_PORTS, Addresses
from stack.embedded import EmbeddedStack
from stack.prometheus import DEFAULT_PROMETHEUS_PORT, PROMETHEUS, prometheus_binary
from stack.supervisor import StackError
from stack.terminal import make_console

console = make_console()

# confluent-kafka's Schema Registry client imports authlib's httpx integration, which warns on import;
# it is not ours to fix and only clutters every command's output. authlib forces its own warnings to
# "always" when `authlib.deprecate` loads, so that module is imported above and this filter goes on top.
warnings.filterwarnings("ignore", message="The httpx module is deprecated")

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DATA_DIR,
    show_default=True,
    help="Where the embedded stack keeps its data, logs and state.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log what happens underneath.")
def main(verbose: bool) -> None:
    """fraudstream: Kafka-native fraud scoring with KSQL, Faust and Keras."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@main.command()
@data_dir_option
@click.option("--ephemeral", is_flag=True, help="Keep the broker's data in memory (throwaway runs).")
@click.option("--prometheus", "with_prometheus", is_flag=True,
              help="Also start Prometheus (Debian's `prometheus` binary) scraping every service's /metrics.")
@click.option("--prometheus-port", type=click.IntRange(1, 65535), default=DEFAULT_PROMETHEUS_PORT, show_default=True)
def up(data_dir: Path, ephemeral: bool, with_prometheus: bool, prometheus_port: int) -> None:
    """Start the embedded stack on 127.0.0.1 and wait until every service is healthy.

    Ports follow KAFKA_BOOTSTRAP_SERVERS, SCHEMA_REGISTRY_URL, S3_ENDPOINT_URL, ... when set.
    """
    if with_prometheus:
        check_prometheus()  # before starting anything
    stack = start_stack(data_dir, ephemeral)
    if with_prometheus:
        start_prometheus(stack, prometheus_port)


@main.command()
@data_dir_option
def down(data_dir: Path) -> None:
    """Stop the embedded stack cleanly (broker first, then the object store it writes to)."""
    try:
        stack = EmbeddedStack.attach(data_dir)
    except StackError as error:
        raise click.ClickException(str(error)) from None
    stack.stop()
    console.print("stack stopped")


@main.command()
@data_dir_option
def status(data_dir: Path) -> None:
    """List every service with its address, pid and health."""
    try:
        stack = EmbeddedStack.attach(data_dir)
    except StackError as error:
        raise click.ClickException(str(error)) from None
    healthy = _print_status(stack)
    if not healthy:
        raise SystemExit(1)


def start_stack(data_dir: Path, ephemeral: bool) -> EmbeddedStack:
    """Start (or find running) the stack in `data_dir`, print its status and the addresses clients need."""
    started = time.monotonic()
    stack = _attach_or_new(data_dir, ephemeral)
    try:
        stack.start()
    except StackError as error:
        raise click.ClickException(str(error)) from None
    _print_status(stack)
    console.print(f"healthy in {time.monotonic() - started:.1f} s; addresses for clients:")
    for name, value in stack.addresses.to_env().items():
        console.print(f"  export {name}={value}")
    return stack


def check_prometheus() -> None:
    """A one-line error when the `prometheus` binary is missing."""
    try:
        prometheus_binary()
    except StackError as error:
        raise click.ClickException(str(error)) from None


def start_prometheus(stack: EmbeddedStack, port: int) -> None:
    """Start Prometheus beside `stack` unless it runs there already, and say where it is."""
    running = stack.running.get(PROMETHEUS)
    if running is None or not running.healthy():
        stack.ports[PROMETHEUS] = port
        try:
            stack.start_service(PROMETHEUS)
        except StackError as error:
            raise click.ClickException(str(error)) from None
    address = stack.running[PROMETHEUS].address
    console.print(f"prometheus: {address} (targets: {address}/targets; configuration: {stack.data_dir / 'prometheus' / 'prometheus.yml'})")


def _attach_or_new(data_dir: Path, ephemeral: bool) -> EmbeddedStack:
    """The stack already recorded in `data_dir` (so `up` twice is harmless), else a new one."""
    try:
        stack = EmbeddedStack.attach(data_dir)
    except StackError:
        worker_port = int(os.environ.get("FRAUDSTREAM_WEB_PORT", DEFAULT_PORTS["worker"]))  # the worker's own setting
        stack = EmbeddedStack.from_addresses(data_dir, Addresses.from_env(), worker_port, ephemeral=ephemeral)
    stack.outlive_caller = True  # the services keep running after this command returns
    return stack


def _print_status(stack: EmbeddedStack) -> bool:
    table = Table("service", "address", "pid", "health", "log")
    rows = stack.status()
    for row in rows:
        health = "[green]healthy[/]" if row.healthy else "[red]down[/]"
        table.add_row(row.name, row.address or "-", str(row.pid or "-"), health, row.log or "-")
    console.print(table)
    return all(row.healthy for row in rows)


@click.group("connect")
def connect_group() -> None:
    """Kafka Connect: apply the connector configs in connectors/ to any Connect REST endpoint."""


def _add_commands() -> None:
    """Commands that live beside what they drive; imported here so `fraudstream --help` lists them all."""
    from connectors.apply import connect_apply_command
    from models.cli import evaluate_command, models_group, train_command
    from stack.bench import bench_command
    from stack.demo import demo_command
    from stack.generate import generate_command
    from stack.ksqldb.apply import ksql_group
    from stack.ksqldb.qtt import conformance_command
    from stack.produce import produce_command
    from stack.users import users_command
    from streams.bench import bench_scoring_command
    from streams.cli import worker_command

    ksql_group.add_command(conformance_command)
    connect_group.add_command(connect_apply_command)
    bench_command.add_command(bench_scoring_command)

    commands = (demo_command, produce_command, users_command, generate_command, ksql_group, connect_group, train_command, evaluate_command, models_group,
                worker_command, bench_command)
    for command in commands:
        main.add_command(command)


_add_commands()


if __name__ == "__main__":
    main()
