"""Resilience under crashes, deploys, stalls and floods (issue 19.9), as production runs it:
nginx with TLS in front of two authserver gunicorn instances, on a PostgreSQL cluster and a
redis-server started by the test (tests/resilience/cluster.py), under steady load
(tests/resilience/load.py), with each fault in turn:

1. a rolling restart (SIGTERM, one instance at a time) in strict mode: no response lost;
2. SIGKILL of an instance mid-request, strict rotation (the default): sessions lost reported;
3. a rolling restart into AUTHSERVER_REFRESH_REUSE_GRACE_SECONDS=30;
4. SIGKILL again with the grace setting on: 0 sessions lost;
5. Redis restarted; 6. PostgreSQL paused (SIGSTOP) for 8 s; 7. PostgreSQL restarted;
8. three floods of 200 wrong-password sign-ins at once from 200 addresses (X-Forwarded-For via
   nginx), each after a quiet window measured the same way.

Asserted throughout: no response 500; every fault recovered from within 2 s of its end; during
the database pause every request answers within about 2 s (503 `temporarily_unavailable` with
Retry-After where the database is needed) while the JWKS and /healthz answer as before and
/readyz reports the stall; while the floods' sign-ins are in flight JWKS, refresh, token,
introspection and /healthz keep p99 at most 200 ms (issue 19.2; on a machine already overloaded
by other work, at most 200 ms above their p99 between the floods: see flood_bound).
Sessions lost are counted from the database (sessions revoked for reuse). The figures are
printed (`pytest -s` shows them; `make resilience` runs this file alone).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from tests.live import foreign_env, run_python
from tests.resilience.cluster import Cluster
from tests.resilience.load import Load, Sample
from tests.scale.services import postgres_bindir

pytestmark = [pytest.mark.slow, pytest.mark.timing]

PASSWORD = "resilience-Pa55word-only-for-this-test"
CHAINS = [f"chain-{i}" for i in range(6)]
VICTIMS = [f"victim-{i}" for i in range(10)]
RECOVERY_SECONDS = 2.0
# Issue 19.2: during a sign-in flood the rest keeps p99 at most 200 ms. Before the hashing bound
# the other endpoints waited 6-30 s; with the bound alone 0.2-0.6 s, the flood's refusals queued
# ahead of them in gunicorn; with nginx's cap on sign-ins in flight (deploy/nginx.conf) about
# 0.1-0.15 s on this shared 2-core machine at a load average of 7 per CPU.
FLOOD_P99_SECONDS = 0.200
# Three floods, one after another: their samples are pooled, so that the p99 of each endpoint is
# over 70-500 requests (one flood gives 25-50 of some: a p99 that is only their maximum).
FLOODS = 3
FLOOD_SIZE = 200
QUIET_SECONDS = 1.5  # the window measured before each flood, for comparison
STALL_ANSWER_SECONDS = 2.5  # "within about 2 s": the 2.0 s client deadline plus the proxy hop
OVERLOADED = 1.5  # load average per CPU (this test alone makes about 0.5-1 on 2 CPUs)
PROXY_FAIL_TIMEOUT = 5.5  # deploy/nginx.conf: max_fails=2 fail_timeout=5s
ENDPOINTS = ("refresh", "token", "introspect", "jwks", "healthz")


def p50(samples: list[Sample]) -> float:
    if not samples:
        return math.nan
    ordered = sorted(s.seconds for s in samples)
    return ordered[len(ordered) // 2]


def p99(samples: list[Sample]) -> float:
    if not samples:
        return math.nan
    ordered = sorted(s.seconds for s in samples)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


class Run:
    """The faults in order, with what each window saw."""

    def __init__(self, cluster: Cluster, load: Load) -> None:
        self.cluster = cluster
        self.load = load
        self.windows: list[tuple[str, float, float, float]] = []  # name, start, fault end, end
        self.lost: dict[str, int] = {}
        self.notes: list[str] = []

    def reuse_revocations(self) -> int:
        return int(
            self.cluster.sql(
                "SELECT count(*) FROM tokens_session WHERE revoke_reason = 'reuse_detected'"
            )
        )

    def window(self, name: str, fault, settle: float = 2.5) -> None:
        before = self.reuse_revocations()
        start = time.monotonic()
        fault_end = fault()
        time.sleep(settle)
        self.windows.append((name, start, fault_end, time.monotonic()))
        self.lost[name] = self.reuse_revocations() - before

    # --- faults -------------------------------------------------------------------------------

    def others_in_rotation(self, instance) -> None:
        """Wait until nginx sends to every other instance again. One instance down at a time:
        nginx takes a restarted instance back at most fail_timeout after it is up again (its
        last refused attempt may be just before), and until then the other one is all it has.
        (On a busy machine a restart outlasts fail_timeout and the settle time, so without this
        wait stopping the other instance left nginx none: "no live upstreams", 502s for 2-3 s;
        the rolling restart right after a SIGKILL window did exactly that.)"""
        for other in self.cluster.instances:
            if other is not instance:
                time.sleep(max(0.0, other.started_at + PROXY_FAIL_TIMEOUT - time.monotonic()))

    def rolling_restart(self, **overrides: str) -> float:
        """One instance at a time, as a deploy does: the next one only once nginx sends to the
        restarted one again (its fail_timeout, 5 s, has passed)."""
        for instance in self.cluster.instances:
            self.others_in_rotation(instance)
            instance.terminate()
            instance.start(**overrides)
        return time.monotonic()

    def kill(self, index: int) -> float:
        instance = self.cluster.instances[index]
        self.others_in_rotation(instance)
        time.sleep(0.3)
        instance.kill()
        killed = time.monotonic()
        time.sleep(0.5)
        instance.start()
        return killed

    def redis_restart(self) -> float:
        self.cluster.redis.stop()
        time.sleep(1.0)
        self.cluster.redis.start()
        return time.monotonic()

    def postgres_pause(self) -> float:
        pids = self.cluster.postgres.pause()
        paused = time.monotonic()
        readyz: list[tuple[float, int]] = []

        def probe() -> None:
            url = self.cluster.instances[0].url + "/readyz"
            while time.monotonic() - paused < 7.0:
                started = time.monotonic()
                try:
                    status = requests.get(url, timeout=10).status_code
                except requests.RequestException:
                    status = -1
                readyz.append((time.monotonic() - started, status))
                time.sleep(0.5)

        prober = threading.Thread(target=probe)
        prober.start()
        time.sleep(8.0)
        self.cluster.postgres.resume(pids)
        resumed = time.monotonic()
        prober.join()
        self.readyz_during_pause = readyz
        return resumed

    def postgres_restart(self) -> float:
        self.cluster.postgres.restart()
        return time.monotonic()

    def flood(self) -> float:
        self.flood_overload = os.getloadavg()[0] / (os.cpu_count() or 1)
        self.flood_statuses: dict[int, int] = {}
        self.flood_intervals: list[tuple[float, float]] = []
        self.flood_cpu: list[float] = []  # the flood client's own CPU after sending (flood.py)
        self.quiet_intervals: list[tuple[float, float]] = []
        for _ in range(FLOODS):
            quiet_start = time.monotonic()
            time.sleep(QUIET_SECONDS)
            self.quiet_intervals.append((quiet_start, time.monotonic()))
            result = run_python(
                str(Path(__file__).with_name("flood.py")),
                self.cluster.base,
                self.cluster.ca,
                str(FLOOD_SIZE),
                ",".join(VICTIMS),
                env=foreign_env(),
                timeout=120,
            )
            assert result.returncode == 0, result.stderr[-2000:]
            outcome = json.loads(result.stdout)
            for status, count in outcome["statuses"].items():
                self.flood_statuses[int(status)] = self.flood_statuses.get(int(status), 0) + count
            # The sign-ins themselves: from the moment all 200 were sent (their TLS connections
            # were opened before) until the last answer.
            self.flood_intervals.append((outcome["sent"], outcome["done"]))
            self.flood_cpu.append(outcome["cpu"])
            time.sleep(0.5)
        return time.monotonic()

    def during_floods(self, endpoint: str) -> list[Sample]:
        """The requests to `endpoint` started while a flood's sign-ins were in flight."""
        return [
            s
            for start, end in self.flood_intervals
            for s in self.load.between(start, end, endpoint)
        ]

    def before_floods(self, endpoint: str) -> list[Sample]:
        """The requests to `endpoint` started in the quiet windows just before each flood."""
        return [
            s
            for start, end in self.quiet_intervals
            for s in self.load.between(start, end, endpoint)
        ]


