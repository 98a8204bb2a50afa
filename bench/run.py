#!/usr/bin/env python3
"""`make bench`: what authserver's endpoints cost, in server CPU per request, and how fast they go.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/15 \
        .venv/bin/python bench/run.py [--seconds 5] [--concurrency 1,8,32] [--scenarios ...]
        [--worker-class gthread|sync] [--workers N] [--threads N] [--profile DIR] [--smoke]

1. Creates a scratch database (dropped at the end), migrates it, and seeds it in this process:
   one user per virtual user (VU) with the same password, the first signing key, and, when the
   OAuth app is installed, a client_credentials client and a resource server that introspects.
2. Measures the floors on the server's core: one RS256 signature with the parsed key object, one
   password check with the configured hasher (Argon2id).
3. Starts authserver under gunicorn (deploy/gunicorn.conf.py when present) in production mode
   (AUTHSERVER_MODE=production, https issuer, secrets from the environment) except
   AUTHSERVER_SSL_REDIRECT=false: the load generator talks plain HTTP on loopback, where a
   TLS-terminating proxy would sit in production. The login throttle is raised (every VU logs in
   as its own user, many times a second), everything else keeps its production default.
4. With two or more cores the server (gunicorn tree and its PostgreSQL backends) runs on one core
   and the load generator on another. Each scenario runs at each concurrency for a warm-up and
   then --seconds measured: the two floors (django_floor: a plain Django view under Django's
   default middleware, whose cost is D; wsgi_floor: a bare WSGI app; each on its own gunicorn
   with the same configuration, bench/README.md "The framework floors"), healthz (the framework
   ceiling), jwks, login, refresh (each VU always sends the refresh token its previous response
   returned), client_credentials and introspection.
5. Prints one table (req/s, p50, p99, errors, server CPU ms per request = utime + stime of the
   gunicorn tree + its PostgreSQL backends over the measured window / requests served, and that
   cost as a multiple of the two floors'), the targets of issues 7 and 15 as PASS/FAIL lines,
   writes the same to bench/results/latest.json and draws bench/results/latest.png.

Not a test: tests/bench/test_bench_smoke.py runs `--smoke` (a second per scenario) to check it
works. bench/README.md explains the figures and what profiling found.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import cpu, load, sockets  # noqa: E402
from bench.scratch import database_url_required, scratch_database  # noqa: E402

RESULTS = ROOT / "bench" / "results"
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"
SERVER_APP_NAME = "authserver-bench-server"  # PostgreSQL application_name of the server's backends
ISSUER = "https://auth.bench.invalid"
# The two floors come first: every other row is also printed as a multiple of them.
SCENARIOS = (
    "django_floor",
    "wsgi_floor",
    "healthz",
    "jwks",
    "login",
    "refresh",
    "client_credentials",
    "introspection",
)
OAUTH_SCENARIOS = ("client_credentials", "introspection")
# Each floor is its own WSGI app under authserver's gunicorn settings, on its own server.
FLOOR_APPS = {"django_floor": "bench.floor_django.wsgi", "wsgi_floor": "bench.floor_wsgi"}
DJANGO_FLOOR, WSGI_FLOOR = "django_floor", "wsgi_floor"
NO_OAUTH = "n/a (oauth not installed)"


@dataclass
class Row:
    scenario: str
    concurrency: int
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_ms_per_request: float
    postgres_ms_per_request: float  # the PostgreSQL backends' share of cpu_ms_per_request
    server_core_busy: float  # server CPU seconds / wall seconds (1.0 = one core saturated)
    generator_core_busy: float
    exited_processes: int = 0
    # Established connections per gunicorn worker in the middle of the window, largest first
    # (bench/sockets.py); per round only, empty in the medians of several rounds.
    connections_per_worker: list[int] = field(default_factory=list)


@dataclass
class Target:
    name: str
    passed: bool | None  # None: not measured in this run
    detail: str

    def line(self) -> str:
        verdict = "n/a " if self.passed is None else ("PASS" if self.passed else "FAIL")
        return f"{verdict}  {self.name}: {self.detail}"


# --- Set-up -----------------------------------------------------------------------------------


def server_environment(database_url: str, redis_url: str, args: argparse.Namespace) -> dict:
    from tests.live import base_env

    return base_env(
        AUTHSERVER_MODE="production",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        AUTHSERVER_ISSUER=ISSUER,
        # The KEK of an existing database (the smoke test reuses the test database) or a new one.
        AUTHSERVER_KEY_ENCRYPTION_KEY=os.environ.get("AUTHSERVER_KEY_ENCRYPTION_KEY")
        or secrets.token_urlsafe(32),
        # Plain HTTP on loopback; in production TLS ends at a proxy in front of gunicorn.
        AUTHSERVER_SSL_REDIRECT="false",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        AUTHSERVER_CACHE_KEY_PREFIX=f"bench{os.getpid()}",
        # Every VU logs in as its own user, many times a second: lift the throttle, keep lockout.
        AUTHSERVER_LOGIN_THROTTLE_PER_IP="1000000000",
        AUTHSERVER_LOGIN_THROTTLE_PER_LOGIN="1000000000",
        # The password-hash gate (accounts/hash_gate.py) stays in the path but is sized to never
        # refuse: a closed-loop VU retries at once instead of honouring 503's Retry-After as a
        # client would, so with the shipped sizes (a quarter of the threads hash, a quarter
        # queue for up to 2 s) the login windows measured thousands of cheap refusals, not
        # sign-ins. Every thread may hash, so the cost per request is the cost of a sign-in.
        AUTHSERVER_THREADS=str(args.threads),
        AUTHSERVER_PASSWORD_HASH_CONCURRENCY=str(args.threads),
        AUTHSERVER_PASSWORD_HASH_QUEUE=str(args.threads),
        AUTHSERVER_LOG_LEVEL=args.log_level,
        # Django replaces a connection older than this at the end of a request. The default
        # (600 s) is shorter than a six-round run: the replaced backends exited mid-window, and
        # the CPU they had spent in it went uncounted (a warning said so). One reconnect per
        # thread every ten minutes costs nothing per request; keep them for the whole run.
        DATABASE_CONN_MAX_AGE="7200",
    )


def django_setup(env: dict) -> None:
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "authserver.settings"
    import logging

    import django

    django.setup()
    logging.disable(logging.INFO)  # this process's own audit lines (seeding) are not the server's


@dataclass
class Seed:
    usernames: list[str]
    password: str
    oauth: bool
    cc_client: tuple[str, str] | None = None
    rs_client: tuple[str, str] | None = None


def seed(vus: int) -> Seed:
    """VU users (one shared password hash: every check costs the same), the first signing key,
    OAuth clients when the app is installed."""
    from django.apps import apps
    from django.contrib.auth.hashers import make_password

    from accounts.models import User
    from tokens.keys import active_signing_key

    password = secrets.token_urlsafe(18)
    encoded = make_password(password)
    run = secrets.token_hex(3)
    usernames = [f"bench-{run}-{i}" for i in range(vus)]
    User.objects.bulk_create(
        [User(username=name, email=f"{name}@bench.invalid", password=encoded) for name in usernames]
    )
    active_signing_key()  # creates the first key in an empty store
    result = Seed(usernames=usernames, password=password, oauth=False)
    if apps.is_installed("oauth"):
        try:
            from oauth.clients import client_create
        except ImportError:
            return result
        cc = client_create(
            name="bench client_credentials",
            client_type="confidential",
            grant_types=["client_credentials"],
            scopes=["bench.read"],
        )
        rs = client_create(
            name="bench resource server",
            client_type="confidential",
            grant_types=["client_credentials"],
            is_resource_server=True,
        )
        result.oauth = True
        result.cc_client = (cc.client.client_id, cc.secret)
        result.rs_client = (rs.client.client_id, rs.secret)
    return result


def sessions_start(usernames: list[str]) -> list:
    """A fresh first-party session per VU, as a login would start it (no password hash)."""
    from accounts.models import User
    from authserver.conf import get_config
    from sessions.apis import FIRST_PARTY_CLIENT_ID
    from sessions.services import session_start

    users = {u.username: u for u in User.objects.filter(username__in=usernames)}
    return [
        session_start(
            user=users[name],
            client_id=FIRST_PARTY_CLIENT_ID,
            audience=[get_config().default_audience],
            user_agent="bench",
        )
        for name in usernames
    ]


# --- Floors -----------------------------------------------------------------------------------


def _cpu_per_call(step: Callable[[], object], seconds: float, minimum: int) -> float:
    """CPU milliseconds per call of `step` (process CPU time, so other load does not count)."""
    calls = 0
    started = time.process_time()
    wall_end = time.monotonic() + seconds
    while calls < minimum or time.monotonic() < wall_end:
        step()
        calls += 1
    return (time.process_time() - started) * 1000 / calls


def floors(password: str, seconds: float) -> dict:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from django.contrib.auth.hashers import check_password, get_hasher, make_password

    from tokens.issuance import access_token_issue
    from tokens.keys import active_signing_key

    sample = access_token_issue(
        subject="floor", audience="https://api.bench.invalid", client_id="x"
    )
    key = active_signing_key().backend.signing_key
    message = sample.token.rsplit(".", 1)[0].encode()
    encoded = make_password(password)
    hasher = get_hasher("default")
    params = ", ".join(
        f"{name}={getattr(hasher, name)}"
        for name in ("time_cost", "memory_cost", "parallelism", "iterations")
        if hasattr(hasher, name)
    )
    sign_ms = _cpu_per_call(
        lambda: key.sign(message, padding.PKCS1v15(), hashes.SHA256()), seconds / 3, 50
    )
    public_key = key.public_key()
    signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    verify_ms = _cpu_per_call(
        lambda: public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256()),
        seconds / 6,
        200,
    )
    check_ms = _cpu_per_call(lambda: check_password(password, encoded), seconds, 5)
    return {
        "rs256_sign_ms": sign_ms,
        "rs256_verify_ms": verify_ms,
        "rs256_key_bits": key.key_size,
        "password_check_ms": check_ms,
        "password_hasher": f"{hasher.algorithm} ({params})",
    }


# --- The server -------------------------------------------------------------------------------


class Server:
    """gunicorn + the PostgreSQL backends serving it; CPU accounting over both. A floor app has
    no database: `admin_url` None, and its CPU is gunicorn's alone."""

    def __init__(self, gunicorn, admin_url: str | None, plan: cpu.CorePlan):
        import psycopg

        self.gunicorn = gunicorn
        self.port = gunicorn.port
        self.plan = plan
        self.admin = psycopg.connect(admin_url, autocommit=True) if admin_url else None
        self.postgres_visible = True
        self._pinned: set[int] = set()

    def _app_backends(self) -> list[int]:
        if self.admin is None:
            return []
        rows = self.admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", [SERVER_APP_NAME]
        ).fetchall()
        return [row[0] for row in rows]

    def pg_backends(self) -> list[int]:
        pids = self._app_backends()
        visible = [pid for pid in pids if cpu.process_visible(pid)]
        if len(visible) < len(pids):
            self.postgres_visible = False
        return visible

    def pids(self) -> list[int]:
        return cpu.process_tree(self.gunicorn.proc.pid) + self.pg_backends()

    def pin(self) -> list[int]:
        """Pin gunicorn's process tree and its PostgreSQL backends to the server's core."""
        pids = self.pids()
        self._pin_new(pids)
        return pids

    def connections_per_worker(self) -> list[int]:
        master = self.gunicorn.proc.pid
        workers = [pid for pid in cpu.process_tree(master) if pid != master]
        return sockets.connections_per_process(workers, self.port)

    def pin_backends(self) -> None:
        """Pin the PostgreSQL backends that appeared since the last call: called every few tens
        of milliseconds while load runs. PostgreSQL starts a backend for each new connection of
        a gunicorn thread, and a backend started mid-window would otherwise run on any core, the
        load generator's included (a wrk run once got 1.06 cores of server CPU that way)."""
        self._pin_new(self._app_backends())

    def _pin_new(self, pids: list[int]) -> None:
        if self.plan.pinned:
            new = [pid for pid in pids if pid not in self._pinned]
            cpu.pin(new, self.plan.server)
            self._pinned.update(new)

    def close(self) -> None:
        if self.admin is not None:
            self.admin.close()


