"""The scale benchmark's storage and purge measurements (bench/scale.py), on the large database.

Bytes per live session: N sign-ins through the login's own services, and the bytes they added to
every table and index (pg_table_size of each table, pg_total_relation_size of each index,
partitions summed). Then refreshes of those sessions through the server, round robin, with the
footprint after every window: bytes per session as it refreshes, and pg_database_size growth
per million refreshes (tables and indexes; WAL lives outside the database's directory).

The purge: purge_expired_sessions in the large database's agent while the refresh load runs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import re
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench import cpu, load
from bench import run as bench_run
from bench.scale_agent import AgentError, ScaleError

SIGN_IN_AGENT = "scale-bench sign-in"
SIGN_IN_IP = "198.51.100.23"

# --- Footprint ---------------------------------------------------------------------------------

_RELATION_SIZES = """
SELECT coalesce(pg_partition_root(t.oid), t.oid)::regclass::text, 'table', pg_table_size(t.oid)
FROM pg_class t
WHERE t.relnamespace = current_schema()::regnamespace AND t.relkind = 'r'
UNION ALL
SELECT coalesce(pg_partition_root(t.oid), t.oid)::regclass::text,
       coalesce(pg_partition_root(x.indexrelid), x.indexrelid)::regclass::text,
       pg_total_relation_size(x.indexrelid)
FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid
WHERE t.relnamespace = current_schema()::regnamespace AND t.relkind = 'r'
"""


@dataclass
class Footprint:
    database: int  # pg_database_size: every relation of the database, not WAL
    relations: dict[str, int]  # "table" or "table/index" -> bytes (partitions summed)

    def minus(self, other: Footprint) -> dict[str, int]:
        keys = set(self.relations) | set(other.relations)
        delta = {k: self.relations.get(k, 0) - other.relations.get(k, 0) for k in keys}
        return {k: v for k, v in sorted(delta.items()) if v}


def footprint(url: str) -> Footprint:
    import psycopg

    relations: dict[str, int] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for table, part, size in conn.execute(_RELATION_SIZES):
            key = table if part == "table" else f"{table}/{part}"
            relations[key] = relations.get(key, 0) + size
        database = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return Footprint(database, relations)


# --- Refreshing many sessions -------------------------------------------------------------------


class RoundRobin:
    """A VU's share of many sessions: it refreshes each in turn, keeping each one's newest
    token (a failed one is dropped). A new object per request: bench/load.py rebuilds the
    request when the state object changes."""

    __slots__ = ("position", "tokens")

    def __init__(self, tokens: list[str], position: int = 0):
        self.tokens = tokens
        self.position = position % len(tokens) if tokens else 0

    def __str__(self) -> str:
        return self.tokens[self.position]

    def __getstate__(self):
        return (self.tokens, self.position)

    def __setstate__(self, state) -> None:
        self.tokens, self.position = state


def round_robin_refresh() -> load.Scenario:
    plain = load.refresh()

    def build(state: object) -> load.Request:
        return plain.build(str(state))

    def judge(status: int, body: bytes, state: object) -> load.Outcome:
        ok, token, _ = plain.judge(status, body, str(state))
        tokens, position = state.tokens, state.position
        if ok:
            tokens[position] = token
            return True, RoundRobin(tokens, position + 1), True
        del tokens[position]
        return False, RoundRobin(tokens, position), bool(tokens)

    return load.Scenario("refresh (many sessions)", build, judge, stateful=True)


def round_robin_states(tokens: list[str], vus: int) -> list[RoundRobin]:
    return [RoundRobin(tokens[i::vus]) for i in range(vus)]


def http_post_json(port: int, path: str, body: dict) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            "POST",
            path,
            json.dumps(body).encode(),
            {"Content-Type": "application/json", "User-Agent": SIGN_IN_AGENT},
        )
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


# --- What holds back pruning ----------------------------------------------------------------------

# A refresh's new row version stays on its page (a HOT update) only while the page has room, and
# the room comes back when PostgreSQL prunes the versions no snapshot can see any more. Which
# versions those are is decided against the oldest transaction id still running in the whole
# cluster, in any database (heap_page_prune_opt's quick test reads the snapshot's xmin): a
# transaction in another database that holds a transaction id open stops the pruning here, and a
# page then fills up and further refreshes move their rows to other pages, with new index entries
# (bench/README.md "Scale"). So the storage phase watches the server for such transactions.
HOLD_SECONDS = 1.0  # a transaction id held longer than this counts as holding pruning back

# Other databases: transactions holding a transaction id. This one: also a snapshot (an ANALYZE,
# autovacuum's included, or a long query holds one), but not a plain VACUUM, which pruning
# ignores.
_HOLDERS = """
SELECT coalesce(max(extract(epoch FROM now() - xact_start))
                    FILTER (WHERE datname IS DISTINCT FROM current_database()
                            AND backend_xid IS NOT NULL), 0),
       coalesce(max(extract(epoch FROM now() - xact_start))
                    FILTER (WHERE datname = current_database() AND NOT (
                        query LIKE 'autovacuum: VACUUM %' AND query NOT LIKE '%ANALYZE%')), 0)
