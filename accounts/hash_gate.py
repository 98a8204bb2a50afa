"""A bound on concurrent password hashing per process, so a sign-in flood cannot starve the rest.

An Argon2id check holds a server thread for ~0.1-0.5 s of CPU. Without a bound, a few hundred
concurrent sign-ins (wrong passwords from many addresses pass the per-IP throttle) took every
gunicorn thread for tens of seconds: refresh, JWKS and the health probes queued behind them
(issue 19.2). Here at most AUTHSERVER_PASSWORD_HASH_CONCURRENCY threads of a process hash at
once and at most AUTHSERVER_PASSWORD_HASH_QUEUE more wait (up to QUEUE_WAIT_SECONDS) for a
slot; any further sign-in is refused at once with 503 and Retry-After (accounts.services
raises LoginBusy, a LoginUnavailable), before any password work. The defaults together take at
most half of AUTHSERVER_THREADS (authserver/settings.py), leaving the other half to everything
else.

The hashes themselves run on this gate's own threads, at a lower CPU priority (nice +10; the
Argon2id lane threads they start inherit it): while sign-ins hash, the threads serving
everything else get the CPU first, so a flood's hashes slow each other rather than the rest.
`hash_run(fn, ...)` runs one there; the caller must hold a slot.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from authserver.conf import get_config

# A queued sign-in gives up after this long (one or two hashes' time, with margin).
QUEUE_WAIT_SECONDS = 2.0
# What the 503 tells the client to wait.
BUSY_RETRY_AFTER = 2


class HashGateFull(Exception):
    """Every hashing slot and every queue place of this process is taken."""


# How much lower than the serving threads the hashing threads run (nice values add).
HASH_NICE_INCREMENT = 10


def _lower_priority() -> None:
    """Thread initializer: this thread (and the threads it starts) at a lower CPU priority. On
    Linux the nice value is per thread; elsewhere, or if refused, the thread keeps its own."""
    with contextlib.suppress(AttributeError, OSError):
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + HASH_NICE_INCREMENT))


class HashGate:
    def __init__(self, slots: int, queue: int) -> None:
        self.slots = slots
        self.queue = queue
        # One hashing thread per slot, started on first use (a preloaded master forks none).
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._cond = threading.Condition(threading.Lock())
        self._busy = 0
        self._waiting = 0

    def acquire(self, wait: float = QUEUE_WAIT_SECONDS) -> None:
        """Take a hashing slot, waiting up to `wait` seconds in the queue; HashGateFull if the
        slots and the queue are full, or the wait ran out."""
        with self._cond:
            if self._busy >= self.slots:
                if self._waiting >= self.queue:
                    raise HashGateFull
                self._waiting += 1
                try:
                    deadline = time.monotonic() + wait
                    while self._busy >= self.slots:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            raise HashGateFull
                        self._cond.wait(remaining)
                finally:
                    self._waiting -= 1
            self._busy += 1

    def release(self) -> None:
        with self._cond:
            self._busy -= 1
            self._cond.notify()

    def run(self, fn, /, *args):
        """fn(*args) on one of the low-priority hashing threads; the caller holds a slot, so
        one is always free."""
        pool = self._pool
        if pool is None:
            with self._pool_lock:
                pool = self._pool
                if pool is None:
                    pool = self._pool = ThreadPoolExecutor(
                        max_workers=self.slots,
                        thread_name_prefix="password-hash",
                        initializer=_lower_priority,
                    )
        return pool.submit(fn, *args).result()

    @property
    def full(self) -> bool:
        """Would acquire() refuse at once? (A peek without the lock, for an early answer.)"""
        return self._busy >= self.slots and self._waiting >= self.queue

    @property
    def busy(self) -> int:
        return self._busy


_gate: HashGate | None = None
_gate_lock = threading.Lock()


def hash_gate() -> HashGate:
    """This process's gate, rebuilt when the settings change (tests)."""
    global _gate  # noqa: PLW0603
    config = get_config()
    gate = _gate
    if (
        gate is None
        or gate.slots != config.password_hash_concurrency
        or gate.queue != config.password_hash_queue
    ):
        with _gate_lock:
            gate = _gate
            if (
                gate is None
                or gate.slots != config.password_hash_concurrency
                or gate.queue != config.password_hash_queue
            ):
                gate = _gate = HashGate(
                    config.password_hash_concurrency, config.password_hash_queue
                )
    return gate
