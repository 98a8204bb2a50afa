"""The in-process key ring: no database on the hot path, one parse per key, prompt propagation,
and one first key however many workers race for it."""

from __future__ import annotations

import threading
import time

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.live import manage
from tests.tokens.conftest import AUDIENCE
from tokens import keys
from tokens.issuance import access_token_issue
from tokens.models import SigningKey
from tokens.rotation import signing_key_create_first, signing_key_rotate, signing_keys_maintain
from tokens.verification import access_token_verify


class FakeClock:
    def __init__(self):
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


@pytest.fixture
def fake_clock(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(keys, "clock", clock)
    return clock


@pytest.mark.django_db
def test_hot_path_makes_no_database_query_once_warm(client):
    access_token_issue(subject="s", audience=AUDIENCE, client_id="c")
    client.get("/.well-known/jwks.json")
    with CaptureQueriesContext(connection) as queries:
        for _ in range(25):
            issued = access_token_issue(subject="s", audience=AUDIENCE, client_id="c")
            access_token_verify(issued.token, audience=AUDIENCE)
            assert client.get("/.well-known/jwks.json").status_code == 200
    assert queries.captured_queries == []


@pytest.mark.django_db
def test_private_key_is_decrypted_and_parsed_once_per_process(monkeypatch, fake_clock):
    calls = []
    real = keys.private_key_from_der

    def counting(der):
        calls.append(1)
        return real(der)

    monkeypatch.setattr(keys, "private_key_from_der", counting)
    for _ in range(10):
        access_token_issue(subject="s", audience=AUDIENCE, client_id="c")
        keys.keyring_reset_snapshot()  # reload the rows, as after a generation change
        fake_clock.value += 100
    assert len(calls) == 1


@pytest.mark.django_db
def test_a_change_elsewhere_is_seen_within_the_check_interval(fake_clock):
    kid = keys.active_signing_key().kid
    # Another instance revokes the key: rows change and the generation token moves.
    SigningKey.objects.filter(kid=kid).update(state=SigningKey.State.REVOKED)
    cache.set(keys.GENERATION_CACHE_KEY, "changed-elsewhere", timeout=None)
    fake_clock.value += keys.CHECK_INTERVAL_SECONDS - 0.01
    assert kid in {k.kid for k in keys.published_keys()}  # not yet looked
    fake_clock.value += 0.02
    assert kid not in {k.kid for k in keys.published_keys()}


@pytest.mark.django_db
def test_without_a_generation_change_the_snapshot_still_expires(settings, fake_clock):
    kid = keys.active_signing_key().kid
    SigningKey.objects.filter(kid=kid).update(state=SigningKey.State.REVOKED)  # cache not told
    fake_clock.value += settings.AUTHSERVER_KEY_CACHE_SECONDS - 1
    assert kid in {k.kid for k in keys.published_keys()}
    fake_clock.value += 1
    assert kid not in {k.kid for k in keys.published_keys()}


@pytest.mark.django_db
def test_unreachable_cache_falls_back_to_the_snapshot_age(settings, fake_clock, monkeypatch):
    kid = keys.active_signing_key().kid

    class UnreachableCache:
        def __getattr__(self, name):
            def broken(*args, **kwargs):
                raise ConnectionError("cache down")

            return broken

    monkeypatch.setattr(keys, "cache", UnreachableCache())
    fake_clock.value += 5
    assert keys.active_signing_key().kid == kid  # still serving from memory
    SigningKey.objects.filter(kid=kid).update(state=SigningKey.State.REVOKED)
    fake_clock.value += settings.AUTHSERVER_KEY_CACHE_SECONDS
    assert kid not in {k.kid for k in keys.published_keys()}


@pytest.mark.django_db(transaction=True)
def test_a_hanging_cache_stalls_only_the_thread_that_checks(fake_clock, monkeypatch):
    """A cache that hangs instead of refusing must not hold the key ring's lock: while one
    thread waits on it, the others keep signing from the snapshot."""
    kid = keys.active_signing_key().kid
    generation = keys.keyring().generation
    entered, release = threading.Event(), threading.Event()

    class HangingCache:
        def get(self, key, default=None):
            entered.set()
            release.wait(10)
            return generation

        def add(self, *args, **kwargs):
            return False

    monkeypatch.setattr(keys, "cache", HangingCache())
    fake_clock.value += keys.CHECK_INTERVAL_SECONDS + 0.5  # a check is due
    checker = threading.Thread(target=keys.active_signing_key)
    checker.start()
    try:
        assert entered.wait(5)
        started = time.monotonic()
        assert keys.active_signing_key().kid == kid
        assert time.monotonic() - started < 1.0
    finally:
        release.set()
        checker.join(10)
    assert not checker.is_alive()


def _race(target, count: int) -> list:
    barrier = threading.Barrier(count)
    results, errors = [], []

    def run():
        from django.db import connections

        try:
            barrier.wait()
            results.append(target())
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results


@pytest.mark.django_db(transaction=True)
def test_racing_threads_create_exactly_one_first_key():
    results = _race(signing_key_create_first, 6)
    assert sum(result is not None for result in results) == 1
    assert SigningKey.objects.count() == 1
    assert SigningKey.objects.get().state == SigningKey.State.ACTIVE


@pytest.mark.django_db(transaction=True)
def test_a_first_key_committed_elsewhere_mid_load_is_picked_up(child_env):
    """Another process commits the first key after this one found no published key but before it
    asks whether the store is empty: this process must sign with that key, not report none."""
    elsewhere = []

    def another_process_commits_first(execute, sql, params, many, context):
        if not elsewhere and "tokens_signingkey" in sql and "LIMIT 1" in sql:
            elsewhere.append(manage("rotate_signing_keys", "--activate-now", env=child_env))
        return execute(sql, params, many, context)

    keys.keyring_reset()
    with connection.execute_wrapper(another_process_commits_first):
        ready, reason = keys.keystore_state()
    assert elsewhere and elsewhere[0].returncode == 0, elsewhere
    assert ready, reason
    assert keys.active_signing_key().kid == SigningKey.objects.get().kid


@pytest.mark.django_db(transaction=True)
def test_racing_rotations_publish_exactly_one_next_key():
    signing_key_create_first()
    results = _race(signing_key_rotate, 5)
    assert sum(bool(change.published) for change in results) == 1
    assert SigningKey.objects.filter(state=SigningKey.State.NEXT).count() == 1


@pytest.mark.django_db(transaction=True)
def test_racing_workers_perform_a_due_activation_once(settings):
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    signing_key_create_first(now=now)
    signing_key_rotate(now=now)
    due = now + timedelta(seconds=settings.AUTHSERVER_KEY_ACTIVATION_DELAY)
    results = _race(lambda: signing_keys_maintain(now=due), 5)
    assert sum(bool(change.activated) for change in results) == 1
    assert SigningKey.objects.filter(state=SigningKey.State.ACTIVE).count() == 1
    assert SigningKey.objects.filter(state=SigningKey.State.RETIRED).count() == 1


@pytest.mark.slow
def test_racing_processes_create_exactly_one_first_key(child_env):
    import subprocess
    import sys

    from tests.live import ROOT

    procs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "rotate_signing_keys", "--check"],
            cwd=ROOT,
            env=child_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0, 0], outputs
    assert SigningKey.objects.count() == 1
    kid = SigningKey.objects.get().kid
    assert all(kid in out for out, _err in outputs)
    listing = manage("rotate_signing_keys", "--list", env=child_env)
    assert listing.stdout.count("active") == 1
