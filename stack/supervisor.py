"""Start, watch and stop the child processes of the embedded stack.

Each service is a plain child process in a session of its own, so that it outlives the
`fraudstream up` command that started it and `fraudstream down` can stop it (and anything it
spawned) by process group. Health is observed from outside, the way a user would: a TCP connect or
an HTTP request, never by reading the child's logs.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import fcntl
import logging
import os
import random
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from fraudstream.basicauth import BasicAuth
from fraudstream.tls import client_context

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
PORT_RELEASE_SECONDS = 5.0  # how long a start waits for a just-stopped process's port


class StackError(RuntimeError):
    """A service could not be started or stopped; the message is one line meant for the user."""


@dataclass(frozen=True)
class ServiceSpec:
    """How to run one service: its command, environment, the ports it binds and how to see it is healthy."""

    name: str
    argv: Sequence[str]
    ports: Sequence[int]
    health_url: str  # tcp://host:port or http(s)://host:port/path
    address: str  # what clients are told to connect to
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    start_timeout: float = 60.0
    stop_timeout: float = 40.0
    password_file: str | None = None  # the users an HTTP service accepts: health probes sign in as the first
    ca_file: str | None = None  # the CA an https service's certificate is verified against (else the system's)


@dataclass
class RunningService:
    """A started service, as recorded in the stack's state file."""

    name: str
    pid: int
    address: str
    health_url: str
    log: str
    stop_timeout: float
    password_file: str | None = None
    ca_file: str | None = None

    def alive(self) -> bool:
        return pid_alive(self.pid)

    def healthy(self) -> bool:
        return self.alive() and probe(self.health_url, password_file=self.password_file, ca_file=self.ca_file)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing uses now, below the kernel's ephemeral range, and handed out once per machine.

    Ports the OS hands out for `bind(0)` come from the same range as the local ports of outgoing
    connections, so a service restarted on such a port can find it taken by some client's socket.
    A port is bound only later, by the service it is for: the reservation keeps two processes that
    pick ports at the same time (parallel test workers, a bench beside a test) from picking the same.
    """
    low, _ = _ephemeral_range()
    for _ in range(1000):
        port = _ports_drawn.randint(max(1024, low - 12_000), low - 1)
        if _reserve(port) and not port_in_use(port, host):
            return port
    raise StackError(f"no free port below {low} on {host}")


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct free ports."""
    return [free_port(host) for _ in range(count)]


#: Its own generator: a program that seeds `random` (Keras' `set_random_seed` does) must not make every
#: process draw the same ports.
_ports_drawn = random.SystemRandom()
_RESERVATIONS = Path(tempfile.gettempdir()) / f"fraudstream-ports-{os.getuid()}.lock"
_reserved: set[int] = set()
_reserving = threading.Lock()
_reservations_fd: int | None = None


