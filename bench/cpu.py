"""Server CPU accounting and core pinning for the benchmark, from /proc (Linux).

The figure the benchmark reports is utime + stime of the gunicorn process tree plus the PostgreSQL
backends that serve it, summed over a measured window and divided by the requests served in it.
It is what the server spends per request, whatever else runs on the machine: a noisy neighbour
makes requests slower, not more expensive.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:  # the process has exited
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    return text[text.rindex(")") + 2 :].split()


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of one process (all its threads), in clock ticks; None once it has exited."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    # After the name: state(3) ppid(4) ... utime(14) stime(15), i.e. indexes 11 and 12 here.
    return int(fields[11]) + int(fields[12])


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants (gunicorn master and workers)."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, queue = [], [root]
    while queue:
        pid = queue.pop()
        tree.append(pid)
        queue.extend(children.get(pid, ()))
    return tree


def process_visible(pid: int) -> bool:
    return (PROC / str(pid)).exists()


@dataclass(frozen=True)
class Snapshot:
    ticks: dict[int, int]

    def seconds_since(self, before: Snapshot) -> tuple[float, int]:
        """CPU seconds spent between `before` and this snapshot, and how many processes of
        `before` had exited meanwhile (their last slice is lost: should be 0)."""
        total = 0
        for pid, ticks in self.ticks.items():
            total += ticks - before.ticks.get(pid, 0)  # a new process started at zero
        exited = len(set(before.ticks) - set(self.ticks))
        return total / CLOCK_TICKS, exited


def snapshot(pids: Iterable[int]) -> Snapshot:
    ticks = {}
    for pid in pids:
        value = cpu_ticks(pid)
        if value is not None:
            ticks[pid] = value
    return Snapshot(ticks)


def self_cpu_seconds() -> float:
    """This process and its waited-for children (the load generator processes)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


@dataclass(frozen=True)
class CorePlan:
    """Which cores the server (gunicorn + its PostgreSQL backends) and the load generator use.
    With one core there is nothing to separate: both get it, and the figures say so."""

    server: frozenset[int]
    client: frozenset[int]

    @property
    def pinned(self) -> bool:
        return self.server != self.client

    def describe(self) -> str:
        if not self.pinned:
            return f"server and load generator share CPU {_cores(self.server)} (one core)"
        return (
            f"server + PostgreSQL backends on CPU {_cores(self.server)}, "
            f"load generator on CPU {_cores(self.client)}"
        )


def _cores(cores: frozenset[int]) -> str:
    return ",".join(str(c) for c in sorted(cores))


def core_plan() -> CorePlan:
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return CorePlan(frozenset(available), frozenset(available))
    return CorePlan(frozenset(available[:1]), frozenset(available[1:2]))


def pin(pids: Iterable[int], cores: frozenset[int]) -> int:
    """Pin every process (all its threads) to `cores`; returns how many could be pinned."""
    pinned = 0
    for pid in pids:
        try:
            tasks = [int(t.name) for t in (PROC / str(pid) / "task").iterdir()]
        except OSError:
            continue
        try:
            for task in tasks:
                os.sched_setaffinity(task, cores)
            pinned += 1
        except OSError:  # exited, or not ours to pin (PostgreSQL running as another user)
            continue
    return pinned


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def cpu_model() -> str:
    """The processor's name (Linux: /proc/cpuinfo's first `model name`), or "unknown". Runs on
    different processors differ most in the RSA operations: the paths that sign compare with D
    differently on each, so a report names the one it ran on."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                name, _, value = line.partition(":")
                if name.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return "unknown"
