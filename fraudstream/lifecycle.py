"""`fraudstream up / down / status / worker`: the embedded stack's lifecycle, and how a stack is found or created.

`fraudstream demo` starts its stack through `start_stack` too, so both find a running stack the same way.
A stack is found from any directory: `up` remembers the data directory of the stack it started in a
per-user state file (`$XDG_STATE_HOME/fraudstream/current-stack`), and a command without `--data-dir`
uses `./.fraudstream` when a stack runs there, else the remembered one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import click
from rich.table import Table

from fraudstream.config import (
    CLIENT_PROPERTIES,
    CURRENT_STACK_FILE,
    DEFAULT_DATA_DIR,
    DEFAULT_PORTS,
    SECRETS_DIR,
    Addresses,
    user_state_dir,
)
from fraudstream.credentials import CLIENT_CONFIG_ENV
from fraudstream.terminal import make_console
from fraudstream.tls import CERT_FILE_ENV
from stack.embedded import STATE_FILE, WORKER, EmbeddedStack
from stack.prometheus import DEFAULT_PROMETHEUS_PORT, PROMETHEUS, prometheus_binary
from stack.supervisor import RunningService, StackError, listens_on, port_holder, port_in_use
from streams.cli import start_worker

console = make_console()

#: How long a worker may take to import TensorFlow, load its model and open its web port.
WORKER_START_SECONDS = 180.0

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the embedded stack keeps its data, logs and state [default: ./.fraudstream when a stack runs "
    "there, else the one `fraudstream up` started last, else ./.fraudstream].",
)


def remembered_data_dir() -> Path | None:
    """The data directory of the stack `up` started last, while its state file says it runs."""
    pointer = user_state_dir() / CURRENT_STACK_FILE
    if not pointer.exists():
        return None
    data_dir = Path(pointer.read_text().strip())
    return data_dir if (data_dir / STATE_FILE).exists() else None


def resolve_data_dir(given: Path | None) -> Path:
    """`--data-dir` when given; else `./.fraudstream` if a stack runs there; else the remembered stack's; else `./.fraudstream`."""
    if given is not None:
        return given.resolve()
    local = DEFAULT_DATA_DIR.resolve()
    if (local / STATE_FILE).exists():
        return local
    return remembered_data_dir() or local


def _remember(data_dir: Path) -> None:
    state = user_state_dir()
    state.mkdir(parents=True, exist_ok=True)
    (state / CURRENT_STACK_FILE).write_text(f"{data_dir.resolve()}\n")


def _forget(data_dir: Path) -> None:
    pointer = user_state_dir() / CURRENT_STACK_FILE
    if pointer.exists() and Path(pointer.read_text().strip()) == data_dir.resolve():
        pointer.unlink()


secure_option = click.option(
    "--secure/--no-secure",
    default=None,
    help="Require credentials and TLS everywhere: SASL/SCRAM over TLS (SASL_SSL) on the broker, HTTP basic "
    "authentication over https on Schema Registry, ksqlDB, Connect and the workers; credentials, a private CA and "
    "the servers' certificate are generated at the first secure `up` into DIR/secrets/ "
    "[default: secure when DIR/secrets/ exists, so a data directory stays secured once it is].",
)


def secured_data_dir(data_dir: Path) -> bool:
    """True when a secure `up` generated credentials in `data_dir`: then it is secured unless told otherwise."""
    return (data_dir / SECRETS_DIR / CLIENT_PROPERTIES).is_file()


def attach(given: Path | None) -> EmbeddedStack:
    """The running stack `--data-dir` names (or `resolve_data_dir` finds), or a one-line error saying where it looked."""
    data_dir = resolve_data_dir(given)
    try:
        return EmbeddedStack.attach(data_dir)
    except StackError:
        where = str(data_dir) if given is not None else f"{data_dir}, nor remembered in {user_state_dir()}"
        raise click.ClickException(f"no stack is running in {where}: run `fraudstream up` first") from None


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
@secure_option
def up(
    data_dir: Path | None, ephemeral: bool, with_prometheus: bool, prometheus_port: int, secure: bool | None
) -> None:
    """Start the embedded stack on 127.0.0.1 and wait until every service is healthy.

    Ports follow KAFKA_BOOTSTRAP_SERVERS, SCHEMA_REGISTRY_URL, S3_ENDPOINT_URL, ... when set.
    Workers are not started (`fraudstream worker` or `fraudstream demo` starts them).
    """
    if with_prometheus:
        check_prometheus()  # before starting anything
    stack = start_stack(resolve_data_dir(data_dir), ephemeral, announce_workers=True, secure=secure)
    if with_prometheus:
        start_prometheus(stack, prometheus_port)