FROM pg_stat_activity
WHERE (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL) AND pid <> pg_backend_pid()
"""


class HorizonWatch:
    """Samples, every `interval` seconds in a thread of its own, the oldest transaction that
    holds a transaction id in other databases of the server, and the oldest that holds a
    transaction id or a snapshot in the measured one."""

    def __init__(self, url: str, interval: float = 0.25):
        self.url, self.interval = url, interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="horizon-watch", daemon=True)

    def __enter__(self) -> HorizonWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        import psycopg

        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                while not self._stop.is_set():
                    other, own = conn.execute(_HOLDERS).fetchone()
                    self.samples.append((float(other), float(own)))
                    self._stop.wait(self.interval)
        except psycopg.Error:  # a watch that cannot connect reports no samples
            return

    def mark(self) -> int:
        return len(self.samples)

    def summary(self, since: int = 0) -> dict:
        samples = self.samples[since:]
        if not samples:
            return {"samples": 0}
        other = [s[0] for s in samples]
        own = [s[1] for s in samples]
        return {
            "samples": len(samples),
            "other_databases_held_share": sum(o > HOLD_SECONDS for o in other) / len(samples),
            "other_databases_longest_s": round(max(other), 1),
            "this_database_held_share": sum(o > HOLD_SECONDS for o in own) / len(samples),
            "this_database_longest_s": round(max(own), 1),
        }


def horizon_warning(summary: dict) -> str | None:
    share = summary.get("other_databases_held_share", 0.0)
    if not share:
        return None
    return (
        f"storage: transactions in other databases of the server held a transaction id for more "
        f"than {HOLD_SECONDS:g} s during {share:.0%} of the refresh windows (the longest "
        f"{summary['other_databases_longest_s']:g} s): PostgreSQL prunes no row version newer "
        "than the cluster's oldest running transaction, so refreshes moved rows to new pages. "
        "The growth figures are not a deployment's; run on a server nothing else uses."
    )


# --- Storage ----------------------------------------------------------------------------------


def login_rows_check(run) -> dict:
    """One real login through the server and one sign-in as `sign_ins` makes them: the rows
    each added for its user, per table."""
    import psycopg

    real, emulated = run.users("large", 2)
    url = run.urls["large"]
    query = (
        "SELECT (SELECT count(*) FROM tokens_session WHERE user_id = %(u)s), "
        "(SELECT count(*) FROM audit_authevent WHERE user_id = %(u)s), "
        "(SELECT count(*) FROM tokens_refreshtoken r JOIN tokens_session s "
        "ON s.id = r.session_id WHERE s.user_id = %(u)s)"
    )

    def rows(user: int) -> list[int]:
        with psycopg.connect(url, autocommit=True) as conn:
            return list(conn.execute(query, {"u": user}).fetchone())

    before = {u: rows(u) for u in (real, emulated)}
    status = http_post_json(
        run.servers["large"].port,
        "/api/v1/auth/login",
        {"username": f"user{real:08d}", "password": run.password},
    )
    run.agent_call("large", "sign_ins", [emulated], SIGN_IN_AGENT, SIGN_IN_IP)
    names = ("sessions", "audit events", "refresh tokens")
    deltas = {}
    for user in (real, emulated):
        after = rows(user)
        deltas[user] = {n: a - b for n, a, b in zip(names, after, before[user], strict=True)}
    return {
        "login_status": status,
        "login": deltas[real],
        "sign_in": deltas[emulated],
        "same": status == 200 and deltas[real] == deltas[emulated],
    }


def storage(run) -> tuple[dict, list[RoundRobin]]:
    """Bytes per live session, at its creation and as it refreshes; growth per refresh."""
    args = run.args
    url = run.urls["large"]
    server = run.servers["large"]
    check = login_rows_check(run)
    count = args.sign_ins
    user_ids = run.users("large", count)
    before = footprint(url)
    started = time.monotonic()
    tokens = run.agent_call("large", "sign_ins", user_ids, SIGN_IN_AGENT, SIGN_IN_IP)
    sign_in_seconds = time.monotonic() - started
    created = footprint(url)
    breakdown = {k: v / count for k, v in created.minus(before).items()}
    checkpoints = [checkpoint(0, 0, count, before, created)]
    states = round_robin_states(tokens, args.refresh_concurrency)
    time.sleep(1.5)  # backends report their statistics at most once a second
    updates_before = previous = session_updates(url)
    window = argparse.Namespace(**{**vars(args), "warmup": 0.0, "seconds": args.growth_window})
    done, cpu_rows = 0, []
    scenario = round_robin_refresh()
    with HorizonWatch(url) as watch:
        while done < args.refreshes:
            mark = watch.mark()
            row = bench_run.measure(server, scenario, states, len(states), window, run.warnings)
            succeeded = row.requests - row.errors
            if succeeded <= 0:
                run.warnings.append("storage: a refresh window had no successful refresh")
                break
            done += succeeded
            cpu_rows.append(row)
            point = checkpoint(done, row.errors, count, before, footprint(url))
            now = session_updates_wait(url, updates_before[0] + done)
            point["updates"], point["hot_updates"] = now[0] - previous[0], now[1] - previous[1]
            point["horizon"] = watch.summary(mark)
            previous = now
            checkpoints.append(point)
            print(
                f"  storage: {done} refreshes, {point['bytes_per_session']:.0f} "
                f"bytes per session, database {point['database']:,} bytes, "
                f"{point['updates'] - point['hot_updates']} non-HOT updates; other databases "
                f"held a transaction id > {HOLD_SECONDS:g} s "
                f"{point['horizon'].get('other_databases_held_share', 0):.0%} of the window",
                file=sys.stderr,
                flush=True,
            )
    horizon = watch.summary()
    warning = horizon_warning(horizon)
    if warning:
        run.warnings.append(warning)
    end = footprint(url)
    updates = [a - b for a, b in zip(previous, updates_before, strict=True)]
    vacuumed = vacuum(url)
    return {
        "sign_ins": count,
        "sign_in_seconds": round(sign_in_seconds, 1),
        "login_check": check,
        "bytes_per_session": sum(breakdown.values()),
        "breakdown": breakdown,
        "refreshes": done,
        "checkpoints": checkpoints,
        "growth": growth(checkpoints, count),
        "refresh_cpu_ms": statistics.median(r.cpu_ms_per_request for r in cpu_rows)
        if cpu_rows
        else None,
        "after_refreshes_breakdown": {k: v / count for k, v in end.minus(before).items()},
        "session_updates": {"all": updates[0], "hot": updates[1]},
        "horizon": horizon,
        "vacuum": vacuumed,
        "after_vacuum_bytes_per_session": (footprint(url).database - before.database) / count,
    }, states


def checkpoint(refreshes, errors, count, before: Footprint, now: Footprint) -> dict:
    return {
        "refreshes": refreshes,
        "refreshes_per_session": refreshes / count,
        "errors": errors,
        "database": now.database,
        "bytes_per_session": sum(now.minus(before).values()) / count,
    }


def session_updates(url: str) -> tuple[int, int]:
    """Row updates of tokens_session so far, and how many were HOT (no new index entries, the
    new version in the same page: what keeps a refresh from growing the table)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
            "WHERE relname = 'tokens_session'"
        ).fetchone()