def flood_overloaded(run: Run) -> bool:
    return run.flood_overload > OVERLOADED


def flood_bound(run: Run, endpoint: str) -> float:
    """The p99 asserted for `endpoint` while the floods are in flight: issue 19.2's 200 ms. On a
    shared machine already running far more than its CPUs (load average per CPU above
    OVERLOADED before the floods) every request is slowed alike, flood or not, which no server
    setting can undo: there the floods may add at most the same 200 ms to the endpoint's own
    p99 in the quiet windows between them (which still catches a flood that starves the rest:
    seconds before the hashing bound, 0.3-0.6 s with the refusals queued in gunicorn)."""
    if not flood_overloaded(run):
        return FLOOD_P99_SECONDS
    return FLOOD_P99_SECONDS + p99(run.before_floods(endpoint))


def recovery(load: Load, fault_end: float, endpoint: str) -> float:
    """Seconds from the fault's end to the first success of `endpoint` completed after it."""
    done = [
        s.ended
        for s in load.between(fault_end - 30, fault_end + 60, endpoint)
        if s.status == 200 and s.ended >= fault_end
    ]
    return (min(done) - fault_end) if done else math.inf


@pytest.fixture
def cluster(tmp_path):
    if postgres_bindir() is None or shutil.which("redis-server") is None:
        pytest.skip("PostgreSQL server binaries and redis-server are needed")
    if shutil.which("nginx") is None or shutil.which("openssl") is None:
        pytest.skip("nginx and openssl are needed")
    running = Cluster(tmp_path, users=CHAINS + VICTIMS, password=PASSWORD)
    try:
        yield running
    finally:
        running.close()