def server_start(
    env: dict, args: argparse.Namespace, plan: cpu.CorePlan, admin_url: str | None, app: str
) -> Server:
    """gunicorn serving `app` with deploy/gunicorn.conf.py and this run's worker options, its
    processes on the server's core (they inherit this process's affinity at the fork)."""
    from tests.live import Gunicorn

    os.sched_setaffinity(0, plan.server)
    try:
        gunicorn = Gunicorn(
            env, workers=server_workers(args, plan), extra=gunicorn_args(args), app=app
        ).__enter__()
    finally:
        os.sched_setaffinity(0, plan.client)
    try:
        return Server(gunicorn, admin_url, plan)
    except BaseException:
        gunicorn.__exit__(None, None, None)
        raise


def gunicorn_args(args: argparse.Namespace) -> tuple[str, ...]:
    # tests.live.Gunicorn starts gunicorn with deploy/gunicorn.conf.py; a later --config wins.
    extra = ["--config", args.gunicorn_config] if args.gunicorn_config else []
    extra += ["--worker-class", args.worker_class]
    # gunicorn runs gthread workers when asked for sync ones with threads > 1, and
    # deploy/gunicorn.conf.py sets 4: without --threads 1 a "sync" run was gthread.
    threads = args.threads if args.worker_class == "gthread" else 1
    return (*extra, "--threads", str(threads))


