"""The supervisor's process and port checks (pure OS facts, no services)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from stack.supervisor import free_port, free_ports, pid_alive, port_holder, port_in_use, port_released


def test_a_port_released_after_a_moment_counts_as_free() -> None:
    port = free_port()
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", port))
    holder.listen()
    assert port_in_use(port)
    release = threading.Timer(0.2, holder.close)
    release.start()
    assert port_released(port, timeout=30)
    release.join()


def test_a_port_held_by_a_listener_is_reported_taken() -> None:
    port = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        assert not port_released(port, timeout=0.2)


def test_a_zombie_child_counts_as_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    stat = Path(f"/proc/{child.pid}/stat")
    deadline = time.monotonic() + 30
    while stat.read_text().split(") ", 1)[1][0] != "Z" and time.monotonic() < deadline:
        time.sleep(0.01)  # exited but not reaped: a zombie
    assert not pid_alive(child.pid)
    child.wait()


def test_a_running_child_counts_as_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert pid_alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not pid_alive(child.pid)


def test_a_port_held_by_closing_connections_is_reported_as_such() -> None:
    """A server without SO_REUSEADDR that closed first leaves its port in TIME_WAIT for a minute: the
    message says so, instead of blaming "another process"."""
    port = free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        accepted.close()  # the server's side closes first: TIME_WAIT on its port
        client.recv(1)
        client.close()
    assert port_in_use(port)
    assert "closing connections of an earlier process (1 TIME_WAIT)" in port_holder(port)


def test_processes_picking_ports_at_once_never_pick_the_same() -> None:
    """Parallel test workers pick ports long before their services bind them: each port goes to one picker."""
    # each child holds its picks until told to exit, as a test worker holds them while its services run
    picker = (
        "import sys; from stack.supervisor import free_ports; print(*free_ports(300), flush=True); sys.stdin.read()"
    )
    children = [
        subprocess.Popen([sys.executable, "-c", picker], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    try:
        mine = free_ports(300)
        theirs = [int(port) for child in children for port in child.stdout.readline().split()]
    finally:
        for child in children:
            child.communicate(timeout=60)
    assert len(theirs) == 900
    assert len(set(mine + theirs)) == 1200  # about 60 would repeat among 1,200 random picks from 12,000 ports
