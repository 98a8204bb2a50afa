#!/usr/bin/env python3
"""`make bench-scale` (or `make bench ARGS="--scale"`): does the cost stay flat at a million users?

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/15 \
        .venv/bin/python bench/scale.py [--scale-factor 0.01] [--rounds 6] [--seconds 3]

1. Creates two databases of its own, `authserver_scale_small_<pid>` and `..._large_<pid>`
   (refusing names that exist; dropped at the end, also on failure and Ctrl-C; nothing else is
   touched), migrates them and seeds them with COPY (bench/seed.py): the large one with 1
   million users, 1 million live sessions, 10 million sessions that ended before the retention
   period, 1 million that ended within it and 50 million audit events over 52 weeks; the small
   one with 1 % of each (10 thousand users). `--scale-factor` shrinks both.
2. Starts one gunicorn per database (bench/run.py's production settings, both on the server
   core) and measures refresh, login, client_credentials, introspection, userinfo and the session
   list on each, in alternating windows (the same scenario on both databases back to back, the
   order swapped every round): server CPU per request, and its ratio large / small per round.
3. On the large database: N sign-ins through the login's own services (one real login through
   the server checks they write the same rows), the bytes they added to every table and index;
   then >= 200 thousand refreshes of those sessions through the server, with the database's
   size after every window: bytes per live session as it refreshes, and bytes per million
   refreshes (pg_database_size: tables and indexes, not WAL).
4. `purge_expired_sessions` on the large database while the refresh load runs: ended sessions
   deleted per second, refresh p99 during the purge against the minutes before.
5. Prints the tables and the targets of issue 15 as PASS/FAIL lines, writes
   bench/results/scale.json and bench/results/scale.png.

bench/README.md ("Scale") explains the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import secrets
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import cpu, load  # noqa: E402
from bench import run as bench_run  # noqa: E402
from bench.scale_agent import Agent, AgentError, ScaleError  # noqa: E402
from bench.scale_report import write  # noqa: E402
from bench.scale_storage import database_settings, purge, storage  # noqa: E402
from bench.scratch import database_url_required, url_with_database  # noqa: E402
from bench.seed import FULL, Sizes, one_line  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SCENARIOS = ("refresh", "login", "client_credentials", "introspection", "userinfo", "session_list")
LABELS = ("small", "large")
SIGN_IN_AGENT = "scale-bench sign-in"
SIGN_IN_IP = "198.51.100.23"


# --- Arguments ---------------------------------------------------------------------------------


SERVER_THREADS = 4  # per gthread worker of each scale server (one worker)


def agent_environment(env: dict[str, str], app_name: str) -> dict[str, str]:
    """The agent process runs what management commands run in a deployment (the seed's set-up,
    purge_expired_sessions): manage.py's database limits (AUTHSERVER_DB_COMMAND_*, none by
    default), not a serving process's 1.5 s statement timeout, which cancelled a purge batch on
    a slow disk."""
    return {**env, "PGAPPNAME": app_name, "_AUTHSERVER_MANAGEMENT_COMMAND": "1"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/scale.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale-factor",
        type=float,
        default=1.0,
        help="multiply every row count of the large database (0.01: 10 thousand users)",
    )
    parser.add_argument(
        "--small-fraction",
        type=float,
        default=0.01,
        help="the small database's row counts as a fraction of the large one's",
    )
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds (medians)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured time per window")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured time before each")
    parser.add_argument("--concurrency", default="8", help="comma-separated VU counts")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument(
        "--sign-ins", type=int, default=10_000, help="sessions whose bytes are measured"
    )
    parser.add_argument(
        "--refreshes", type=int, default=200_000, help="refreshes of those sessions (growth)"
    )
    parser.add_argument("--growth-window", type=float, default=20.0, help="seconds per checkpoint")
    parser.add_argument(
        "--refresh-concurrency",
        type=int,
        default=8,
        help="VUs refreshing the measured sessions (growth) and during the purge",
    )
    parser.add_argument(
        "--purge-baseline", type=float, default=15.0, help="seconds of refresh before the purge"
    )
    parser.add_argument(
        "--purge-timeout",
        type=float,
        default=3600.0,
        help="stop the purge after this many seconds (its rate so far is reported)",
    )
    parser.add_argument(
        "--purge-max-rate",
        type=float,
        default=0.0,
        help="purge_expired_sessions --max-rate (sessions/s; 0: no limit)",
    )
    parser.add_argument(
        "--phases",
        default="costs,storage,purge",
        help="which measurements to run (seeding always runs)",
    )
    parser.add_argument("--log-level", default="INFO", help="AUTHSERVER_LOG_LEVEL of the servers")
    parser.add_argument(
        "--generator-processes", type=int, default=load.PROCESSES, help="bench/load.py"
    )
    parser.add_argument("--json", default=str(RESULTS / "scale.json"))
    parser.add_argument("--chart", default=str(RESULTS / "scale.png"))
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a quick check that it runs: tiny databases, 0.5 s windows, one round",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.scale_factor, args.small_fraction = min(args.scale_factor, 0.0005), 0.1
        args.rounds, args.seconds, args.warmup = 1, 0.5, 0.2
        args.sign_ins, args.refreshes, args.growth_window = 200, 600, 1.0
        args.purge_baseline = 1.0
    args.concurrency = sorted({int(c) for c in args.concurrency.split(",") if c.strip()})
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    args.phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    unknown = (set(args.scenarios) - set(SCENARIOS)) | (args.phases - {"costs", "storage", "purge"})
    if unknown or not args.concurrency or min(args.concurrency) < 1:
        parser.error(f"unknown scenario(s) or phase(s) {sorted(unknown)} or bad --concurrency")
    if not 0 < args.scale_factor <= 10 or not 0 < args.small_fraction <= 1:
        parser.error("--scale-factor must be in (0, 10], --small-fraction in (0, 1]")
    if not 0.1 <= args.seconds <= 120 or not 0 <= args.warmup <= 30 or not 1 <= args.rounds <= 20:
        parser.error("--seconds must be 0.1-120, --warmup 0-30, --rounds 1-20 (bounded run)")
    if args.sign_ins < 1 or args.refreshes < 0 or args.refresh_concurrency < 1:
        parser.error("--sign-ins and --refresh-concurrency must be positive, --refreshes >= 0")
    args.profile = None  # bench/run.py's measure() reads it
    # bench/run.py's server_environment and server arguments read these: the scale servers are
    # one gthread worker of SERVER_THREADS threads (the hash gate sized to them, as in make bench).
    args.worker_class, args.threads, args.workers = "gthread", SERVER_THREADS, 0
    args.gunicorn_config = None
    return args


def sizes_of(args: argparse.Namespace) -> dict[str, Sizes]:
    large = FULL.scaled(args.scale_factor)
    return {"small": large.scaled(args.small_fraction), "large": large}


# --- Databases of our own ----------------------------------------------------------------------


def database_name(label: str, pid: int | None = None) -> str:
    return f"authserver_scale_{label}_{os.getpid() if pid is None else pid}"


def owner_marker(token: str) -> str:
    return f"authserver scale benchmark run {os.getpid()} {token}"


@contextlib.contextmanager
def owned_database(admin_url: str, name: str, marker: str) -> Iterator[str]:
    """Create the database `name` and yield its URL; drop it on the way out. A database of that
    name that already exists is refused, not reused (it is someone else's), and the drop
    happens only if the database still carries the comment `marker` this run wrote on it."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as admin:
        try:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.DuplicateDatabase:
            raise ScaleError(
                f"database {name} already exists; the scale run only uses databases it creates"
            ) from None
        except psycopg.Error as exc:
            raise ScaleError(f"cannot create database {name}: {one_line(exc)}") from None
        admin.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), marker))
    try:
        yield url_with_database(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            if database_marker(admin, name) == marker:
                admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def database_marker(admin, name: str) -> str | None:
    row = admin.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
        [name],
    ).fetchone()
    return row[0] if row else None