def session_updates_wait(url: str, expected: int, limit: float = 11.0) -> tuple[int, int]:
    """session_updates() once `expected` updates are counted (each refresh updates its row
    once), or after `limit` seconds: an idle backend reports its counts up to 10 s late."""
    deadline = time.monotonic() + limit
    while True:
        counts = session_updates(url)
        if counts[0] >= expected or time.monotonic() >= deadline:
            return counts
        time.sleep(0.2)


def vacuum(url: str) -> list[str]:
    """Plain VACUUM (never FULL) of the tables with dead rows, as autovacuum would do."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT relname FROM pg_stat_user_tables WHERE n_dead_tup > 0 ORDER BY 1"
            )
        ]
        for table in tables:
            conn.execute(f'VACUUM "{table}"')
    return tables


# --- Purge ------------------------------------------------------------------------------------


def purge(run, states: list[RoundRobin] | None) -> dict:
    """purge_expired_sessions on the large database under refresh load."""
    args = run.args
    server = run.servers["large"]
    if not states:
        tokens = run.agent_call(
            "large",
            "sign_ins",
            run.users("large", args.refresh_concurrency * 20),
            SIGN_IN_AGENT,
            SIGN_IN_IP,
        )
        states = round_robin_states(tokens, args.refresh_concurrency)
    scenario = round_robin_refresh()
    baseline = refresh_window(run, server, scenario, states, args.purge_baseline)
    sessions_before = session_count(run)
    wal_before = wal_activity(server.admin)
    agent = run.agents["large"]
    backend = PurgeBackend(run)
    agent.start("purge", args.purge_max_rate)
    started = time.monotonic()
    during = []
    while not agent.done() and time.monotonic() - started < args.purge_timeout:
        during.append(refresh_window(run, server, scenario, states, 2.0, purge=backend))
    if agent.done():
        try:
            result = agent.result()
        except AgentError as exc:
            raise ScaleError(f"purge_expired_sessions failed: {exc}") from None
        seconds, output = result["seconds"], result["output"].strip()
    else:  # stopped: the batch in progress rolls back, the committed ones count
        seconds = time.monotonic() - started
        agent.close()
        backend_gone_wait(run, run.agent_app("large"))
        output = f"stopped after {seconds:.0f} s (--purge-timeout)"
    deleted = sessions_before - session_count(run)
    wal = wal_delta(wal_before, wal_activity(server.admin))
    if wal["checkpoints_requested"]:
        run.warnings.append(
            f"{wal['checkpoints_requested']} checkpoint(s) forced by WAL volume during the purge "
            f"({wal['wal_bytes'] / 1e9:.1f} GB of WAL, max_wal_size "
            f"{run.database['max_wal_size']}): pages written "
            "after each carry a full-page image, the refreshes' among them"
        )
    after = refresh_window(run, server, scenario, states, min(args.purge_baseline, 5.0))
    slept = re.search(r"slept ([0-9.]+) s between batches", output)
    working = seconds - (float(slept.group(1)) if slept else 0.0)
    return {
        "max_rate": args.purge_max_rate,
        "slept_seconds": float(slept.group(1)) if slept else 0.0,
        "sessions_per_working_second": deleted / working if working > 0 else 0.0,
        "output": output,
        "completed": not output.startswith("stopped"),
        "seconds": round(seconds, 2),
        "sessions_deleted": deleted,
        "sessions_per_second": deleted / seconds if seconds else 0.0,
        "concurrency": len(states),
        "refresh_before": latency_summary([baseline]),
        "refresh_during": latency_summary(during),
        "refresh_after": latency_summary([after]),
        "purge_backend": "pinned to the load generator's core (a spare database core)",
        "purge_backend_cpu_seconds": round(backend.cpu_seconds(), 2),
        "purge_backend_us_per_session": backend.cpu_seconds() * 1e6 / deleted if deleted else None,
        "page_cache_dirty_before_bytes": backend.dirty_before,
        "page_cache_dirty_peak_bytes": backend.dirty_peak,
        **wal,
    }


def wal_activity(admin) -> dict[str, int]:
    """The server's WAL position and checkpoint counters (server-wide: the purge's WAL with the
    refreshes'). A checkpoint requested because max_wal_size filled up means the pages written
    next carry full-page images again, the refreshes' commits among them (bench/README.md
    "Purge")."""
    lsn = admin.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0]
    view = (
        "SELECT num_requested, num_timed FROM pg_stat_checkpointer"
        if admin.info.server_version >= 170000
        else "SELECT checkpoints_req, checkpoints_timed FROM pg_stat_bgwriter"
    )
    requested, timed = admin.execute(view).fetchone()
    return {
        "wal_bytes": int(lsn),
        "checkpoints_requested": int(requested),
        "checkpoints_timed": int(timed),
    }


def wal_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """What happened between two wal_activity readings (the same keys, as differences)."""
    return {name: after[name] - before[name] for name in after}


# What the purge's effect on refreshes depends on besides CPU: how often WAL forces a
# checkpoint (max_wal_size, checkpoint_timeout), how big each page image is (wal_compression).
DATABASE_SETTINGS = (
    "server_version",
    "shared_buffers",
    "max_wal_size",
    "checkpoint_timeout",
    "wal_compression",
    "full_page_writes",
    "synchronous_commit",
    "autovacuum",
)


def database_settings(admin) -> dict[str, str]:
    """The settings of the server the run measured (SHOW, as the server reports them)."""
    return {name: admin.execute(f"SHOW {name}").fetchone()[0] for name in DATABASE_SETTINGS}


def session_count(run) -> int:
    """Sessions in the large database (only the purge deletes any during the run)."""
    import psycopg

    with psycopg.connect(run.urls["large"], autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM tokens_session").fetchone()[0]


def backend_gone_wait(run, app_name: str, limit: float = 60.0) -> None:
    admin = run.servers["large"].admin
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if not admin.execute(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = %s", [app_name]
        ).fetchone():
            return
        time.sleep(0.2)


class PurgeBackend:
    """The purge's PostgreSQL backend, found by the agent's application_name while the purge
    runs: pinned to the load generator's core, its CPU read every tick (the last reading
    before it exits counts)."""

    def __init__(self, run):
        self.run = run
        self.first: dict[int, int] = {}
        self.last: dict[int, int] = {}
        self.dirty_before = page_cache_dirty_bytes()
        self.dirty_peak = self.dirty_before

    def tick(self) -> None:
        rows = (
            self.run.servers["large"]
            .admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                [self.run.agent_app("large")],
            )
            .fetchall()
        )
        pids = [row[0] for row in rows]
        if self.run.plan.pinned:
            cpu.pin(pids, self.run.plan.client)
        for pid in pids:
            ticks = cpu.cpu_ticks(pid)
            if ticks is not None:
                self.first.setdefault(pid, ticks)
                self.last[pid] = ticks
        dirty = page_cache_dirty_bytes()
        if dirty is not None:
            self.dirty_peak = max(self.dirty_peak or 0, dirty)

    def cpu_seconds(self) -> float:
        return sum(self.last[pid] - self.first[pid] for pid in self.last) / cpu.CLOCK_TICKS


def page_cache_dirty_bytes(meminfo: str | None = None) -> int | None:
    """The machine's page-cache bytes waiting to be written (Linux /proc/meminfo "Dirty"), or
    None where that cannot be read. Pages a purge dirties that pile up there are written by the
    kernel all at once when they pass vm.dirty_background_ratio, and the refreshes' WAL flushes
    wait behind that (bench/README.md "Purge")."""
    if meminfo is None:
        try:
            meminfo = Path("/proc/meminfo").read_text()
        except OSError:
            return None
    match = re.search(r"^Dirty:\s+(\d+) kB$", meminfo, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def refresh_window(run, server, scenario, states, seconds, purge: PurgeBackend | None = None):
    def tick() -> None:
        server.pin_backends()
        if purge is not None:
            purge.tick()

    server.pin()
    result = load.run(
        server.port,
        scenario,
        states,
        seconds,
        tick=tick,
        processes=run.args.generator_processes,
    )
    states[:] = result.states
    return result


def latency_summary(results: list) -> dict:
    latencies = sorted(x for r in results for x in r.latencies)
    elapsed = sum(r.elapsed for r in results)
    return {
        "requests": len(latencies),
        "errors": sum(r.errors for r in results),
        "seconds": round(elapsed, 1),
        "rps": len(latencies) / elapsed if elapsed else 0.0,
        "p50_ms": load.percentile(latencies, 0.50) * 1000,
        "p99_ms": load.percentile(latencies, 0.99) * 1000,
    }


def growth(checkpoints: list[dict], sessions: int) -> dict:
    """Database bytes per million refreshes, from the first checkpoint at which every session
    had refreshed once (each session's first refresh moves its row once: a one-time cost per
    session, reported apart) to the last."""
    last = checkpoints[-1]
    base = next(
        (c for c in checkpoints[1:-1] if c["refreshes"] >= sessions),
        checkpoints[0],
    )
    refreshes = last["refreshes"] - base["refreshes"]
    first = checkpoints[0]
    return {
        "from_refreshes": base["refreshes"],
        "to_refreshes": last["refreshes"],
        "bytes": last["database"] - base["database"],
        "per_million": (last["database"] - base["database"]) / refreshes * 1e6
        if refreshes
        else math.nan,
        "first_refresh_bytes_per_session": (base["database"] - first["database"]) / sessions,
        "total_per_million": (last["database"] - first["database"]) / last["refreshes"] * 1e6
        if last["refreshes"]
        else math.nan,
    }
