#!/usr/bin/env python3
"""What each layer of the request path costs: every middleware, the view, Django's handler.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/15 \
        .venv/bin/python bench/layers.py [--requests 2000] [--batches 7] [--paths healthz,jwks]

`make bench` measures whole requests under gunicorn; this splits the Django part of one request
into its layers, which a sampling profiler of the server smears over shared frames. It drives
authserver's WSGI application in this process, with the settings bench/run.py's server has
(production mode, a scratch database, the same seed), pinned to the server's core, and wraps
every middleware of MIDDLEWARE and every URL's view in a timer. A layer's time is exclusive:
the time inside it minus the time inside the layers it called, so the rows add up to the
request. `Django handler` is the rest: building the WSGIRequest, the request_started /
request_finished signals, resolving the URL, converting the response for WSGI. The view's row
includes what it waits for (PostgreSQL, Redis); `view CPU` is this thread's CPU in the view.
The plain Django floor (bench/floor_django, Django's default middleware) runs the same way in a
child process, as the last column.

Not measured here: gunicorn (parsing, the access log line, writing the response), which is the
same code for authserver and the floors (bench/run.py measures the whole). Each figure is the
median over the --batches x --requests requests, in microseconds per request; the timers
themselves cost about 0.1 us per layer.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from functools import wraps
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import cpu, load  # noqa: E402

PATHS = ("healthz", "jwks", "client_credentials", "introspection", "refresh", "userinfo")
HANDLER, VIEW, VIEW_CPU = "Django handler", "view", "view CPU"
RESOLVE, RENDER = "URL resolve", "response render"
FLOOR_COLUMN = "django_floor"


class Clock:
    """Exclusive time per layer: each timed call adds its time minus its timed callees'."""

    def __init__(self) -> None:
        self.exclusive: dict[str, float] = defaultdict(float)
        self.view_cpu = 0.0
        self._stack: list[list] = []  # [name, started, time in timed callees]

    def enter(self, name: str) -> None:
        self._stack.append([name, time.perf_counter(), 0.0])

    def leave(self) -> None:
        name, started, inner = self._stack.pop()
        elapsed = time.perf_counter() - started
        self.exclusive[name] += elapsed - inner
        if self._stack:
            self._stack[-1][2] += elapsed

    def timed(self, name: str, function: Callable) -> Callable:
        @wraps(function)
        def call(*args, **kwargs):
            self.enter(name)
            try:
                return function(*args, **kwargs)
            finally:
                self.leave()

        return call

    def reset(self) -> dict[str, float]:
        """The layers' times since the last reset, and start again."""
        taken, self.exclusive, self.view_cpu = (
            {**self.exclusive, VIEW_CPU: self.view_cpu},
            defaultdict(float),
            0.0,
        )
        return taken


class _TimedMiddleware:
    """One middleware instance behind the clock; Django's hooks (process_view, ...) too."""

    HOOKS = ("process_view", "process_exception", "process_template_response")

    def __init__(self, clock: Clock, name: str, instance) -> None:
        self._call = clock.timed(name, instance)
        for hook in self.HOOKS:
            if hasattr(instance, hook):
                setattr(self, hook, clock.timed(name, getattr(instance, hook)))

    def __call__(self, request):
        return self._call(request)