def owned_check(admin_url: str, url: str, marker: str) -> None:
    """Refuse to write to a database this run did not create (checked before seeding)."""
    import psycopg

    name = url.rsplit("/", 1)[-1]
    with psycopg.connect(admin_url, autocommit=True) as admin:
        if database_marker(admin, name) != marker:
            raise ScaleError(f"database {name} was not created by this run; not touching it")


def disk_shortfall(needed: int, free: int) -> str | None:
    if free >= needed:
        return None
    return (
        f"not enough disk for the scale databases: about {needed / 1e9:.1f} GB needed, "
        f"{free / 1e9:.1f} GB free (a smaller --scale-factor needs less)"
    )


def disk_check(admin_url: str, sizes: dict[str, Sizes]) -> str:
    """Stop before seeding when the PostgreSQL data directory lacks the room (one line)."""
    import psycopg

    needed = sum(s.estimated_bytes() for s in sizes.values()) + 2_000_000_000  # + WAL
    try:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            directory = admin.execute("SHOW data_directory").fetchone()[0]
        free = shutil.disk_usage(directory).free
    except (psycopg.Error, OSError) as exc:
        return f"disk space not checked ({one_line(exc)})"
    short = disk_shortfall(needed, free)
    if short:
        raise ScaleError(f"{short} in {directory}")
    return f"{free / 1e9:.1f} GB free in {directory}, about {needed / 1e9:.1f} GB needed"


