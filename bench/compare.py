#!/usr/bin/env python3
"""A/B: two server configurations side by side, measured in alternating windows.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/15 \
        .venv/bin/python bench/compare.py --a "--worker-class sync" --b "--worker-class gthread" \
        [--scenarios healthz,refresh] [--concurrency 8] [--rounds 5] [--seconds 3]

On a shared machine the CPU cost of a request moves with the neighbours' load (cache and SMT
contention), so two configurations measured minutes apart are not comparable. Here both servers
run at once on the server core, over one scratch database, and each round measures A then B
with the same scenario and concurrency; the medians over the rounds are compared. `--a`/`--b`
take bench/run.py's server options (--worker-class, --workers, --threads, --gunicorn-config,
--log-level). Environment differences go in `--a-env NAME=VALUE` (repeatable).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import cpu, run, sockets  # noqa: E402
from bench.scratch import database_url_required, scratch_database  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", default="", help="bench/run.py server options of A")
    parser.add_argument("--b", default="", help="bench/run.py server options of B")
    parser.add_argument(
        "--b-root",
        help="run B from another checkout (e.g. a git worktree of the commit before a change)",
    )
    parser.add_argument("--a-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--b-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--scenarios", default="healthz,jwks,refresh")
    parser.add_argument("--concurrency", default="8")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args()
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds must be 1-20 (the run is bounded)")
    return args


def side(options: str, common: argparse.Namespace) -> argparse.Namespace:
    side_args = run.parse_args(
        [
            *shlex.split(options),
            "--seconds",
            str(common.seconds),
            "--warmup",
            str(common.warmup),
            "--concurrency",
            common.concurrency,
            "--scenarios",
            common.scenarios,
        ]
    )
    side_args.profile = None
    return side_args


def main() -> int:
    common = parse_args()
    sides = {"A": side(common.a, common), "B": side(common.b, common)}
    extra_env = {
        "A": dict(item.split("=", 1) for item in common.a_env),
        "B": dict(item.split("=", 1) for item in common.b_env),
    }
    base_url = database_url_required()
    redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15"
    plan = cpu.core_plan()
    os.sched_setaffinity(0, plan.client)
    with scratch_database(base_url) as url:
        return compare(common, sides, extra_env, base_url, url, redis_url, plan)


def compare(common, sides, extra_env, admin_url, database_url, redis_url, plan) -> int:
    from tests.live import Gunicorn, manage

    first = sides["A"]
    env = run.server_environment(database_url, redis_url, first)
    migrated = manage("migrate", "--noinput", env=env, timeout=600)
    if migrated.returncode != 0:
        sys.exit("compare: migrate failed:\n" + migrated.stderr)
    run.django_setup(env)
    from django.db import connections

    seeded = run.seed(max(first.concurrency))
    connections.close_all()
    servers: dict[str, run.Server] = {}
    guns = []
    try:
        for name, args in sides.items():
            server_env = {
                **env,
                "AUTHSERVER_LOG_LEVEL": args.log_level,
                "PGAPPNAME": run.SERVER_APP_NAME,
                **extra_env[name],
            }
            workers = run.server_workers(args, plan)
            os.sched_setaffinity(0, plan.server)
            try:
                if name == "B" and common.b_root:
                    gun = Gunicorn(
                        server_env,
                        workers=workers,
                        extra=run.gunicorn_args(args),
                        root=Path(common.b_root),
                    )
                else:
                    gun = Gunicorn(server_env, workers=workers, extra=run.gunicorn_args(args))
                guns.append(gun.__enter__())
            finally:
                os.sched_setaffinity(0, plan.client)
            servers[name] = run.Server(gun, admin_url, plan)
        # Both servers' backends carry the same application_name: tell them apart by port.
        for server in servers.values():
            server.pg_backends = _backends_of(server)  # type: ignore[method-assign]
        print(f"A: {common.a or '(defaults)'} {extra_env['A'] or ''}")
        print(f"B: {common.b or '(defaults)'} {extra_env['B'] or ''} {common.b_root or ''}")
        print(f"{plan.describe()}; load average {cpu.load_average()}")
        print(
            f"{'scenario':<20}{'conc':>5}{'A ms/req':>10}{'B ms/req':>10}{'B/A':>7}"
            f"{'A req/s':>10}{'B req/s':>10}   (medians of {common.rounds} alternating rounds)"
        )
        for scenario_name in first.scenarios:
            if scenario_name in run.OAUTH_SCENARIOS and not seeded.oauth:
                continue
            if scenario_name in run.FLOOR_APPS:  # served by neither A nor B
                print(f"{scenario_name:<20}  skipped: a floor app, measured by bench/run.py")
                continue
            states = {}
            scenario = None
            for name in sides:
                scenario, states[name] = run.scenario_for(
                    scenario_name, seeded, len(seeded.usernames)
                )
            connections.close_all()
            for concurrency in first.concurrency:
                results: dict[str, list[run.Row]] = {"A": [], "B": []}
                for _ in range(common.rounds):
                    for name in sides:
                        run.states_renew(scenario_name, seeded, states[name])
                        row = run.measure(
                            servers[name], scenario, states[name], concurrency, sides[name], []
                        )
                        results[name].append(row)
                a_cpu = statistics.median(r.cpu_ms_per_request for r in results["A"])
                b_cpu = statistics.median(r.cpu_ms_per_request for r in results["B"])
                a_rps = statistics.median(r.rps for r in results["A"])
                b_rps = statistics.median(r.rps for r in results["B"])
                errors = sum(r.errors for rows in results.values() for r in rows)
                print(
                    f"{scenario_name:<20}{concurrency:>5}{a_cpu:>10.2f}{b_cpu:>10.2f}"
                    f"{b_cpu / a_cpu:>7.2f}{a_rps:>10.0f}{b_rps:>10.0f}"
                    + (f"   {errors} errors" if errors else ""),
                    flush=True,
                )
                for name, rows in results.items():
                    if any(len(r.connections_per_worker) > 1 for r in rows):
                        print(
                            f"    {name} by round, ms/req (connections per worker): {spread(rows)}"
                        )
    finally:
        for server in servers.values():
            server.close()
        for gun in guns:
            gun.__exit__(None, None, None)
        connections.close_all()
        run.cache_keys_delete(redis_url, env["AUTHSERVER_CACHE_KEY_PREFIX"])
    print(f"load average at end {cpu.load_average()}")
    return 0


def spread(rows: list[run.Row]) -> str:
    """Each round's CPU per request with the spread of the connections over the workers: with
    several workers on one core, what a request costs follows how the kernel spread them."""
    return ", ".join(
        f"{r.cpu_ms_per_request:.2f} ({'/'.join(map(str, r.connections_per_worker))})" for r in rows
    )


def _backends_of(server: run.Server):
    """PostgreSQL backends whose client is one of this server's processes (by client port)."""

    def backends() -> list[int]:
        tree = set(cpu.process_tree(server.gunicorn.proc.pid))
        rows = server.admin.execute(
            "SELECT pid, client_port FROM pg_stat_activity WHERE application_name = %s",
            [run.SERVER_APP_NAME],
        ).fetchall()
        ports = sockets.local_ports(tree)
        return [pid for pid, port in rows if port in ports and cpu.process_visible(pid)]

    return backends


if __name__ == "__main__":
    sys.exit(main())
