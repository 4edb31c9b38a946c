"""Every embedded service listens on 127.0.0.1 only: checked from the kernel's socket tables, not from configuration."""

from __future__ import annotations

import os
from pathlib import Path

from stack.embedded import EmbeddedStack

LISTEN = "0A"


def listening_addresses(pid: int) -> set[str]:
    """IPv4/IPv6 addresses `pid` listens on, from /proc (socket inodes of its fds matched against /proc/net/tcp*)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    addresses = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == LISTEN and inode in inodes:
                addresses.add(_decode(local.split(":")[0]))
    return addresses


def _decode(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return ".".join(str(b) for b in reversed(raw))
    words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
    return ":".join(b.hex() for b in words)


def test_every_service_listens_on_loopback_only(stack: EmbeddedStack) -> None:
    seen = {}
    for name, service in stack.running.items():
        addresses = listening_addresses(service.pid)
        assert addresses, f"{name} listens on nothing"
        seen[name] = addresses
    assert all(addresses == {"127.0.0.1"} for addresses in seen.values()), seen