# --- Servers -----------------------------------------------------------------------------------


class DbServer(bench_run.Server):
    """bench/run.py's Server (CPU accounting and pinning over gunicorn and its backends), with
    its own application_name: two servers run at once, one per database."""

    def __init__(self, gunicorn, admin_url: str, plan: cpu.CorePlan, app_name: str):
        super().__init__(gunicorn, admin_url, plan)
        self.app_name = app_name

    def _app_backends(self) -> list[int]:
        rows = self.admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", [self.app_name]
        ).fetchall()
        return [row[0] for row in rows]


def bearer_get(name: str, path: str, marker: bytes) -> load.Scenario:
    """GET `path` with the VU's access token; success is 200 with `marker` in the body."""

    def build(token: object) -> load.Request:
        return "GET", path, None, {"Authorization": f"Bearer {token}"}

    def judge(status: int, body: bytes, state: object) -> load.Outcome:
        return status == 200 and marker in body, state, True

    return load.Scenario(name, build, judge)


# --- The run -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    admin_url = database_url_required()
    redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15"
    plan = cpu.core_plan()
    os.sched_setaffinity(0, plan.client)
    signal.signal(signal.SIGTERM, _terminated)
    sizes = sizes_of(args)
    marker = owner_marker(secrets.token_hex(8))
    try:
        disk = disk_check(admin_url, sizes)
        print(f"bench: {disk}", file=sys.stderr)
        with contextlib.ExitStack() as stack:
            urls = {
                label: stack.enter_context(owned_database(admin_url, database_name(label), marker))
                for label in LABELS
            }
            scale = ScaleRun(args, admin_url, urls, redis_url, plan, sizes, marker)
            stack.callback(scale.close)
            report = scale.go()
            report["machine"]["disk"] = disk
    except ScaleError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; the scale databases were dropped", file=sys.stderr)
        return 130
    write(report, args)
    return 0


def _terminated(signum, frame) -> None:
    raise KeyboardInterrupt  # the same clean-up as Ctrl-C: servers stopped, databases dropped


