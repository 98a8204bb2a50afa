"""Two authserver instances on loopback sharing one PostgreSQL and one Redis."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.live import Gunicorn


@contextlib.contextmanager
def two_instances(env, tmp_path, workers: int = 1):
    """A and B, started in parallel. Each gunicorn master gets its own metrics folder
    (AUTHSERVER_METRICS_DIR is per instance)."""
    servers = [
        Gunicorn({**env, "AUTHSERVER_METRICS_DIR": str(tmp_path / f"metrics-{name}")}, workers)
        for name in ("a", "b")
    ]
    with contextlib.ExitStack() as stack:
        with ThreadPoolExecutor(2) as pool:
            started = [pool.submit(server.__enter__) for server in servers]
        for server, future in zip(servers, started, strict=True):
            if future.exception() is None:
                stack.push(server)  # stopped by __exit__ when the block ends
        for future in started:
            future.result()
        a, b = servers
        assert a.port != b.port
        yield a, b


def readyz_at_once(urls: list[str]) -> list[requests.Response]:
    barrier = threading.Barrier(len(urls))
    results: list[requests.Response | None] = [None] * len(urls)

    def probe(i: int, url: str) -> None:
        barrier.wait()
        results[i] = requests.get(url + "/readyz", timeout=30)

    threads = [threading.Thread(target=probe, args=(i, u)) for i, u in enumerate(urls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
