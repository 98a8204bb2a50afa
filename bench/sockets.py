"""Which process holds which TCP socket, from /proc (Linux).

The benchmark asks two things of it: which PostgreSQL backends serve which gunicorn instance
(bench/compare.py runs two, told apart by the backends' client ports), and how the load
generator's connections are spread over gunicorn's workers. The spread decides what a request
costs when several workers share one core (bench/README.md "Workers per core"), and the kernel
decides it anew for every window: each worker accepts from the shared listening socket when
it happens to be running.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
ESTABLISHED = "01"  # /proc/net/tcp "st" column


@dataclass(frozen=True)
class TcpSocket:
    local_port: int
    state: str
    inode: str


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets process `pid` holds open (empty once it has exited)."""
    inodes: set[str] = set()
    try:
        fds = list((PROC / str(pid) / "fd").iterdir())
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def tcp_sockets() -> list[TcpSocket]:
    """Every TCP socket of this network namespace, IPv4 and IPv6."""
    sockets = []
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            port = int(fields[1].rsplit(":", 1)[1], 16)
            sockets.append(TcpSocket(local_port=port, state=fields[3], inode=fields[9]))
    return sockets


def local_ports(pids: Iterable[int]) -> set[int]:
    """Local TCP ports of the sockets `pids` hold (to match PostgreSQL's client_port)."""
    inodes = set().union(*(socket_inodes(pid) for pid in pids))
    return {s.local_port for s in tcp_sockets() if s.inode in inodes}


def connections_per_process(pids: Iterable[int], port: int) -> list[int]:
    """How many established connections to local `port` each of `pids` holds, largest first
    (the processes that hold none are left out)."""
    accepted = {s.inode for s in tcp_sockets() if s.local_port == port and s.state == ESTABLISHED}
    counts = [len(socket_inodes(pid) & accepted) for pid in pids]
    return sorted((count for count in counts if count), reverse=True)
