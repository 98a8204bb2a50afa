"""bench/run.py (`make bench`): a short smoke run, and the target arithmetic. The full benchmark
is never a test and nothing here depends on timing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import requests

from bench import load
from bench.cpu import CorePlan, process_tree
from bench.run import (
    SCENARIOS,
    Row,
    gunicorn_args,
    parse_args,
    server_workers,
    targets,
    visit_order,
)
from tests.bench import bench_smoke
from tests.live import Gunicorn


def row(scenario: str, concurrency: int, cpu: float, rps: float = 100.0, errors: int = 0) -> Row:
    return Row(
        scenario=scenario,
        concurrency=concurrency,
        requests=100,
        rps=rps,
        p50_ms=1.0,
        p99_ms=2.0,
        errors=errors,
        cpu_ms_per_request=cpu,
        postgres_ms_per_request=0.0,
        server_core_busy=1.0,
        generator_core_busy=0.2,
    )


def verdicts(rows, floor_ms=100.0, skipped=None) -> dict[str, bool | None]:
    checks = targets(rows, {"password_check_ms": floor_ms}, skipped or {})
    return {c.name.split()[0]: c.passed for c in checks}


def test_targets_pass_and_fail_on_the_worst_level():
    rows = [
        row("healthz", 8, 1.0),
        row("healthz", 32, 1.0),
        row("jwks", 8, 1.1),
        row("jwks", 32, 1.3),  # 1.3 x healthz at c=32
        row("refresh", 8, 3.9),
        row("refresh", 32, 3.9, rps=90),
        row("login", 8, 120.0),
        row("login", 32, 131.0),
        row("client_credentials", 8, 1.5),
        row("client_credentials", 32, 1.6, rps=89),  # < 0.9 x c=8
        row("introspection", 8, 1.9, errors=1),
        row("introspection", 32, 1.9),
    ]
    result = verdicts(rows)
    assert result["rotating"] is True
    assert result["client_credentials"] is True
    assert result["introspection"] is True
    assert result["JWKS"] is False
    assert result["login"] is False  # 131 > 1.3 x 100
    assert result["zero"] is False
    assert result["throughput"] is False


def test_ratios_pair_the_runs_of_each_round():
    """A neighbour busy during one round's c=32 run and another round's c=8 run must not decide
    the throughput ratio; a real drop at c=32 in most rounds must."""

    def rounds(rates: list[tuple[float, float]]) -> dict:
        return {
            ("refresh", 8): [row("refresh", 8, 2.0, rps=low) for low, _ in rates],
            ("refresh", 32): [row("refresh", 32, 2.0, rps=high) for _, high in rates],
        }

    drifting = rounds([(500, 480), (300, 290), (480, 470), (310, 300), (520, 500)])
    separate = [row("refresh", 8, 2.0, rps=480), row("refresh", 32, 2.0, rps=290)]
    assert targets(separate, {"password_check_ms": 1}, {})[-1].passed is False
    assert targets(separate, {"password_check_ms": 1}, {}, drifting)[-1].passed is True
    dropping = rounds([(500, 400), (300, 290), (480, 380), (310, 240), (520, 510)])
    assert targets(separate, {"password_check_ms": 1}, {}, dropping)[-1].passed is False


def test_rounds_alternate_the_order_of_the_paired_runs():
    plans = ["healthz", "jwks"]
    first = visit_order(plans, [1, 8, 32], 1)
    second = visit_order(plans, [1, 8, 32], 2)
    assert first == [(p, c) for p in plans for c in (1, 8, 32)]
    assert second == first[::-1]
    assert visit_order(plans, [1, 8, 32], 3) == first
    # Each pair a ratio divides is measured c=8 first in one round, c=32 first in the next.
    for plan in plans:
        assert first.index((plan, 8)) < first.index((plan, 32))
        assert second.index((plan, 8)) > second.index((plan, 32))
    assert first.index(("healthz", 8)) < first.index(("jwks", 8))
    assert second.index(("healthz", 8)) > second.index(("jwks", 8))


def test_scenarios_not_run_are_reported_not_passed():
    skipped = {"client_credentials": "n/a (oauth not installed)"}
    result = verdicts([row("healthz", 8, 1.0)], skipped=skipped)
    assert result["client_credentials"] is None
    assert result["rotating"] is None


def test_gthread_runs_one_worker_per_server_core_as_deployed_and_sync_more():
    one_core = CorePlan(server=frozenset({0}), client=frozenset({1}))
    assert server_workers(parse_args([]), one_core) == 1
    assert server_workers(parse_args(["--worker-class", "sync"]), one_core) == 3
    assert server_workers(parse_args(["--workers", "3"]), one_core) == 3
    two_cores = CorePlan(server=frozenset({0, 1}), client=frozenset({2}))
    assert server_workers(parse_args([]), two_cores) == 2


@pytest.mark.slow
@pytest.mark.parametrize(("worker_class", "keeps_alive"), [("sync", False), ("gthread", True)])
def test_the_worker_class_asked_for_is_the_one_that_serves(child_env, worker_class, keeps_alive):
    """gunicorn silently runs gthread workers for `sync` when threads > 1, and
    deploy/gunicorn.conf.py sets 4: a sync worker closes the connection after each answer."""
    extra = gunicorn_args(parse_args(["--worker-class", worker_class]))
    with Gunicorn(child_env, workers=1, extra=extra) as server:
        response = requests.get(server.url + "/healthz", timeout=10)
        assert response.status_code == 200
        closes = response.headers.get("Connection", "").lower() == "close"
        assert closes is not keeps_alive, response.headers
        worker = next(p for p in process_tree(server.proc.pid) if p != server.proc.pid)
        threads = len(list(Path(f"/proc/{worker}/task").iterdir()))
        assert (threads == 1) is not keeps_alive  # sync: one thread; gthread: its pool too


def test_percentile_is_nearest_rank():
    values = sorted(float(v) for v in range(1, 101))
    assert load.percentile(values, 0.50) == 50.0
    assert load.percentile(values, 0.99) == 99.0
    assert load.percentile([7.0], 0.99) == 7.0


def test_chart_is_drawn(tmp_path):
    pytest.importorskip("matplotlib")
    from bench.chart import draw

    report = {
        "started_at": "2026-01-01T00:00:00+00:00",
        "server": {"worker_class": "gthread", "workers": 3},
        "rows": [
            {"scenario": "healthz", "concurrency": c, "rps": 100.0 * c, "p99_ms": 2.0 * c}
            for c in (1, 8, 32)
        ],
    }
    assert draw(report, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_smoke_run_prints_the_table_targets_and_json(child_env, tmp_path):
    out = tmp_path / "bench.json"
    result = bench_smoke(child_env, "--no-chart", "--json", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(
        r"^scenario\s+conc\s+req/s\s+p50 ms\s+p99 ms\s+errors\s+CPU ms/req", result.stdout, re.M
    )
    for name in SCENARIOS:
        assert re.search(rf"^{name}\s+1\s+[\d.]+", result.stdout, re.M), name
    assert re.search(r"^floors .*RS256 sign .* ms; password check argon2", result.stdout, re.M)
    assert re.search(r"^(PASS|FAIL)\s+rotating refresh <= 4 ms", result.stdout, re.M)
    assert re.search(r"^(PASS|FAIL)\s+zero errors", result.stdout, re.M)
    report = json.loads(out.read_text())
    assert {r["scenario"] for r in report["rows"]} == set(SCENARIOS)
    assert all(r["errors"] == 0 for r in report["rows"]), report["rows"]
    assert all(r["cpu_ms_per_request"] > 0 for r in report["rows"])
    # Midway through each window every VU's connection is open on one of the workers.
    assert all(
        sum(r["connections_per_worker"]) == r["concurrency"] for r in report["rounds_measured"]
    ), report["rounds_measured"]
    assert report["floors"]["password_check_ms"] > report["floors"]["rs256_sign_ms"] > 0


def test_response_parser_reads_length_and_chunked_bodies_and_waits_for_the_rest():
    fixed = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"
    assert load.parse_response(fixed) == (200, b"hello", len(fixed), False)
    assert load.parse_response(fixed[:-1]) is None
    assert load.parse_response(fixed[:20]) is None
    chunked = (
        b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b'4\r\n{"a"\r\n3\r\n:1}\r\n0\r\n\r\n'
    )
    assert load.parse_response(chunked) == (401, b'{"a":1}', len(chunked), True)
    assert load.parse_response(chunked[:-2]) is None
    two = fixed + fixed
    assert load.parse_response(two)[2] == len(fixed)  # the first response only
    with pytest.raises(load._BadResponse):
        load.parse_response(b"garbage\r\n\r\n")