def test_resilience_under_crashes_deploys_stalls_and_floods(cluster):
    load = Load(cluster.base, cluster.ca, users=CHAINS, password=PASSWORD, client=cluster.client)
    run = Run(cluster, load)
    started = time.monotonic()
    load.start()
    try:
        time.sleep(3.0)
        run.windows.append(("baseline", started, started, time.monotonic()))
        run.window("rolling restart (strict)", run.rolling_restart)
        run.window("SIGKILL a (strict)", lambda: run.kill(0))
        run.window("SIGKILL b (strict)", lambda: run.kill(1))
        run.window(
            "rolling restart into grace",
            lambda: run.rolling_restart(AUTHSERVER_REFRESH_REUSE_GRACE_SECONDS="30"),
        )
        run.window("SIGKILL a (grace)", lambda: run.kill(0))
        run.window("SIGKILL b (grace)", lambda: run.kill(1))
        run.window("Redis restart", run.redis_restart)
        run.window("PostgreSQL paused 8 s", run.postgres_pause)
        run.window("PostgreSQL restart", run.postgres_restart)
        run.window(f"sign-in floods ({FLOODS} x {FLOOD_SIZE})", run.flood, settle=1.0)
    finally:
        load.stop()
    report(run, load, time.monotonic() - started)
    check(run, load)


