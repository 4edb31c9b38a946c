"""`fraudstream up / down / status`: the embedded stack's lifecycle, and how a stack is found or created.

`fraudstream demo` starts its stack through `start_stack` too, so both find a running stack the same way.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import click
from rich.table import Table

from fraudstream.config import DEFAULT_DATA_DIR, DEFAULT_PORTS, Addresses
from fraudstream.terminal import make_console
from stack.embedded import EmbeddedStack
from stack.prometheus import DEFAULT_PROMETHEUS_PORT, PROMETHEUS, prometheus_binary
from stack.supervisor import StackError

console = make_console()

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DATA_DIR,
    show_default=True,
    help="Where the embedded stack keeps its data, logs and state.",
)


@click.command()
@data_dir_option
@click.option("--ephemeral", is_flag=True, help="Keep the broker's data in memory (throwaway runs).")
@click.option(
    "--prometheus",
    "with_prometheus",
    is_flag=True,
    help="Also start Prometheus (Debian's `prometheus` binary) scraping every service's /metrics.",
)
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


@click.command()
@data_dir_option
def down(data_dir: Path) -> None:
    """Stop the embedded stack cleanly (broker first, then the object store it writes to)."""
    try:
        stack = EmbeddedStack.attach(data_dir)
    except StackError as error:
        raise click.ClickException(str(error)) from None
    stack.stop()
    console.print("stack stopped")


@click.command()
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
    console.print(
        f"prometheus: {address} (targets: {address}/targets; configuration: {stack.data_dir / 'prometheus' / 'prometheus.yml'})"
    )


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