def server_workers(args: argparse.Namespace, plan: cpu.CorePlan) -> int:
    """--workers, else deploy/gunicorn.conf.py's default for gthread (one per CPU, here the
    server's cores) and gunicorn's rule for sync workers, which serve one request at a time
    each (2 x cores + 1)."""
    if args.workers:
        return args.workers
    cores = len(plan.server)
    return cores if args.worker_class == "gthread" else 2 * cores + 1


def http_status(port: int, method: str, path: str, body: bytes | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
        conn.request(method, path, body, headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


# --- Measuring --------------------------------------------------------------------------------


def measure(
    server: Server,
    scenario: load.Scenario,
    states: list,
    concurrency: int,
    args: argparse.Namespace,
    warnings: list[str],
) -> Row:
    vu_states = states[:concurrency]
    if args.warmup > 0:
        warm = load.run(
            server.port, scenario, vu_states, args.warmup, processes=args.generator_processes
        )
        vu_states = warm.states
    pids = server.pin()  # backends opened during the warm-up join the server's core
    before = cpu.snapshot(pids)
    profiler = profile_start(server, scenario.name, concurrency, args)
    seconds = window_seconds(scenario.name, args)
    spread: list[list[int]] = []  # sampled once, midway
    midway = time.monotonic() + seconds / 2

    def tick() -> None:
        server.pin_backends()
        if not spread and time.monotonic() >= midway:
            spread.append(server.connections_per_worker())

    result = load.run(
        server.port,
        scenario,
        vu_states,
        seconds,
        tick=tick,
        processes=args.generator_processes,
    )
    backends = server.pg_backends()
    after = cpu.snapshot(set(pids) | set(server.pids()))
    profile_stop(profiler, args)
    states[:concurrency] = result.states
    server_seconds, exited = after.seconds_since(before)
    postgres_seconds = postgres_share(after, before, backends)
    if exited:
        warnings.append(
            f"{scenario.name} c={concurrency}: {exited} server process(es) exited during the "
            "window; their last CPU slice is not counted"
        )
    latencies = sorted(result.latencies)
    served = result.served
    return Row(
        scenario=scenario.name,
        concurrency=concurrency,
        requests=served,
        rps=served / result.elapsed if result.elapsed > 0 else 0.0,
        p50_ms=load.percentile(latencies, 0.50) * 1000,
        p99_ms=load.percentile(latencies, 0.99) * 1000,
        errors=result.errors,
        cpu_ms_per_request=server_seconds * 1000 / served if served else math.nan,
        postgres_ms_per_request=postgres_seconds * 1000 / served if served else math.nan,
        server_core_busy=server_seconds / result.elapsed if result.elapsed > 0 else 0.0,
        generator_core_busy=result.generator_cpu / result.elapsed if result.elapsed > 0 else 0.0,
        exited_processes=exited,
        connections_per_worker=spread[0] if spread else [],
    )


def postgres_share(after: cpu.Snapshot, before: cpu.Snapshot, backends: list[int]) -> float:
    """CPU seconds of the PostgreSQL backends `backends` between the two snapshots."""
    return cpu.Snapshot(
        {pid: t for pid, t in after.ticks.items() if pid in backends}
    ).seconds_since(before)[0]


# A sign-in costs one Argon2id check (about a third of a second of CPU here): login windows are
# longer so that each holds a few dozen requests, not a handful, and its rates mean something.
LONGER_WINDOWS = {"login": 3}


def window_seconds(scenario: str, args: argparse.Namespace) -> float:
    return args.seconds * (1 if args.smoke else LONGER_WINDOWS.get(scenario, 1))


def combine(measured: list[Row]) -> Row:
    """One row from several rounds: medians of the rates and costs, sums of the counts."""
    if len(measured) == 1:
        return measured[0]

    def median(name: str) -> float:
        return statistics.median(getattr(r, name) for r in measured)

    first = measured[0]
    return Row(
        scenario=first.scenario,
        concurrency=first.concurrency,
        requests=sum(r.requests for r in measured),
        rps=median("rps"),
        p50_ms=median("p50_ms"),
        p99_ms=median("p99_ms"),
        errors=sum(r.errors for r in measured),
        cpu_ms_per_request=median("cpu_ms_per_request"),
        postgres_ms_per_request=median("postgres_ms_per_request"),
        server_core_busy=median("server_core_busy"),
        generator_core_busy=median("generator_core_busy"),
        exited_processes=sum(r.exited_processes for r in measured),
    )


def profile_start(server: Server, scenario: str, concurrency: int, args: argparse.Namespace):
    """py-spy record of the gunicorn tree during the measured window (--profile DIR)."""
    if not args.profile or concurrency != max(args.concurrency):
        return None
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out = Path(args.profile) / f"{scenario}-c{concurrency}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [
        py_spy,
        "record",
        "--pid",
        str(server.gunicorn.proc.pid),
        "--subprocesses",
        "--nonblocking",
        "--gil",
        "--rate",
        "250",
        "--format",
        "raw",
        "--duration",
        str(max(1, math.ceil(window_seconds(scenario, args)))),
        "--output",
        str(out),
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out


def profile_stop(profiler, args: argparse.Namespace) -> None:
    if profiler is None:
        return
    proc, out = profiler
    try:
        proc.wait(timeout=args.seconds * max(LONGER_WINDOWS.values()) + 30)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait()
    from bench.profile import summarize

    if out.exists():
        out.with_suffix(".top.txt").write_text(summarize(out.read_text()))


# --- Reporting --------------------------------------------------------------------------------


def _ms(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _times(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"  # login: hundreds of D


def table(
    rows: list[Row],
    skipped: dict[str, str],
    concurrency: list[int],
    runs: dict[tuple[str, int], list[Row]] | None = None,
) -> str:
    """The report's table; `x D` and `x W` are each row's `floor_ratio`s (rounds in `runs`,
    default the rows themselves)."""
    if runs is None:
        runs = {(r.scenario, r.concurrency): [r] for r in rows}
    header = (
        f"{'scenario':<20}{'conc':>5}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"{'CPU ms/req':>12}{'(PG)':>7}{'x D':>7}{'x W':>7}{'srv core':>10}{'gen core':>10}"
    )
    lines = [header, "-" * len(header)]
    for name in SCENARIOS:
        if name in skipped:
            lines.append(f"{name:<20}{'':>5}  {skipped[name]}")
            continue
        for row in rows:
            if row.scenario != name:
                continue
            lines.append(
                f"{name:<20}{row.concurrency:>5}{row.rps:>10.1f}{_ms(row.p50_ms):>9}"
                f"{_ms(row.p99_ms):>9}{row.errors:>8}{_ms(row.cpu_ms_per_request):>12}"
                f"{_ms(row.postgres_ms_per_request):>7}"
                f"{_times(floor_ratio(runs, name, row.concurrency, DJANGO_FLOOR)):>7}"
                f"{_times(floor_ratio(runs, name, row.concurrency, WSGI_FLOOR)):>7}"
                f"{row.server_core_busy:>9.0%} {row.generator_core_busy:>9.0%}"
            )
    return "\n".join(lines)


def _by(rows: list[Row], scenario: str) -> dict[int, Row]:
    return {row.concurrency: row for row in rows if row.scenario == scenario}


def _worst_cpu(rows: list[Row], scenario: str) -> tuple[float, int] | None:
    measured = [(r.cpu_ms_per_request, r.concurrency) for r in _by(rows, scenario).values()]
    return max(measured) if measured else None


def visit_order(plans: list, levels: list[int], round_number: int) -> list[tuple]:
    """(plan, concurrency) in the order round `round_number` measures them: odd rounds forward,
    even rounds backward (ABBA). The runs a ratio pairs (c=32 with c=8, JWKS with /healthz) are
    then measured first in half the rounds and second in the other half, so a drift of the
    machine's speed during a round, or a cost the earlier run leaves to the later one, does not
    always fall on the same side of the ratio."""
    order = [(plan, level) for plan in plans for level in levels]
    return order if round_number % 2 else order[::-1]


def paired_ratio(
    runs: dict[tuple[str, int], list[Row]], a: tuple[str, int], b: tuple[str, int], metric: str
) -> float | None:
    """a's `metric` over b's, taken within each round and then the median over rounds.

    The two runs of a round are seconds apart, so a drift in the neighbours' load over the
    minutes of a benchmark (bench/README.md "Noise") divides out; a ratio of two medians taken
    separately keeps it (one round with a busy neighbour during c=32 but not c=8 decides)."""
    pairs = zip(runs.get(a, []), runs.get(b, []), strict=False)
    values = [getattr(x, metric) / getattr(y, metric) for x, y in pairs if getattr(y, metric) > 0]
    return statistics.median(values) if values else None


def floor_ratio(
    runs: dict[tuple[str, int], list[Row]], scenario: str, concurrency: int, floor: str
) -> float | None:
    """`scenario`'s CPU per request in units of a floor app's at the same concurrency: the
    `paired_ratio` of the rounds (each round measures both), None if either was not run."""
    return paired_ratio(runs, (scenario, concurrency), (floor, concurrency), "cpu_ms_per_request")


def floor_ratios(rows: list[Row], runs: dict[tuple[str, int], list[Row]]) -> list[dict]:
    """Every row's cost in units of the two floor apps' (the JSON's `ratios`)."""
    return [
        {
            "scenario": row.scenario,
            "concurrency": row.concurrency,
            "to_django_floor": floor_ratio(runs, row.scenario, row.concurrency, DJANGO_FLOOR),
            "to_wsgi_floor": floor_ratio(runs, row.scenario, row.concurrency, WSGI_FLOOR),
        }
        for row in rows
    ]


# Issue 15: CPU per request in units of D, the plain Django view's (django_floor) in the same
# run. (scenario, what the line calls it, limit in D)
FLOOR_TARGETS = (
    ("healthz", "/healthz", 1.2),
    ("jwks", "JWKS", 1.1),
    ("client_credentials", "client_credentials", 2.2),
    ("introspection", "introspection", 2.0),
    ("refresh", "rotating refresh (PostgreSQL included)", 4.0),
)


def signature_in_d(rows: list[Row], floor: dict) -> str:
    """The text " (= N D)": one RS256 signature in units of D, the plain Django view's CPU per
    request at the lowest concurrency; "" without that row. client_credentials and a refresh
    each sign once, so on a processor slow at RSA against Python their ratios to D are that
    much higher."""
    measured = _by(rows, DJANGO_FLOOR)
    if not measured:
        return ""
    d = measured[min(measured)].cpu_ms_per_request
    return f" (= {floor['rs256_sign_ms'] / d:.2f} D)" if d > 0 else ""


def floor_targets(
    rows: list[Row], skipped: dict[str, str], runs: dict[tuple[str, int], list[Row]]
) -> list[Target]:
    """FLOOR_TARGETS as PASS/FAIL lines: the worst concurrency level's `floor_ratio` counts."""
    out = []
    floor = _by(rows, DJANGO_FLOOR)
    for scenario, title, limit in FLOOR_TARGETS:
        name = f"{title} <= {limit} D (plain Django view's CPU/request)"
        measured = _by(rows, scenario)
        ratios = [
            (ratio, c)
            for c in measured
            if c in floor and (ratio := floor_ratio(runs, scenario, c, DJANGO_FLOOR)) is not None
        ]
        if not ratios:
            reason = skipped.get(scenario) or (
                f"{DJANGO_FLOOR} not run" if not floor else f"{scenario} not run"
            )
            out.append(Target(name, None, reason))
            continue
        worst, conc = max(ratios)
        out.append(
            Target(
                name,
                worst <= limit,
                f"worst {worst:.2f} D at c={conc} ({measured[conc].cpu_ms_per_request:.2f} ms, "
                f"D {floor[conc].cpu_ms_per_request:.2f} ms)",
            )
        )
    return out


def targets(
    rows: list[Row],
    floor: dict,
    skipped: dict[str, str],
    runs: dict[tuple[str, int], list[Row]] | None = None,
) -> list[Target]:
    """The issue's targets. Costs are the rows' (medians over rounds, the worst level counts);
    ratios between two runs are `paired_ratio`s of the rounds in `runs` (default: the rows,
    one round)."""
    out: list[Target] = []
    if runs is None:
        runs = {(r.scenario, r.concurrency): [r] for r in rows}

    def cpu_limit(scenario: str, title: str, limit: float) -> None:
        worst = _worst_cpu(rows, scenario)
        if worst is None:
            out.append(Target(title, None, skipped.get(scenario, "not run")))
            return
        value, conc = worst
        out.append(
            Target(
                title,
                value <= limit,
                f"worst {value:.2f} ms at c={conc} (limit {limit} ms)",
            )
        )

    cpu_limit("refresh", "rotating refresh <= 4 ms server CPU/request (PostgreSQL included)", 4.0)
    cpu_limit("client_credentials", "client_credentials <= 2 ms server CPU/request", 2.0)
    cpu_limit("introspection", "introspection <= 2 ms server CPU/request", 2.0)

    jwks, health = _by(rows, "jwks"), _by(rows, "healthz")
    ratios = [
        (ratio, c)
        for c in jwks
        if c in health
        and (ratio := paired_ratio(runs, ("jwks", c), ("healthz", c), "cpu_ms_per_request"))
        is not None
    ]
    if ratios:
        worst, conc = max(ratios)
        out.append(
            Target(
                "JWKS <= 1.2 x /healthz CPU/request",
                worst <= 1.2,
                f"worst ratio {worst:.2f} at c={conc}",
            )
        )
    else:
        out.append(Target("JWKS <= 1.2 x /healthz CPU/request", None, "not run"))

    login = _worst_cpu(rows, "login")
    if login is None:
        out.append(Target("login <= 1.3 x one password check", None, "not run"))
    else:
        value, conc = login
        ratio = value / floor["password_check_ms"]
        out.append(
            Target(
                "login <= 1.3 x one password check",
                ratio <= 1.3,
                f"worst {value:.1f} ms at c={conc} = {ratio:.2f} x "
                f"{floor['password_check_ms']:.1f} ms",
            )
        )

    out.extend(floor_targets(rows, skipped, runs))

    errors = sum(r.errors for r in rows)
    out.append(Target("zero errors", errors == 0, f"{errors} error(s) in {len(rows)} runs"))

    levels = sorted({r.concurrency for r in rows})
    high, low = (
        (32, 8)
        if {8, 32} <= set(levels)
        else (levels[-1], levels[-2])
        if len(levels) > 1
        else (None, None)
    )
    title = f"throughput at c={high} >= 0.9 x c={low}"
    if high is None:
        out.append(Target("throughput holds as concurrency grows", None, "one level only"))
    else:
        worst = None
        for name in SCENARIOS:
            if name in FLOOR_APPS:  # authserver's throughput, not the references'
                continue
            ratio = paired_ratio(runs, (name, high), (name, low), "rps")
            if ratio is not None and (worst is None or ratio < worst[0]):
                worst = (ratio, name)
        if worst is None:
            out.append(Target(title, None, "not run"))
        else:
            out.append(Target(title, worst[0] >= 0.9, f"worst {worst[0]:.2f} ({worst[1]})"))
    return out


# --- Main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured time per run")
    parser.add_argument(
        "--rounds", type=int, default=6, help="measurements per scenario and level (medians)"
    )
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured time before each")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated VU counts")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--worker-class", choices=("gthread", "sync"), default="gthread")
    parser.add_argument(
        "--workers", type=int, default=0, help="0: one per server core (sync: 2 x cores + 1)"
    )
    parser.add_argument("--threads", type=int, default=4, help="per gthread worker")
    parser.add_argument(
        "--generator-processes",
        type=int,
        default=load.PROCESSES,
        help="load generator processes, all on its core (bench/load.py)",
    )
    parser.add_argument("--log-level", default="INFO", help="AUTHSERVER_LOG_LEVEL of the server")
    parser.add_argument(
        "--gunicorn-config", help="instead of deploy/gunicorn.conf.py (to compare settings)"
    )
    parser.add_argument("--json", default=str(RESULTS / "latest.json"))
    parser.add_argument("--chart", default=str(RESULTS / "latest.png"))
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument("--profile", metavar="DIR", help="py-spy record at the top concurrency")
    parser.add_argument(
        "--external",
        action="append",
        metavar="COMMAND",
        help="instead of the scenarios, run this load generator command (see external())",
    )
    parser.add_argument(
        "--crosscheck",
        nargs="?",
        const=str(RESULTS / "crosscheck.json"),
        metavar="JSON",
        help="instead of the table, each scenario with our generator and with wrk in turns "
        "(bench/crosscheck.py); rounds to JSON (default bench/results/crosscheck.json)",
    )
    parser.add_argument(
        "--reuse-database",
        action="store_true",
        help="use DATABASE_URL as it is (already migrated) instead of a scratch database",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a quick check that it runs: 0.5 s runs, c=1,2"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.seconds, args.warmup, args.concurrency, args.rounds = 0.5, 0.2, "1,2", 1
    args.concurrency = sorted({int(c) for c in args.concurrency.split(",") if c.strip()})
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown or not args.concurrency or min(args.concurrency) < 1:
        parser.error(f"unknown scenario(s) {sorted(unknown)} or bad --concurrency")
    if not 1 <= args.generator_processes <= 16:
        parser.error("--generator-processes must be 1-16")
    if not 0.1 <= args.seconds <= 120 or not 0 <= args.warmup <= 30 or not 1 <= args.rounds <= 10:
        parser.error("--seconds must be 0.1-120, --warmup 0-30, --rounds 1-10 (bounded run)")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--scale" in argv:  # `make bench ARGS="--scale ..."`: the data-scale benchmark
        from bench.scale import main as scale_main

        return scale_main([a for a in argv if a != "--scale"])
    args = parse_args(argv)
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    base_url = database_url_required()
    redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15"
    plan = cpu.core_plan()
    os.sched_setaffinity(0, plan.client)
    if args.reuse_database:
        return run(args, base_url, base_url, redis_url, plan)
    with scratch_database(base_url) as url:
        return run(args, base_url, url, redis_url, plan)


def run(
    args: argparse.Namespace, admin_url: str, database_url: str, redis_url: str, plan: cpu.CorePlan
) -> int:
    from tests.live import manage

    started = datetime.now(UTC)
    load_start = cpu.load_average()
    env = server_environment(database_url, redis_url, args)
    if not args.reuse_database:
        migrated = manage("migrate", "--noinput", env=env, timeout=600)
        if migrated.returncode != 0:
            sys.exit("bench: migrate failed:\n" + migrated.stderr)
    django_setup(env)
    from django.db import connections

    vus = max(args.concurrency)
    seeded = seed(vus)

    os.sched_setaffinity(0, plan.server)  # floors on the server's core
    floor = floors(seeded.password, seconds=1.0 if args.smoke else 3.0)
    connections.close_all()
    workers = server_workers(args, plan)
    server_env = {**env, "PGAPPNAME": SERVER_APP_NAME}
    server = server_start(server_env, args, plan, admin_url, "authserver.wsgi")
    # The floor apps' servers, started below for the floor scenarios asked for.
    servers: dict[str, Server] = {}
    rows: list[Row] = []
    runs: dict[tuple[str, int], list[Row]] = {}
    skipped: dict[str, str] = {}
    warnings: list[str] = []
    try:
        if http_status(server.port, "GET", "/readyz") != 200:
            sys.exit("bench: /readyz is not 200:\n" + server.gunicorn.output()[-3000:])
        oauth_served = seeded.oauth and http_status(server.port, "POST", "/oauth/token", b"") != 404
        if args.external:
            external(server, seeded, args)
            return 0
        if args.crosscheck:
            from bench.crosscheck import crosscheck

            return crosscheck(server, seeded, args)
        plans = []
        for name in args.scenarios:
            if name in OAUTH_SCENARIOS and not oauth_served:
                skipped[name] = NO_OAUTH
                continue
            if name in FLOOR_APPS:
                # Same gunicorn configuration, options and environment; no database.
                servers[name] = server_start(env, args, plan, None, FLOOR_APPS[name])
            plans.append((name, *scenario_for(name, seeded, vus)))
        connections.close_all()
        # Rounds visit every scenario and level in turn, so that a change in the neighbours'
        # load over the run spreads over all of them instead of landing on one.
        for round_number in range(1, args.rounds + 1):
            for (name, scenario, states), concurrency in visit_order(
                plans, args.concurrency, round_number
            ):
                states_renew(name, seeded, states)
                target = servers.get(name, server)
                row = measure(target, scenario, states, concurrency, args, warnings)
                runs.setdefault((name, concurrency), []).append(row)
                print(
                    f"  round {round_number}/{args.rounds} {name} c={concurrency}: "
                    f"{row.rps:.1f} req/s, {row.cpu_ms_per_request:.2f} ms CPU/req, "
                    f"{row.errors} errors, connections per worker "
                    f"{'/'.join(map(str, row.connections_per_worker)) or '?'}",
                    file=sys.stderr,
                    flush=True,
                )
        rows = [combine(measured) for measured in runs.values()]
        if not server.postgres_visible:
            warnings.append(
                "PostgreSQL backends are not visible in /proc (another host or namespace): "
                "their CPU is NOT included"
            )
        if any(r.generator_core_busy > 0.9 for r in rows):
            warnings.append(
                "the load generator's core was over 90% busy in some runs: those rates may be "
                "bounded by the generator, not the server (CPU ms/request still holds)"
            )
    finally:
        for each in (server, *servers.values()):
            each.close()
            each.gunicorn.__exit__(None, None, None)
        connections.close_all()
        cache_keys_delete(redis_url, env["AUTHSERVER_CACHE_KEY_PREFIX"])
    load_end = cpu.load_average()

    report = {
        "started_at": started.isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:])]),
        "machine": {
            "nproc": os.cpu_count(),
            "cpu_model": cpu.cpu_model(),
            "cores": plan.describe(),
            "load_average_start": load_start,
            "load_average_end": load_end,
        },
        "server": {
            "worker_class": args.worker_class,
            "workers": workers,
            "threads": args.threads if args.worker_class == "gthread" else 1,
            "config": str(GUNICORN_CONF.relative_to(ROOT)) if GUNICORN_CONF.exists() else None,
            "settings": "AUTHSERVER_MODE=production, AUTHSERVER_SSL_REDIRECT=false, "
            f"log level {args.log_level}, login throttle lifted, hash gate = threads",
            # The floor apps: each its own gunicorn with the same configuration file, options
            # and worker count; the app (preloaded in its master) is theirs, not authserver's.
            "floor_apps": {name: FLOOR_APPS[name] for name in servers},
        },
        "seconds": args.seconds,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "floors": floor,
        "rows": [asdict(r) for r in rows],
        "ratios": floor_ratios(rows, runs),
        "rounds_measured": [asdict(r) for measured in runs.values() for r in measured],
        "skipped": skipped,
        "warnings": warnings,
    }
    checks = targets(rows, floor, skipped, runs)
    report["targets"] = [asdict(t) for t in checks]

    print()
    print(
        f"authserver bench {report['started_at']}: gunicorn {args.worker_class} x{workers}"
        + (f" ({args.threads} threads)" if args.worker_class == "gthread" else "")
        + f", {args.rounds} x {args.seconds:g} s per row"
        f" (login {window_seconds('login', args):g} s; medians)"
        f" after {args.warmup:g} s warm-ups; {plan.describe()}"
    )
    print(f"settings: {report['server']['settings']}")
    print(
        "load average at start {:.2f} {:.2f} {:.2f}, at end {:.2f} {:.2f} {:.2f}".format(
            *load_start, *load_end
        )
    )
    print()
    print(table(rows, skipped, args.concurrency, runs))
    print()
    print(
        f"floors (CPU on the server core, {report['machine']['cpu_model']}): RS256 sign "
        f"({floor['rs256_key_bits']}-bit, parsed key) {floor['rs256_sign_ms']:.3f} ms"
        f"{signature_in_d(rows, floor)}, verify {floor['rs256_verify_ms']:.3f} ms; "
        f"password check {floor['password_hasher']} {floor['password_check_ms']:.1f} ms"
    )
    print(
        "CPU ms/req = utime+stime of the gunicorn tree and its PostgreSQL backends / requests; "
        "srv/gen core = CPU seconds per wall second of server / load generator"
    )
    print(
        "x D, x W = CPU ms/req over django_floor's (D: startproject's middleware, one JSON view) "
        "and wsgi_floor's (W: a bare WSGI callable), same gunicorn settings, same round, "
        "median over rounds"
    )
    print()
    for check in checks:
        print(check.line())
    for warning in warnings:
        print(f"warning: {warning}")

    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    if not args.no_chart:
        from bench.chart import draw

        drawn = draw(report, Path(args.chart))
        print(f"wrote {args.chart}" if drawn else "no chart: matplotlib is not installed")
    return 0