def report(run: Run, load: Load, seconds: float) -> None:
    lines = [f"resilience: {seconds:.0f} s, {len(load.samples)} requests"]
    lines.append(
        f"{'window':<30} {'lost':>4}  " + "  ".join(f"{e:>10}" for e in ENDPOINTS) + "  (p99 ms)"
    )
    for name, start, _fault_end, end in run.windows:
        cells = []
        for endpoint in ENDPOINTS:
            value = p99(load.between(start, end, endpoint))
            cells.append(f"{value * 1000:>10.0f}" if not math.isnan(value) else f"{'-':>10}")
        lost = run.lost.get(name, 0)
        lines.append(f"{name:<30} {lost:>4}  " + "  ".join(cells))
    for name, start, _fault_end, end in run.windows:
        counts = {}
        for sample in load.between(start, end):
            key = f"{sample.endpoint}:{sample.status}"
            counts[key] = counts.get(key, 0) + 1
        lines.append(f"  {name}: {dict(sorted(counts.items()))}")
    statuses: dict[int, int] = {}
    for sample in load.samples:
        statuses[sample.status] = statuses.get(sample.status, 0) + 1
    lines.append(f"statuses: {dict(sorted(statuses.items()))}")
    kills = {
        mode: [v for k, v in run.lost.items() if "SIGKILL" in k and mode in k]
        for mode in ("strict", "grace")
    }
    for mode, values in kills.items():
        lines.append(
            f"sessions lost per kill ({mode}): {values} (mean {sum(values) / len(values):.1f})"
        )
    lines.append(f"chains refused (client side): {len(load.lost)}")
    lines.append(f"first transport error: {load.errors[:1]}")
    lines.append(f"flood statuses: {getattr(run, 'flood_statuses', {})}")
    if hasattr(run, "flood_intervals"):
        met = all(p99(run.during_floods(e)) <= FLOOD_P99_SECONDS for e in ENDPOINTS)
        lines.append(
            f"floods: p99 <= {FLOOD_P99_SECONDS * 1000:.0f} ms "
            + ("met" if met else "NOT MET")
            + (
                ", asserted"
                if not flood_overloaded(run)
                else ", asserted only as quiet p99 + 200 ms: the machine was overloaded"
            )
            + f" (load average per CPU {run.flood_overload:.1f} before the floods); in flight "
            + ", ".join(f"{end - start:.2f} s" for start, end in run.flood_intervals)
            + "; the flood client's CPU after sending "
            + ", ".join(f"{cpu:.3f} s" for cpu in run.flood_cpu)
        )
        for label, pick in (
            ("quiet between", run.before_floods),
            ("during floods", run.during_floods),
        ):
            lines.append(
                f"  {label} (p50/p99 ms): "
                + ", ".join(
                    f"{e} {p50(pick(e)) * 1000:.0f}/{p99(pick(e)) * 1000:.0f} (n={len(pick(e))})"
                    for e in ENDPOINTS
                )
            )
    readyz = getattr(run, "readyz_during_pause", [])
    lines.append(
        "readyz during the pause (s, status): " + ", ".join(f"{t:.2f}/{s}" for t, s in readyz)
    )
    for name, _start, fault_end, _end in run.windows[1:]:
        rec = {e: recovery(load, fault_end, e) for e in ("refresh", "token", "jwks", "healthz")}
        lines.append(
            f"recovery after {name}: " + ", ".join(f"{e} {v:.2f} s" for e, v in rec.items())
        )
    print("\n" + "\n".join(lines), flush=True)
    for instance in run.cluster.instances:
        text = instance.server.output() if instance.server else ""
        errors = [line for line in text.splitlines() if '"ERROR"' in line or "Traceback" in line]
        print(f"instance {instance.name}: {len(errors)} error lines; last: {errors[-3:]}")