def timed_application(clock: Clock):
    """authserver's (or the floor's) WSGI application with every middleware and view timed."""
    from django.conf import settings
    from django.core.handlers import base
    from django.core.wsgi import get_wsgi_application
    from django.template.response import SimpleTemplateResponse
    from django.urls import URLPattern, URLResolver, get_resolver

    original = base.import_string

    def import_timed(path: str):
        factory = original(path)
        if path not in settings.MIDDLEWARE:
            return factory
        name = path.rsplit(".", 1)[-1]

        def make(get_response):
            return _TimedMiddleware(clock, name, factory(get_response))

        make.sync_capable = getattr(factory, "sync_capable", True)
        make.async_capable = getattr(factory, "async_capable", False)
        return make

    base.import_string = import_timed
    try:
        application = get_wsgi_application()
    finally:
        base.import_string = original

    def view_timed(view: Callable) -> Callable:
        timed = clock.timed(VIEW, view)

        @wraps(view)
        def call(*args, **kwargs):
            started = time.thread_time()
            try:
                return timed(*args, **kwargs)
            finally:
                clock.view_cpu += time.thread_time() - started

        return call

    def patterns(resolver: URLResolver):
        for pattern in resolver.url_patterns:
            if isinstance(pattern, URLResolver):
                yield from patterns(pattern)
            elif isinstance(pattern, URLPattern):
                yield pattern

    for pattern in patterns(get_resolver()):
        pattern.callback = view_timed(pattern.callback)
    # Two steps of the request that run inside whichever layer calls them: finding the view
    # (Django's handler, or the middleware that answers a path itself) and rendering a
    # template response (DRF's JSON), each a row of its own.
    URLResolver.resolve = clock.timed(RESOLVE, URLResolver.resolve)
    SimpleTemplateResponse.render = clock.timed(RENDER, SimpleTemplateResponse.render)
    return application


def wsgi_environ(request: load.Request) -> dict:
    """What gunicorn hands the application for this request from the load generator."""
    method, path, body, headers = request
    environ = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "RAW_URI": path,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "HTTP_HOST": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body or b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[key] = value
        else:
            environ[f"HTTP_{key}"] = value
    if body is not None:
        environ["CONTENT_LENGTH"] = str(len(body))
    return environ


def serve(application, clock: Clock, scenario: load.Scenario, state: object) -> object:
    """One request through `application`, timed as the `HANDLER` layer; the next state."""
    status_line: list[str] = []

    def start_response(status: str, headers: list, exc_info=None) -> None:
        status_line.append(status)

    environ = wsgi_environ(scenario.build(state))
    clock.enter(HANDLER)
    try:
        response = application(environ, start_response)
        body = b"".join(response)
        response.close()
    finally:
        clock.leave()
    status = int(status_line[0].split()[0])
    ok, state, _ = scenario.judge(status, body, state)
    if not ok:
        raise SystemExit(f"layers: {scenario.name} answered {status}: {body[:300]!r}")
    return state