def cache_keys_delete(redis_url: str, prefix: str) -> None:
    """Remove this run's keys (its own prefix) from the shared Redis; never FLUSHDB."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(match=f"{prefix}:*", count=500):
            client.delete(key)
    finally:
        client.close()


def external(server: Server, seeded: Seed, args: argparse.Namespace) -> None:
    """Run each --external command (another load generator) against the server, pinned to the
    load generator's core, and report the server's CPU per request it answered, counted from
    gunicorn's access log. Placeholders: {url}, {cc_basic} and {rs_basic} (Authorization header
    values of the client_credentials client and the resource server), {access_token} (a user's
    access token to introspect), {refresh_token} (one unspent refresh token), {refresh_tokens}
    (comma-separated unspent refresh tokens, two per seeded user, fresh for every command:
    bench/wrk/refresh.lua chains them)."""
    from django.db import connections

    pair = sessions_start(seeded.usernames[:1])[0]
    connections.close_all()
    values = {
        "url": f"http://127.0.0.1:{server.port}",
        "cc_basic": load.basic_auth(*seeded.cc_client) if seeded.cc_client else "",
        "rs_basic": load.basic_auth(*seeded.rs_client) if seeded.rs_client else "",
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
    }
    for template in args.external:
        if "{refresh_tokens}" in template:
            values["refresh_tokens"] = refresh_chain_tokens(seeded)
        command = template.format(**values)
        ran = measure_command(server, command)
        print(f"$ {template}")
        print(ran.stdout.rstrip() or ran.stderr.rstrip())
        print(
            f"=> {ran.answered} requests answered in {ran.elapsed:.1f} s (gunicorn access log), "
            f"server CPU {ran.seconds:.2f} s = {ran.cpu_ms_per_request:.2f} ms/request, server "
            f"core {ran.seconds / ran.elapsed:.0%} busy\n"
        )


@dataclass
class CommandRun:
    stdout: str
    stderr: str
    answered: int  # requests in gunicorn's access log
    seconds: float  # server CPU seconds (gunicorn tree + its PostgreSQL backends)
    postgres_seconds: float  # the backends' share
    elapsed: float

    @property
    def cpu_ms_per_request(self) -> float:
        return self.seconds * 1000 / self.answered if self.answered else math.nan

    @property
    def postgres_ms_per_request(self) -> float:
        return self.postgres_seconds * 1000 / self.answered if self.answered else math.nan


def measure_command(server: Server, command: str) -> CommandRun:
    """Run another load generator's command line to its end, with the server CPU accounting of
    the table, the requests counted in gunicorn's access log."""
    pids = server.pin()
    answered = server.gunicorn.output().count('"message":"access"')
    before = cpu.snapshot(pids)
    started = time.monotonic()
    stdout, stderr = _run_pinning(command, server)
    elapsed = time.monotonic() - started
    # A generator that stops at its deadline (wrk) leaves requests in flight: the server still
    # finishes them (and logs them). Count their CPU in this run, not the next one's.
    server_idle_wait(server, pids)
    backends = server.pg_backends()
    after = cpu.snapshot(set(pids) | set(server.pids()))
    seconds, _ = after.seconds_since(before)
    postgres_seconds = postgres_share(after, before, backends)
    answered = server.gunicorn.output().count('"message":"access"') - answered
    return CommandRun(stdout, stderr, answered, seconds, postgres_seconds, elapsed)


