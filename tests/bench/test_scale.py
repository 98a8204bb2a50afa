"""bench/scale.py (the data-scale benchmark, issue 15.3): its arguments, the databases it may
touch (only the ones it created), the COPY seeder on a real database, the one-line stops, and
the target arithmetic. The benchmark itself is never a test: nothing here depends on timing."""

from __future__ import annotations

import os
import random
import time
import uuid
from dataclasses import asdict
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from bench import run as bench_run
from bench import scale, scale_storage, seed
from bench.scale_agent import Agent, AgentError
from bench.scale_report import targets
from tests.live import base_env, manage, run_python

ADMIN_URL = os.environ["DATABASE_URL"]


def _exists(name: str) -> bool:
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        return bool(
            admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        )


def _drop(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def database_name():
    name = f"authserver_scale_test_{uuid.uuid4().hex[:12]}"
    yield name
    _drop(name)


# --- Arguments ---------------------------------------------------------------------------------


def test_default_sizes_are_the_issues_and_the_small_database_is_one_percent():
    sizes = scale.sizes_of(scale.parse_args([]))
    large, small = sizes["large"], sizes["small"]
    assert (large.users, large.live_sessions, large.ended_sessions, large.audit_events) == (
        1_000_000,
        1_000_000,
        10_000_000,
        50_000_000,
    )
    assert small.users == 10_000 and small.audit_events == 500_000
    quick = scale.sizes_of(scale.parse_args(["--scale-factor", "0.01"]))
    assert quick["large"].users == 10_000 and quick["large"].ended_sessions == 100_000
    assert quick["small"].users == 100


def test_arguments_are_bounded(capsys):
    for bad in (
        ["--scale-factor", "0"],
        ["--scale-factor", "11"],
        ["--small-fraction", "2"],
        ["--scenarios", "refresh,healthz"],
        ["--phases", "costs,vacuum"],
        ["--rounds", "0"],
        ["--sign-ins", "0"],
    ):
        with pytest.raises(SystemExit) as exited:
            scale.parse_args(bad)
        assert exited.value.code == 2, bad
    args = scale.parse_args(["--scenarios", "login,userinfo", "--concurrency", "8,1,8"])
    assert args.scenarios == ["login", "userinfo"] and args.concurrency == [1, 8]
    assert scale.parse_args(["--smoke"]).rounds == 1


def test_the_arguments_carry_what_the_shared_bench_functions_read():
    """scale.py starts its servers with bench/run.py's functions; a setting one of them reads
    and scale.py does not define stopped the full run at its first step (args.threads)."""
    args = scale.parse_args([])
    env = bench_run.server_environment("postgres://x@127.0.0.1/db", "redis://127.0.0.1/1", args)
    assert env["AUTHSERVER_THREADS"] == str(scale.SERVER_THREADS)
    assert env["AUTHSERVER_PASSWORD_HASH_CONCURRENCY"] == str(scale.SERVER_THREADS)
    arguments = bench_run.gunicorn_args(args)
    assert arguments[arguments.index("--threads") + 1] == str(scale.SERVER_THREADS)
    assert bench_run.server_workers(args, bench_run.cpu.core_plan()) >= 1


def test_the_agent_has_the_database_limits_of_a_management_command():
    """The purge runs in the agent as `manage.py purge_expired_sessions` runs: without the
    serving processes' statement timeout (it cancelled a purge batch on a slow disk)."""
    env = scale.agent_environment({"DATABASE_URL": "postgres://x@127.0.0.1/db"}, "agent")
    assert env["_AUTHSERVER_MANAGEMENT_COMMAND"] == "1" and env["PGAPPNAME"] == "agent"
    code = "import django; django.setup(); from django.conf import settings as s; "
    code += "print(s.DATABASES['default']['OPTIONS']['options'])"
    out = run_python("-c", code, env=base_env(**env))
    assert "statement_timeout=0" in out.stdout, out.stdout + out.stderr


def test_make_bench_scale_dispatches_to_the_scale_benchmark(capsys):
    with pytest.raises(SystemExit):
        bench_run.main(["--scale", "--scale-factor", "0"])
    assert "bench/scale.py: error: --scale-factor" in capsys.readouterr().err


def test_disk_shortfall_is_one_line():
    assert scale.disk_shortfall(10, 11) is None
    message = scale.disk_shortfall(40_000_000_000, 12_300_000_000)
    assert message == (
        "not enough disk for the scale databases: about 40.0 GB needed, 12.3 GB free "
        "(a smaller --scale-factor needs less)"
    )
    assert seed.FULL.estimated_bytes() > 30e9  # the issue's sizes take tens of GB


# --- Only databases of its own -----------------------------------------------------------------


def test_an_existing_database_is_refused_and_left_alone(database_name):
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database_name)))
    marker = scale.owner_marker("t")
    with (
        pytest.raises(scale.ScaleError, match=f"database {database_name} already exists"),
        scale.owned_database(ADMIN_URL, database_name, marker),
    ):
        pass
    assert _exists(database_name)