class ScaleRun:
    def __init__(self, args, admin_url, urls, redis_url, plan, sizes, marker):
        self.args = args
        self.admin_url = admin_url
        self.urls = urls
        self.redis_url = redis_url
        self.plan = plan
        self.sizes = sizes
        self.marker = marker
        self.envs: dict[str, dict] = {}
        self.agents: dict[str, Agent] = {}
        self.guns: dict = {}
        self.servers: dict[str, DbServer] = {}
        self.warnings: list[str] = []
        self.database: dict[str, str] = {}  # database_settings of the large database's server
        self.rng = random.Random(15)
        self.setup: dict[str, dict] = {}
        self.password = secrets.token_urlsafe(18)

    # Set-up

    def go(self) -> dict:
        started = datetime.now(UTC)
        load_start = cpu.load_average()
        report: dict = {
            "started_at": started.isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:])]),
            "sizes": {label: asdict(s) for label, s in self.sizes.items()},
            "seeding": {},
            "warnings": self.warnings,
        }
        for label in LABELS:
            report["seeding"][label] = self.prepare(label)
        for label in LABELS:
            self.serve(label)
        # Read once, before the phases: the purge's warning names max_wal_size.
        self.database = database_settings(self.servers["large"].admin)
        if "costs" in self.args.phases:
            report["costs"] = self.costs()
        states = None  # the sessions the storage phase refreshes, refreshed on during the purge
        if "storage" in self.args.phases:
            report["storage"], states = storage(self)
        if "purge" in self.args.phases:
            report["purge"] = purge(self, states)
        report["machine"] = {
            "nproc": os.cpu_count(),
            "cores": self.plan.describe(),
            "load_average_start": load_start,
            "load_average_end": cpu.load_average(),
        }
        report["database"] = self.database
        report["server"] = {
            "workers": 1,
            "threads": SERVER_THREADS,
            "settings": "bench/run.py's: AUTHSERVER_MODE=production, "
            "AUTHSERVER_SSL_REDIRECT=false, "
            f"log level {self.args.log_level}, login throttle lifted",
        }
        return report

    def prepare(self, label: str) -> dict:
        """Migrate, start the agent, create clients and keys, seed with COPY."""
        from tests.live import manage

        url = self.urls[label]
        owned_check(self.admin_url, url, self.marker)
        env = bench_run.server_environment(url, self.redis_url, self.args)
        env["AUTHSERVER_CACHE_KEY_PREFIX"] = f"scale{os.getpid()}{label}"
        self.envs[label] = env
        started = time.monotonic()
        migrated = manage("migrate", "--noinput", env=env, timeout=600)
        if migrated.returncode != 0:
            last = (migrated.stderr.strip().splitlines() or ["?"])[-1]
            raise ScaleError(f"migrate failed on {database_name(label)}: {last}")
        migrate_seconds = time.monotonic() - started
        self.agents[label] = Agent(agent_environment(env, self.agent_app(label)))
        self.setup[label] = self.agent_call(label, "setup", self.password)
        sizes = self.sizes[label]
        print(f"bench: seeding {database_name(label)}: {sizes}", file=sys.stderr, flush=True)
        seeded = self.agent_call(
            label,
            "seed",
            url,
            asdict(sizes),
            self.setup[label]["password_hash"],
            self.setup[label]["apps"],
            15,
        )
        seeded["migrate_seconds"] = round(migrate_seconds, 1)
        print(f"bench: seeded {database_name(label)} in {seeded['seconds']:.0f} s", file=sys.stderr)
        return seeded

    def agent_app(self, label: str) -> str:
        # With the run's pid: a backend is found (and its CPU counted) by this name, and two runs
        # at once must not count each other's.
        return f"authserver-scale-{os.getpid()}-agent-{label}"

    def agent_call(self, label: str, name: str, *args):
        try:
            return self.agents[label].call(name, *args)
        except AgentError as exc:
            raise ScaleError(f"{name} on {database_name(label)} failed: {exc}") from None

    def serve(self, label: str) -> None:
        from tests.live import Gunicorn

        server_args = argparse.Namespace(
            gunicorn_config=None, worker_class="gthread", threads=SERVER_THREADS, workers=0
        )
        app_name = f"authserver-scale-{os.getpid()}-{label}"
        env = {**self.envs[label], "PGAPPNAME": app_name}
        os.sched_setaffinity(0, self.plan.server)
        try:
            gun = Gunicorn(
                env,
                workers=bench_run.server_workers(server_args, self.plan),
                extra=bench_run.gunicorn_args(server_args),
            ).__enter__()
        finally:
            os.sched_setaffinity(0, self.plan.client)
        self.guns[label] = gun
        self.servers[label] = DbServer(gun, self.admin_url, self.plan, app_name)
        if bench_run.http_status(gun.port, "GET", "/readyz") != 200:
            raise ScaleError(f"/readyz of the {label} server is not 200")

    def close(self) -> None:
        for server in self.servers.values():
            server.close()
        for gun in self.guns.values():
            gun.__exit__(None, None, None)
            Path(gun.log.name).unlink(missing_ok=True)
        for agent in self.agents.values():
            agent.close()
        for env in self.envs.values():
            with contextlib.suppress(Exception):
                bench_run.cache_keys_delete(self.redis_url, env["AUTHSERVER_CACHE_KEY_PREFIX"])

    def users(self, label: str, count: int) -> list[int]:
        population = self.sizes[label].users
        if count <= population:
            return [i + 1 for i in self.rng.sample(range(population), count)]
        return [self.rng.randrange(population) + 1 for _ in range(count)]

    # Costs

    def scenario(self, name: str, label: str) -> load.Scenario:
        setup = self.setup[label]
        if name == "refresh":
            return load.refresh()
        if name == "login":
            return load.login(self.password)
        if name == "client_credentials":
            return load.client_credentials(*setup["cc"])
        if name == "introspection":
            return load.introspection(*setup["rs"])
        if name == "userinfo":
            return bearer_get("userinfo", "/oauth/userinfo", b'"sub"')
        if name == "session_list":
            return bearer_get("session_list", "/api/v1/sessions", b'"current":true')
        raise ValueError(name)

    def states(self, name: str, label: str, user_ids: list[int]) -> list:
        if name == "login":
            return [f"user{uid:08d}" for uid in user_ids]
        if name == "client_credentials":
            return [None] * len(user_ids)
        oidc = self.setup[label]["apps"][0]
        return self.agent_call(label, "vu_states", name, user_ids, oidc)

    def costs(self) -> dict:
        """Every scenario on both databases, in alternating windows."""
        args = self.args
        vus = max(args.concurrency)
        users = {label: self.users(label, vus) for label in LABELS}
        runs: dict[tuple[str, int, str], list[bench_run.Row]] = {}
        names = list(args.scenarios)
        for number in range(1, args.rounds + 1):
            order = names if number % 2 else names[::-1]
            for index, name in enumerate(order):
                for concurrency in args.concurrency:
                    labels = LABELS if (number + index) % 2 else LABELS[::-1]
                    for label in labels:
                        states = self.states(name, label, users[label])
                        row = bench_run.measure(
                            self.servers[label],
                            self.scenario(name, label),
                            states,
                            concurrency,
                            args,
                            self.warnings,
                        )
                        runs.setdefault((name, concurrency, label), []).append(row)
                        print(
                            f"  round {number}/{args.rounds} {name} c={concurrency} {label}: "
                            f"{row.rps:.1f} req/s, {row.cpu_ms_per_request:.2f} ms CPU/req, "
                            f"{row.errors} errors",
                            file=sys.stderr,
                            flush=True,
                        )
        rows = []
        for name in names:
            for concurrency in args.concurrency:
                small = runs[(name, concurrency, "small")]
                large = runs[(name, concurrency, "large")]
                ratios = [
                    b.cpu_ms_per_request / a.cpu_ms_per_request
                    for a, b in zip(small, large, strict=True)
                    if a.cpu_ms_per_request > 0
                ]
                rows.append(
                    {
                        "scenario": name,
                        "concurrency": concurrency,
                        "small": asdict(bench_run.combine(small)),
                        "large": asdict(bench_run.combine(large)),
                        "ratio": statistics.median(ratios) if ratios else math.nan,
                        "ratio_by_round": ratios,
                    }
                )
        return {
            "seconds": args.seconds,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "rows": rows,
            "rounds_measured": {
                f"{name} c={c} {label}": [asdict(r) for r in rows_]
                for (name, c, label), rows_ in runs.items()
            },
        }


if __name__ == "__main__":
    sys.exit(main())