@click.command()
@data_dir_option
def down(data_dir: Path | None) -> None:
    """Stop the embedded stack cleanly (broker first, then the object store it writes to)."""
    stack = attach(data_dir)
    workers = len(stack.attached) + (WORKER in stack.running)
    stack.stop()
    _forget(stack.data_dir)
    console.print(f"stack in {stack.data_dir} stopped" + (f", {workers} worker(s) with it" if workers else ""))


@click.command()
@data_dir_option
def status(data_dir: Path | None) -> None:
    """List every service with its address, pid and health."""
    stack = attach(data_dir)
    console.print(f"stack in {stack.data_dir}")
    healthy = _print_status(stack)
    if not healthy:
        raise SystemExit(1)


def start_stack(
    data_dir: Path, ephemeral: bool, announce_workers: bool = False, secure: bool | None = None
) -> EmbeddedStack:
    """Start (or find running) the stack in `data_dir`, print its status and the addresses clients need.

    `secure` None follows the running stack, else the data directory (`secured_data_dir`). A secured
    stack's credentials are put in this process's environment, so that what the command does next signs in
    as every client does.
    Workers are never restarted: it says so when some ran before the last `down` (and, with
    `announce_workers`, when none runs now).
    """
    started = time.monotonic()
    stack = _attach_or_new(data_dir, ephemeral, secure)
    if stack.running and all(row.healthy for row in stack.status()):
        console.print(f"the stack is already running in {stack.data_dir} (`fraudstream down` stops it)")
    try:
        stack.start()
    except StackError as error:
        raise click.ClickException(_where_the_port_is_used(str(error), stack.data_dir)) from None
    _remember(stack.data_dir)
    _print_status(stack)
    console.print(f"healthy in {time.monotonic() - started:.1f} s; addresses for clients:")
    for name, value in stack.addresses.to_env().items():
        console.print(f"  export {name}={value}")
    if stack.secure:
        os.environ.update(stack.credentials.to_env())
        properties = stack.secrets_dir / CLIENT_PROPERTIES
        console.print(f"  export {CLIENT_CONFIG_ENV}={properties}")
        console.print(
            f"secured: SASL/SCRAM over TLS (SASL_SSL) and HTTP basic authentication over https; credentials in "
            f"{properties} and the CA to trust in {stack.certificates.ca} (owner only), which fraudstream commands "
            "beside this stack read by themselves"
        )
    before = stack.stopped_workers()
    if before:
        console.print(
            f"workers: not restarted; {len(before)} ran before `fraudstream down` ({', '.join(before)}): "
            "start them again with `fraudstream worker`"
        )
    elif announce_workers and not any(row.name.startswith(WORKER) and row.healthy for row in stack.status()):
        console.print("workers: none running; `up` starts none (`fraudstream worker` or `fraudstream demo` does)")
    return stack


def _where_the_port_is_used(error: str, data_dir: Path) -> str:
    """A busy-port error, with the data directory of the fraudstream stack that holds the port when there is one."""
    other = remembered_data_dir()
    if "port" not in error or other is None or other == data_dir.resolve():
        return error
    return f"{error}: the fraudstream stack in {other} runs there (`fraudstream status --data-dir {other}`)"


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