def test_its_own_database_is_dropped_unless_it_stopped_being_its_own(database_name):
    marker = scale.owner_marker("t")
    with scale.owned_database(ADMIN_URL, database_name, marker) as url:
        assert url.endswith("/" + database_name)
        scale.owned_check(ADMIN_URL, url, marker)  # ours: no error
    assert not _exists(database_name)

    with scale.owned_database(ADMIN_URL, database_name, marker) as url:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("COMMENT ON DATABASE {} IS 'someone else'").format(
                    sql.Identifier(database_name)
                )
            )
        with pytest.raises(scale.ScaleError, match="was not created by this run"):
            scale.owned_check(ADMIN_URL, url, marker)
    assert _exists(database_name)


def test_the_configured_database_is_never_written_to():
    with pytest.raises(scale.ScaleError, match="was not created by this run; not touching it"):
        scale.owned_check(ADMIN_URL, ADMIN_URL, scale.owner_marker("t"))


def test_an_account_that_cannot_create_databases_stops_with_one_line(tmp_path):
    role = f"scale_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOCREATEDB").format(sql.Identifier(role)))
    try:
        parts = urlsplit(ADMIN_URL)
        url = urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port or 5432}"))
        result = run_python(
            "bench/scale.py",
            "--smoke",
            "--json",
            str(tmp_path / "scale.json"),
            env=base_env(DATABASE_URL=url),
            timeout=120,
        )
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("bench: ")]
    assert lines[-1].startswith("bench: cannot create database authserver_scale_small_")
    assert lines[-1].endswith("permission denied to create database")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "scale.json").exists()


# --- The seeder --------------------------------------------------------------------------------


def _world(users: int) -> seed.World:
    return seed.World(
        now=time.time(),
        users=users,
        password_hash="argon2$argon2id$v=19$m=102400,t=2,p=8$c2FsdA$aGFzaA",
        oauth_client_ids=("app-one", "app-two"),
        default_audience="https://auth.test.invalid/api",
        session_max_age=30 * 86400.0,
        idle_timeout=7 * 86400.0,
        retention_days=30,
    )


@pytest.mark.slow
def test_seeding_fills_every_table_keeps_migrates_indexes_and_fails_in_one_line(database_name):
    """COPY of a small database by the agent (bench/scale_agent.py), checked through SQL: the
    counts, who is live and who the purge deletes, unique public ids, the indexes migrate made;
    then the same seeding refused by a read-only database stops with one line."""
    marker = scale.owner_marker("t")
    sizes = seed.Sizes(
        users=300, live_sessions=200, ended_sessions=500, retained_sessions=50, audit_events=3000
    )
    with scale.owned_database(ADMIN_URL, database_name, marker) as url:
        env = base_env(DATABASE_URL=url)
        migrated = manage("migrate", "--noinput", env=env, timeout=120)
        assert migrated.returncode == 0, migrated.stderr
        with psycopg.connect(url, autocommit=True) as conn:
            migrated_indexes = seed.schema_indexes(conn)
        agent = Agent(env)
        try:
            setup = agent.call("setup", "pw")
            arguments = (url, asdict(sizes), setup["password_hash"], setup["apps"], 15)
            with psycopg.connect(url, autocommit=True) as conn:  # the set-up's events
                events = conn.execute("SELECT count(*) FROM audit_authevent").fetchone()[0]
            report = agent.call("seed", *arguments)
            _seeded_database_check(url, database_name, migrated_indexes, report, events + 3000)
            with pytest.raises(AgentError) as failed:
                agent.call("seed", *arguments)
        finally:
            agent.close()
        assert str(failed.value) == "cannot execute DROP INDEX in a read-only transaction"