def server_idle_wait(server: Server, pids: list[int], limit: float = 60.0) -> None:
    """Wait until the server's processes spend less than 2 % of a core over 0.1 s."""
    deadline = time.monotonic() + limit
    last = cpu.snapshot(pids)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = cpu.snapshot(set(pids) | set(server.pids()))
        busy, _ = now.seconds_since(last)
        if busy < 0.002:
            return
        last = now


def _run_pinning(command: str, server: Server) -> tuple[str, str]:
    """Run `command` to its end (at most 600 s), pinning new PostgreSQL backends meanwhile."""
    proc = subprocess.Popen(  # noqa: S602 - the operator's own command line
        command, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 600
    while True:
        try:
            return proc.communicate(timeout=load.TICK_SECONDS)
        except subprocess.TimeoutExpired:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            server.pin_backends()


def access_tokens(seeded: Seed, count: int) -> list[str]:
    """Access tokens of `count` new sessions of the seeded users (minted in this process: the
    server's CPU does not include them)."""
    from django.db import connections

    tokens = [pair.access_token for pair in sessions_start(seeded.usernames[:count])]
    connections.close_all()
    return tokens


def refresh_chain_tokens(seeded: Seed) -> str:
    """Unspent refresh tokens for bench/wrk/refresh.lua, comma-separated: two per seeded user,
    because the script needs more tokens than connections."""
    from django.db import connections

    pairs = sessions_start(seeded.usernames * 2)
    connections.close_all()
    return ",".join(pair.refresh_token for pair in pairs)


def states_renew(name: str, seeded: Seed, states: list) -> None:
    """Before each window: the introspection VUs get new access tokens. Tokens live
    AUTHSERVER_ACCESS_TOKEN_TTL (600 s), less than a six-round run, and an expired one is
    answered {"active": false} at a fraction of the cost (counted as an error, but cheap)."""
    if name == "introspection":
        states[:] = access_tokens(seeded, len(states))


def scenario_for(name: str, seeded: Seed, vus: int) -> tuple[load.Scenario, list]:
    if name in FLOOR_APPS:
        return load.floor(name), [None] * vus
    if name == "healthz":
        return load.healthz(), [None] * vus
    if name == "jwks":
        return load.jwks(), [None] * vus
    if name == "login":
        return load.login(seeded.password), list(seeded.usernames)
    if name == "refresh":
        return load.refresh(), [p.refresh_token for p in sessions_start(seeded.usernames)]
    if name == "client_credentials":
        return load.client_credentials(*seeded.cc_client), [None] * vus
    if name == "introspection":
        return load.introspection(*seeded.rs_client), access_tokens(seeded, vus)
    raise ValueError(name)


if __name__ == "__main__":
    sys.exit(main())