@click.command("worker")
@click.option(
    "-p",
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes to start (they share the input's partitions).",
)
@click.option(
    "--web-port",
    type=click.IntRange(1, 65535),
    help="Web port of the first worker (POST /score, /metrics); the others count up from it "
    "[default: the first free ports from $FRAUDSTREAM_WEB_PORT or 6066].",
)
@click.option(
    "--model-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Score with this trained model folder instead of the registry's production version.",
)
@click.option("--loglevel", default="info", show_default=True)
@data_dir_option
def worker_command(
    processes: int, web_port: int | None, model_dir: Path | None, loglevel: str, data_dir: Path | None
) -> None:
    """Start stream workers that score creditcardfraud_preprocessed_avro into fraud-scores.

    Beside a running embedded stack they use its addresses (unless KAFKA_BOOTSTRAP_SERVERS and friends
    say otherwise) and register with it, so that `fraudstream status` lists them and `down` stops them.
    """
    stack = _running_stack(data_dir)
    base_env = dict(os.environ)
    if stack is not None:
        base_env = {**stack.addresses.to_env(), **stack.security_env(), **base_env}
        if Addresses.from_env(base_env).bootstrap_servers != stack.addresses.bootstrap_servers:
            stack = None  # these workers read another cluster: not the stack's to stop
    ports = _worker_ports(web_port, processes, set(stack.ports.values()) if stack is not None else set())
    children: list[tuple[subprocess.Popen, int]] = []
    try:
        for port in ports:
            overrides: dict[str, str | int | Path] = {"WEB_PORT": port}
            if model_dir is not None:
                overrides["MODEL_DIR"] = model_dir.resolve()
            if stack is not None:
                overrides |= {"DATA_DIR": stack.data_dir / "workers", "MODEL_CACHE": stack.data_dir / "model-cache"}
            children.append((start_worker(overrides, base_env=base_env, loglevel=loglevel), port))
        for i, (child, port) in enumerate(children, start=1):
            _wait_listening(child, port, f"worker {i}/{processes}")
            scheme = "https" if base_env.get(CERT_FILE_ENV) else "http"  # a secured stack's workers serve TLS
            address = f"{scheme}://127.0.0.1:{port}"
            if stack is not None:
                stack.register(RunningService(f"{WORKER}-{port}", child.pid, address, f"{address}/metrics",
                                              f"the output of `fraudstream worker` (pid {os.getpid()})", 60.0,
                                              stack.password_file(), stack.ca_file))  # fmt: skip
            click.echo(f"worker {i}/{processes}: pid {child.pid}, {address}/metrics")
        codes = _wait_forwarding_signals([child for child, _ in children])
    finally:
        for child, port in children:
            if child.poll() is None:
                child.terminate()
                child.wait()
            if stack is not None:
                stack.unregister(f"{WORKER}-{port}")
    failed = [code for code in codes if code not in (0, -signal.SIGINT, -signal.SIGTERM)]
    if failed:
        raise click.ClickException(f"{len(failed)} of {processes} workers exited with errors (codes {failed})")


def _running_stack(data_dir: Path | None) -> EmbeddedStack | None:
    try:
        return EmbeddedStack.attach(resolve_data_dir(data_dir))
    except StackError:
        if data_dir is not None:
            raise click.ClickException(f"no stack is running in {data_dir.resolve()}") from None
        return None


def _worker_ports(first: int | None, count: int, reserved: set[int]) -> list[int]:
    """`count` web ports: from `first` on, each free, or a one-line error naming the busy one; without
    `first`, the first free ports from $FRAUDSTREAM_WEB_PORT (6066) that no stack service is configured on."""
    if first is not None:
        ports = list(range(first, first + count))
        for port in ports:
            if port_in_use(port):
                raise click.ClickException(
                    f"port {port} on 127.0.0.1 is already in use by {port_holder(port)}: "
                    "choose another --web-port, or leave it out to use free ports"
                )
        return ports
    ports, port = [], int(os.environ.get("FRAUDSTREAM_WEB_PORT", DEFAULT_PORTS[WORKER]))
    while len(ports) < count:
        if port > 65535:
            raise click.ClickException("no free web ports for the workers")
        if port not in reserved and not port_in_use(port):
            ports.append(port)
        port += 1
    return ports


def _wait_listening(child: subprocess.Popen, port: int, name: str) -> None:
    """Wait until `child` itself listens on `port`; its exit or a timeout is a one-line error naming the port."""
    deadline = time.monotonic() + WORKER_START_SECONDS
    while not listens_on(child.pid, port):
        if child.poll() is not None:
            busy = f" (now in use by {port_holder(port)})" if port_in_use(port) else ""
            raise click.ClickException(
                f"{name} exited with status {child.returncode} while starting on port {port}{busy}"
            )
        if time.monotonic() > deadline:
            raise click.ClickException(f"{name} did not open port {port} within {WORKER_START_SECONDS:.0f} s")
        time.sleep(0.2)


def _wait_forwarding_signals(children: list[subprocess.Popen]) -> list[int]:
    """Wait for every child, passing on SIGINT and SIGTERM (each worker runs in a session of its own)."""

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    return [child.wait() for child in children]


def _attach_or_new(data_dir: Path, ephemeral: bool, secure: bool | None) -> EmbeddedStack:
    """The stack already recorded in `data_dir` (so `up` twice is harmless), else a new one, secured as told
    or as the data directory is (`secured_data_dir`)."""
    try:
        stack = EmbeddedStack.attach(data_dir)
    except StackError:
        worker_port = int(os.environ.get("FRAUDSTREAM_WEB_PORT", DEFAULT_PORTS["worker"]))  # the worker's own setting
        secure = secured_data_dir(data_dir) if secure is None else secure
        addresses = Addresses.from_env()
        stack = EmbeddedStack.from_addresses(data_dir, addresses, worker_port, ephemeral=ephemeral, secure=secure)
    else:
        if secure is not None and stack.secure != secure:
            state = "secured" if stack.secure else "open"
            raise click.ClickException(f"the stack in {data_dir} runs {state}: `fraudstream down` first to change that")
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