def measure(application, clock: Clock, scenario, state, requests: int, batches: int) -> dict:
    """µs per request of each layer: the median over every request of the batches.

    Per request, not per batch: on a shared machine the process is preempted now and then, and
    the layer running at that moment takes the whole gap. A median per layer leaves those
    requests out; the rows then add up to the total only roughly."""
    for _ in range(max(200, requests // 10)):
        state = serve(application, clock, scenario, state)
    clock.reset()
    samples: list[dict[str, float]] = []
    for _ in range(batches * requests):
        state = serve(application, clock, scenario, state)
        taken = clock.reset()
        taken["total"] = sum(v for k, v in taken.items() if k != VIEW_CPU)
        samples.append(taken)
    names = {name for sample in samples for name in sample}
    return {name: statistics.median(s.get(name, 0.0) for s in samples) * 1e6 for name in names}


def authserver_columns(args: argparse.Namespace, database_url: str, redis_url: str) -> dict:
    from bench import run

    env = run.server_environment(database_url, redis_url, run.parse_args([]))
    migrated = run_manage_migrate(env)
    if migrated:
        sys.exit("layers: migrate failed:\n" + migrated)
    run.django_setup(env)
    seeded = run.seed(1)
    clock = Clock()
    application = timed_application(clock)
    columns: dict[str, dict] = {}
    for name in args.paths:
        scenario, state = scenario_for(name, seeded)
        if scenario is None:
            print(f"layers: {name}: {state}", file=sys.stderr)
            continue
        columns[name] = measure(application, clock, scenario, state, args.requests, args.batches)
        print(f"  {name}: {columns[name]['total']:.1f} us/request", file=sys.stderr, flush=True)
    run.cache_keys_delete(redis_url, env["AUTHSERVER_CACHE_KEY_PREFIX"])
    return columns


def run_manage_migrate(env: dict) -> str | None:
    from tests.live import manage

    migrated = manage("migrate", "--noinput", env=env, timeout=600)
    return None if migrated.returncode == 0 else migrated.stderr


def scenario_for(name: str, seeded) -> tuple[load.Scenario | None, object]:
    from bench import run

    if name in ("client_credentials", "introspection", "userinfo") and not seeded.oauth:
        return None, run.NO_OAUTH
    if name == "healthz":
        return load.healthz(), None
    if name == "jwks":
        return load.jwks(), None
    if name == "client_credentials":
        return load.client_credentials(*seeded.cc_client), None
    if name == "introspection":
        return load.introspection(*seeded.rs_client), run.access_tokens(seeded, 1)[0]
    if name == "refresh":
        return load.refresh(), run.sessions_start(seeded.usernames[:1])[0].refresh_token
    if name == "userinfo":
        return load.userinfo(), userinfo_token(seeded)
    raise ValueError(name)


def userinfo_token(seeded) -> str:
    """An access token of a session the OAuth client holds, with the openid scope."""
    from accounts.models import User
    from authserver.conf import get_config
    from sessions.services import session_start

    pair = session_start(
        user=User.objects.get(username=seeded.usernames[0]),
        client_id=seeded.cc_client[0],
        audience=[get_config().default_audience],
        scope="openid profile email",
        user_agent="bench",
    )
    return pair.access_token


def floor_column(args: argparse.Namespace) -> dict:
    """The plain Django floor's /healthz, in a child process (its own settings module)."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.floor_django.settings"}
    command = [sys.executable, __file__, "--floor", "--requests", str(args.requests)]
    command += ["--batches", str(args.batches)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit("layers: the floor run failed:\n" + done.stderr[-3000:])
    return json.loads(done.stdout)


def floor_main(args: argparse.Namespace) -> int:
    import django

    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.floor_django.settings"
    django.setup()
    clock = Clock()
    application = timed_application(clock)
    column = measure(application, clock, load.healthz(), None, args.requests, args.batches)
    print(json.dumps(column))
    return 0


def table(columns: dict[str, dict]) -> str:
    from django.conf import settings

    names = list(columns)
    rows = [HANDLER] + [path.rsplit(".", 1)[-1] for path in settings.MIDDLEWARE]
    floor = columns.get(FLOOR_COLUMN, {})
    last = (RESOLVE, VIEW, RENDER, VIEW_CPU, "total")
    rows += [name for name in floor if name not in rows and name not in last]
    rows += last
    width = max(len(r) for r in rows) + 2
    lines = [f"{'us/request':<{width}}" + "".join(f"{n:>20}" for n in names)]
    lines.append("-" * len(lines[0]))
    for row in rows:
        if row == "total":
            lines.append("-" * len(lines[0]))
        cells = []
        for name in names:
            value = columns[name].get(row)
            cells.append(f"{'':>20}" if value is None else f"{value:>20.1f}")
        lines.append(f"{row:<{width}}" + "".join(cells))
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per batch")
    parser.add_argument("--batches", type=int, default=7, help="batches per path (medians)")
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--json", metavar="FILE", help="also write the columns as JSON")
    parser.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = set(args.paths) - set(PATHS)
    if unknown or not 1 <= args.batches <= 50 or not 10 <= args.requests <= 100_000:
        parser.error(f"unknown path(s) {sorted(unknown)}, or --batches/--requests out of range")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = cpu.core_plan()
    os.sched_setaffinity(0, plan.server)
    if args.floor:
        return floor_main(args)
    from bench.scratch import database_url_required, scratch_database

    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    base_url = database_url_required()
    redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15"
    floor = floor_column(args)
    with scratch_database(base_url, prefix="authserver_layers") as url:
        columns = authserver_columns(args, url, redis_url)
        from django.db import connections

        connections.close_all()
    columns[FLOOR_COLUMN] = floor
    print(table(columns))
    print(
        f"\nmedians of {args.batches} batches x {args.requests} requests, in one process pinned "
        f"to CPU {sorted(plan.server)}; load average {cpu.load_average()}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(columns, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