def check(run: Run, load: Load) -> None:
    failures = []
    five_hundreds = [s for s in load.samples if s.status == 500]
    if five_hundreds:
        failures.append(f"{len(five_hundreds)} responses 500")
    flood = getattr(run, "flood_statuses", {})
    if set(flood) - {401, 429, 503}:
        failures.append(f"the flood's sign-ins answered {flood} (0: a 503 without Retry-After)")
    # No response lost to a rolling restart (SIGTERM: in-flight requests finish), even strict.
    for name in ("rolling restart (strict)", "rolling restart into grace"):
        if run.lost[name]:
            failures.append(f"{run.lost[name]} sessions lost in the {name}")
    # ... and no request of the steady load gets an error instead of its answer (a 502 from
    # nginx with no instance left, a reset connection).
    restarts = {name: (start, end) for name, start, _fault_end, end in run.windows}
    for name in ("rolling restart (strict)", "rolling restart into grace"):
        start, end = restarts[name]
        failed = Counter(
            f"{s.endpoint}:{s.status}"
            for s in load.between(start, end)
            if s.status >= 500 or s.status < 0
        )
        if failed:
            failures.append(f"responses lost in the {name}: {dict(failed)}")
    for name in ("SIGKILL a (grace)", "SIGKILL b (grace)"):
        if run.lost[name]:
            failures.append(f"{run.lost[name]} sessions lost in {name} (grace on)")
    windows = {name: (start, fault_end, end) for name, start, fault_end, end in run.windows}
    for name, (_start, fault_end, _end) in list(windows.items())[1:]:
        for endpoint in ("refresh", "token", "jwks", "healthz"):
            took = recovery(load, fault_end, endpoint)
            if took > RECOVERY_SECONDS:
                failures.append(f"{endpoint} recovered {took:.2f} s after {name}")
    # The database pause: everything answers within about 2 s; JWKS and /healthz do not wait.
    start, fault_end, _end = windows["PostgreSQL paused 8 s"]
    for sample in load.between(start, fault_end):
        if sample.seconds > STALL_ANSWER_SECONDS:
            failures.append(f"{sample.endpoint} took {sample.seconds:.2f} s during the pause")
            break
    # Issue 19.3: what needs the database answers 503 temporarily_unavailable (with
    # Retry-After), and nothing else, while it is stalled.
    refused = [s for s in load.between(start, fault_end) if s.status != 200]
    wrong = [s for s in refused if (s.status, s.error) != (503, "temporarily_unavailable")]
    if wrong:
        failures.append(
            "during the pause: "
            + ", ".join(f"{s.endpoint} {s.status} {s.error!r}" for s in wrong[:5])
        )
    if not any(s.endpoint == "refresh" and s.status == 503 for s in refused):
        failures.append("no refresh answered 503 during the pause: was the database stalled?")
    # JWKS and /healthz do not wait on the database: most answer as fast as ever. (A few may
    # queue behind the requests that were waiting on it when it stopped, for at most one
    # deadline, until the breaker opens: authserver/db/base.py.)
    for endpoint in ("jwks", "healthz"):
        value = p50(load.between(start, fault_end, endpoint))
        if value > FLOOD_P99_SECONDS:
            failures.append(f"{endpoint} p50 {value * 1000:.0f} ms during the database pause")
    readyz = getattr(run, "readyz_during_pause", [])
    if not any(status == 503 for _t, status in readyz):
        failures.append(f"/readyz never reported the pause: {readyz}")
    if any(t > STALL_ANSWER_SECONDS for t, _s in readyz):
        failures.append(f"/readyz waited on the pause: {readyz}")
    # The floods: while their sign-ins are in flight, the rest keeps p99 at most 200 ms (on an
    # overloaded machine, at most 200 ms above its p99 between them: see flood_bound).
    for endpoint in ENDPOINTS:
        value, bound = p99(run.during_floods(endpoint)), flood_bound(run, endpoint)
        if not value <= bound:
            failures.append(
                f"{endpoint} p99 {value * 1000:.0f} ms while the sign-in floods were in flight, "
                f"above {bound * 1000:.0f} ms (p99 {p99(run.before_floods(endpoint)) * 1000:.0f}"
                f" ms just before them; load average per CPU {run.flood_overload:.1f})"
            )
    assert not failures, "\n".join(failures)