def _seeded_database_check(
    url: str, name: str, migrated_indexes: list, report: dict, events: int
) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        partitions = report["audit_partitions_created"]
        assert len(seed.schema_indexes(conn)) == report["indexes_checked"]
        assert report["indexes_checked"] >= len(migrated_indexes) + partitions
        assert [t["rows"] for t in report["tables"]] == [300, 750, 3000]

        def one(query: str):
            return conn.execute(query).fetchone()[0]

        assert one("SELECT count(DISTINCT public_id) FROM accounts_user") == 300
        live = (
            "SELECT count(*) FROM tokens_session WHERE revoked_at IS NULL AND "
            "expires_at > now() AND idle_expires_at > now() AND idle_expires_at <= expires_at"
        )
        assert one(live) == 200
        assert one("SELECT count(*) FROM tokens_session WHERE user_id > 300") == 0
        # ends_not_before is a lower bound of the end by time (sessions/models.py).
        bound = "ends_not_before <= least(expires_at, idle_expires_at)"
        assert one(f"SELECT count(*) FROM tokens_session WHERE {bound}") == 750  # noqa: S608
        assert one("SELECT count(*) FROM audit_authevent") == events
        assert one(
            "SELECT count(*) FROM audit_authevent a JOIN accounts_user u "
            "ON u.id = a.user_id AND u.public_id = a.user_public_id"
        ) == one("SELECT count(*) FROM audit_authevent WHERE user_id IS NOT NULL")
        assert one("SELECT min(occurred_at) > now() - interval '365 days' FROM audit_authevent")
        if partitions:  # every event in its week's partition, none in DEFAULT
            assert one("SELECT count(*) FROM audit_authevent_default") == 0
        # The purge finds exactly the sessions that ended before the retention period.
        purged = manage("purge_expired_sessions", env=base_env(DATABASE_URL=url), timeout=120)
        assert purged.returncode == 0, purged.stderr
        assert purged.stdout.startswith("deleted 500 session(s)"), purged.stdout
        assert one("SELECT count(*) FROM tokens_session") == 250
        # A new user still gets an id after the seeded ones.
        conn.execute(
            "INSERT INTO accounts_user (password, is_superuser, username, first_name, "
            "last_name, email, is_staff, is_active, date_joined, public_id) VALUES "
            "('!', false, 'after', '', '', 'after@x.invalid', false, true, now(), "
            "gen_random_uuid())"
        )
        assert one("SELECT id FROM accounts_user WHERE username = 'after'") == 301
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(
                sql.Identifier(name)
            )
        )


def test_columns_come_from_the_model_and_unknown_required_ones_are_named():
    from sessions.models import Session
    from tokens.models import SigningKey

    times = {"created_at", "last_used_at", "expires_at", "idle_expires_at"}
    columns = dict(seed.copy_plan(Session, {"id", "user_id", *times}))
    assert columns["id"] is None and columns["user_id"] is None  # generated
    assert columns["revoked_at"] == seed.NULL  # nullable
    assert columns["scope"] == "" and columns["rotations"] == "0"  # defaults
    with pytest.raises(seed.SeedError, match=r"^tokens_signingkey\.\w+ is NOT NULL without a"):
        seed.copy_plan(SigningKey, set())


def test_copy_text_values():
    assert seed.ts(0) == "1970-01-01 00:00:00.000000+00"
    assert seed.ts(86400 * 365.25 * 30 + 0.5).endswith(".500000+00")
    assert seed.copy_value(None) == r"\N"
    assert seed.copy_value(True) == "t"
    assert seed.copy_value(b"\x01\xff") == "\\\\x01ff"
    assert seed.copy_value({"a": "b\tc"}) == '{"a": "b\\\\tc"}'
    assert seed.copy_escape("a\\b\nc") == "a\\\\b\\nc"
    ids = {seed.public_id(i, 12345) for i in range(1, 5000)}
    assert len(ids) == 4999 and all(len(uuid.UUID(i).hex) == 32 for i in ids)


def test_generated_sessions_are_in_the_state_asked_for():
    world = _world(1000)
    ips = seed.ip_pool(random.Random(1), 100)
    now = world.now
    for state in ("live", "ended", "retained"):
        cols = seed.session_columns(world, state, ips, random.Random(2), 0, 400, 400)
        assert len(cols["id"]) == 400
        ends = []
        for idle, expires, revoked in zip(
            cols["idle_expires_at"], cols["expires_at"], cols["revoked_at"], strict=True
        ):
            assert idle <= expires
            end = idle if revoked == seed.NULL else min(idle, revoked)
            ended_at = time.mktime(time.strptime(end[:19], "%Y-%m-%d %H:%M:%S")) - time.timezone
            ends.append(end)
            if state == "live":
                assert revoked == seed.NULL and ended_at > now
            elif state == "ended":
                assert ended_at < now - 30 * 86400
            else:
                assert now - 30 * 86400 < ended_at < now
        # In time order, as a deployment appends them: live sessions by start, ended by end.
        order = cols["created_at"] if state == "live" else ends
        assert order == sorted(order), state


# --- Measurements and targets ------------------------------------------------------------------


def test_round_robin_refreshes_each_session_in_turn_and_drops_failed_ones():
    scenario = scale_storage.round_robin_refresh()
    state = scale_storage.RoundRobin(["a" * 43, "b" * 43, "c" * 43])
    method, path, body, _ = scenario.build(state)
    assert (method, path) == ("POST", "/api/v1/auth/refresh") and b"a" * 43 in body
    ok, state, usable = scenario.judge(200, b'{"refresh_token": "' + b"d" * 43 + b'"}', state)
    assert ok and usable and state.tokens == ["d" * 43, "b" * 43, "c" * 43]
    assert str(state) == "b" * 43
    ok, state, usable = scenario.judge(401, b"{}", state)
    assert not ok and usable and state.tokens == ["d" * 43, "c" * 43] and str(state) == "c" * 43
    states = scale_storage.round_robin_states([str(i) for i in range(10)], 3)
    assert [len(s.tokens) for s in states] == [4, 3, 3]