def _reserve(port: int) -> bool:
    """Claim `port` for the life of this process; False when this or another process claimed it first.

    The claim is a POSIX record lock on byte `port` of one shared file: the kernel drops it when the
    process exits, however it exits, so nothing is left to clean up.
    """
    global _reservations_fd
    with _reserving:
        if port in _reserved:
            return False
        if _reservations_fd is None:
            _reservations_fd = os.open(_RESERVATIONS, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.lockf(_reservations_fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port)
        except OSError:
            return False
        _reserved.add(port)
        return True


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could not bind `port` now (the check binds as servers do, with SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


def listens_on(pid: int, port: int) -> bool:
    """True when process `pid` itself listens on TCP `port` (not merely something on that port)."""
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in connections)


def port_holder(port: int) -> str:
    """Who listens on TCP `port`, for an error message: `pid N (name)`, or "another process" when not ours to see."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return "another process"
    lingering = Counter[str]()
    for connection in connections:
        if not connection.laddr or connection.laddr.port != port:
            continue
        if connection.status == psutil.CONN_LISTEN and connection.pid:
            try:
                return f"pid {connection.pid} ({psutil.Process(connection.pid).name()})"
            except psutil.Error:
                return f"pid {connection.pid}"
        lingering[connection.status] += 1
    if lingering:  # a killed server's connections, closing: the kernel keeps them for up to a minute
        states = ", ".join(f"{n} {state}" for state, n in sorted(lingering.items()))
        return f"the closing connections of an earlier process ({states}); try again in a minute"
    return "another process"


def port_released(port: int, host: str = "127.0.0.1", timeout: float = PORT_RELEASE_SECONDS) -> bool:
    """Wait, bounded, until `port` can be bound; False if it is still taken after `timeout` seconds.

    The kernel closes a killed process's sockets as its last threads exit, which can be a moment after
    the process itself is reported gone: a restart right after a `kill -9` must not mistake that moment
    for another server on the port.
    """
    deadline = time.monotonic() + timeout
    while port_in_use(port, host):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def probe(health_url: str, timeout: float = 1.0, password_file: str | None = None, ca_file: str | None = None) -> bool:
    """True when the service answers: a TCP connection for tcp://, a 2xx for http:// and https://.

    A service that asks for HTTP basic authentication is asked as the first user of its `password_file`;
    an https service must present a certificate `ca_file` signed (else one the system trusts).
    """
    parts = urlsplit(health_url)
    if parts.scheme == "tcp":
        try:
            with socket.create_connection((parts.hostname, parts.port), timeout=timeout):
                return True
        except OSError:
            return False
    request = urllib.request.Request(health_url)
    if password_file is not None:
        try:
            user, password = next(iter(BasicAuth.from_file(Path(password_file), "").users.items()))
        except (OSError, ValueError):
            return False
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    context = client_context(ca_file) if parts.scheme == "https" else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone once all its threads are gone: a
    # thread-group leader turns zombie while its other threads still exit, holding the process's files
    # (and so its listening sockets).
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            if stat.read().split(") ", 1)[1][0] != "Z":
                return True
        return any(int(tid) != pid for tid in os.listdir(f"/proc/{pid}/task"))
    except (OSError, ValueError):
        return False


def start(spec: ServiceSpec, log_dir: Path, outlive_caller: bool = False) -> RunningService:
    """Start `spec` and wait until it is healthy; a busy port, a missing binary or an early exit is a StackError.

    With `outlive_caller` false the service gets SIGTERM when the calling process dies, however it dies:
    a test run that is killed leaves no servers behind. Linux sends that signal when the *thread* that
    started the service ends, so start services from a thread that lives as long as they should (the main one).
    """
    for port in spec.ports:
        if not port_released(port):
            raise StackError(
                f"{spec.name}: port {port} on 127.0.0.1 is still in use after {PORT_RELEASE_SECONDS:.0f} s, "
                f"by {port_holder(port)}"
            )
    binary = spec.argv[0]
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        raise StackError(f"{spec.name}: executable not found: {binary}")
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{spec.name}.log"
    with open(log_path, "ab") as log:
        log.write(f"\n--- starting {spec.name}: {' '.join(spec.argv)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            list(spec.argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **spec.env},
            cwd=spec.cwd,
            start_new_session=True,
            preexec_fn=None if outlive_caller else _terminate_with_parent,
        )
    service = RunningService(
        spec.name,
        process.pid,
        spec.address,
        spec.health_url,
        str(log_path),
        spec.stop_timeout,
        spec.password_file,
        spec.ca_file,
    )
    deadline = time.monotonic() + spec.start_timeout
    while not probe(spec.health_url, password_file=spec.password_file, ca_file=spec.ca_file):
        if process.poll() is not None:
            raise StackError(f"{spec.name} exited with status {process.returncode} during start-up; see {log_path}")
        if time.monotonic() > deadline:
            stop(service)
            raise StackError(f"{spec.name} not healthy after {spec.start_timeout:.0f} s; see {log_path}")
        time.sleep(0.1)
    logger.info("%s healthy at %s (pid %d)", spec.name, spec.address, process.pid)
    return service


def stop(service: RunningService, kill: bool = False) -> None:
    """Stop a service and everything it spawned: SIGTERM (or SIGKILL when `kill`), bounded, then SIGKILL."""
    if not service.alive():
        return
    _signal_group(service.pid, signal.SIGKILL if kill else signal.SIGTERM)
    deadline = time.monotonic() + service.stop_timeout
    while service.alive() and time.monotonic() < deadline:
        _reap(service.pid)
        time.sleep(0.1)
    if service.alive():
        logger.warning(
            "%s (pid %d) did not stop within %.0f s: killing it", service.name, service.pid, service.stop_timeout
        )
        _signal_group(service.pid, signal.SIGKILL)
        while service.alive():
            _reap(service.pid)
            time.sleep(0.05)
    _reap(service.pid)


def _terminate_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGTERM when the parent dies (prctl PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def _reap(pid: int) -> None:
    """Collect the exit status of our own child so that it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