def _report(ratio=1.05, per_session=(500, 900, 905, 910)):
    databases = (1_000_000, 5_000_000, 5_000_300, 5_000_600)
    points = [
        {"refreshes": r, "refreshes_per_session": r / 10_000, "database": d, "bytes_per_session": b}
        for r, d, b in zip((0, 10_000, 100_000, 210_000), databases, per_session, strict=True)
    ]
    row = {"cpu_ms_per_request": 2.0, "errors": 0}
    return {
        "costs": {
            "rows": [
                {
                    "scenario": "refresh",
                    "concurrency": 8,
                    "small": row,
                    "large": {**row, "cpu_ms_per_request": 2.0 * ratio},
                    "ratio": ratio,
                    "ratio_by_round": [ratio],
                }
            ]
        },
        "storage": {
            "checkpoints": points,
            "growth": scale_storage.growth(points, 10_000),
            "login_check": {"same": True, "login": {}, "sign_in": {}, "login_status": 200},
        },
        "purge": {
            "sessions_per_second": 150_000.0,
            "sessions_deleted": 10_000_000,
            "seconds": 66.7,
            "refresh_before": {"p99_ms": 20.0},
            "refresh_during": {"p99_ms": 30.0},
        },
    }


def test_targets_pass_and_fail():
    passing = {t.name.split(":")[0].split(" (")[0]: t.passed for t in targets(_report())}
    assert all(passing.values()), passing
    failing = {
        t.name.split(":")[0]: t.passed
        for t in targets(_report(ratio=1.2, per_session=(500, 900, 1500, 2100)))
    }
    assert failing["refresh"] is False
    assert failing["bytes per live session (all its tables and indexes) <= 2048"] is False
    assert not any(
        passed for name, passed in failing.items() if name.startswith("bytes per live session")
    )


def test_growth_counts_from_when_every_session_had_refreshed_once():
    points = [
        {"refreshes": 0, "database": 1_000},
        {"refreshes": 5_000, "database": 2_000_000},
        {"refreshes": 10_000, "database": 3_000_000},
        {"refreshes": 1_010_000, "database": 3_004_000},
    ]
    g = scale_storage.growth(points, sessions=10_000)
    assert g["from_refreshes"] == 10_000
    assert g["per_million"] == pytest.approx(4_000)
    assert g["first_refresh_bytes_per_session"] == pytest.approx(299.9)


def test_the_purge_reports_the_wal_and_forced_checkpoints_and_the_server_settings():
    """What explains the refreshes' p99 during a purge besides CPU (bench/README.md "Purge"):
    read from the real server, and a checkpoint forced by WAL volume counted as requested."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        settings = scale_storage.database_settings(admin)
        assert set(settings) == set(scale_storage.DATABASE_SETTINGS)
        assert settings["max_wal_size"].endswith(("MB", "GB"))
        before = scale_storage.wal_activity(admin)
        probe = sql.Identifier(f"scale_wal_probe_{uuid.uuid4().hex[:12]}")
        try:
            admin.execute(sql.SQL("CREATE TABLE {} (n int)").format(probe))
            admin.execute(sql.SQL("INSERT INTO {} SELECT generate_series(1, 1000)").format(probe))
        finally:
            admin.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(probe))
        admin.execute("CHECKPOINT")
        # A CHECKPOINT by hand counts as requested, as one forced by WAL volume does; the
        # statistics may show it a moment late.
        deadline = time.monotonic() + 10
        delta = scale_storage.wal_delta(before, scale_storage.wal_activity(admin))
        while delta["checkpoints_requested"] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
            delta = scale_storage.wal_delta(before, scale_storage.wal_activity(admin))
    assert delta["wal_bytes"] > 8_000  # the table's thousand rows
    assert delta["checkpoints_requested"] >= 1
    assert delta["checkpoints_timed"] >= 0


def test_the_purge_reports_the_page_cache_waiting_to_be_written():
    """Pages that pile up dirty in the page cache are written all at once past the kernel's
    limit, and the refreshes' WAL flushes wait behind them (bench/README.md "Purge")."""
    meminfo = "MemTotal:       24000000 kB\nDirty:              2312 kB\nWriteback:   0 kB\n"
    assert scale_storage.page_cache_dirty_bytes(meminfo) == 2312 * 1024
    assert scale_storage.page_cache_dirty_bytes("MemTotal: 1 kB\n") is None
    here = scale_storage.page_cache_dirty_bytes()  # this machine's, read from /proc
    assert here is None or here >= 0
