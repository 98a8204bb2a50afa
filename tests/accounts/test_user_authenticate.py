"""user_authenticate: throttle, progressive lockout, no enumeration, audit, fail closed."""

from __future__ import annotations

import contextlib
import json
import logging
import statistics
import time
from datetime import timedelta

import pytest
from django.contrib.auth.hashers import make_password

from accounts.services import (
    LoginFailed,
    LoginThrottled,
    LoginUnavailable,
    login_lockout_clear,
    user_authenticate,
)
from accounts.throttling import login_digest, login_lockout_status
from audit.models import AuthEvent
from authserver import settings as production_settings
from tests.accounts.conftest import T0
from tests.accounts.hashers import CountingMD5PasswordHasher
from tests.conftest import PASSWORD

IP = "198.51.100.20"
WRONG = "wrong horse battery staple"  # test-only credential


def login(name: str, password: str = PASSWORD, *, ip: str = IP, now=T0, **extra):
    return user_authenticate(
        login=name, password=password, ip=ip, user_agent="pytest/1", now=now, **extra
    )


def failure_of(name: str, password: str = WRONG, **kwargs) -> LoginFailed:
    with pytest.raises(LoginFailed) as caught:
        login(name, password, **kwargs)
    return caught.value


def events(event_type: str) -> list[AuthEvent]:
    return list(AuthEvent.objects.filter(event_type=event_type).order_by("id"))


@pytest.fixture
def counting_hasher(settings):
    settings.PASSWORD_HASHERS = ["tests.accounts.hashers.CountingMD5PasswordHasher"]
    CountingMD5PasswordHasher.runs = 0
    return CountingMD5PasswordHasher


# --- Success ----------------------------------------------------------------------------------


def test_login_by_username_or_email_in_any_case(make_user):
    user = make_user(username="alice", email="alice@example.com")
    assert login("alice") == user
    assert login("ALICE@example.com ", now=T0 + timedelta(seconds=1)) == user


def test_success_stamps_last_login_and_is_audited(make_user):
    user = make_user(username="alice")
    login("alice", client_id="spa")
    user.refresh_from_db()
    assert user.last_login == T0
    (event,) = events("login.succeeded")
    assert (event.user, event.ip, event.user_agent, event.client_id) == (
        user,
        IP,
        "pytest/1",
        "spa",
    )
    assert event.occurred_at == T0


def test_pbkdf2_hash_is_upgraded_to_argon2id_on_success(make_user, settings):
    settings.PASSWORD_HASHERS = production_settings.PASSWORD_HASHERS
    user = make_user(username="legacy")
    user.password = make_password(PASSWORD, hasher="pbkdf2_sha256")
    user.save()
    login("legacy")
    user.refresh_from_db()
    assert user.password.startswith("argon2$argon2id$")
    assert login("legacy", now=T0 + timedelta(seconds=1)) == user


# --- One answer for every failure ----------------------------------------------------------


@pytest.fixture
def failure_cases(make_user):
    """Every way to fail, each returning the LoginFailed it raised."""
    make_user(username="alice")
    make_user(username="gone", is_active=False)
    make_user(username="locked")
    for _ in range(5):
        failure_of("locked", ip="198.51.100.99")
    return {
        "unknown user": lambda: failure_of("nobody"),
        "wrong password": lambda: failure_of("alice"),
        "inactive, right password": lambda: failure_of("gone", PASSWORD),
        "locked, right password": lambda: failure_of("locked", PASSWORD),
        "unusable password": lambda: failure_of("alice", ""),
    }


def test_every_failure_is_the_same_error(failure_cases):
    errors = {case: run() for case, run in failure_cases.items()}
    shapes = {(type(e), e.args, str(e)) for e in errors.values()}
    assert len(shapes) == 1, errors
    assert shapes.pop()[0] is LoginFailed


def test_every_failure_costs_exactly_one_password_hash(counting_hasher, failure_cases):
    for case, run in failure_cases.items():
        before = counting_hasher.runs
        run()
        assert counting_hasher.runs - before == 1, case


def test_failure_reason_is_audited_for_admins(failure_cases, make_user):
    for run in failure_cases.values():
        run()
    reasons = [e.details["reason"] for e in events("login.failed")]
    # 5 wrong passwords that locked "locked", then one per case.
    assert reasons[5:] == [
        "unknown_user",
        "bad_credentials",
        "inactive",
        "locked",
        "bad_credentials",
    ]
    unknown = events("login.failed")[5]
    assert unknown.user is None
    assert unknown.details["login_digest"] == login_digest("nobody")


@pytest.mark.timing
def test_unknown_and_wrong_password_take_the_same_time(make_user, settings, loose_throttle):
    """The real hasher list: an unknown name must cost what a wrong password costs."""
    settings.PASSWORD_HASHERS = production_settings.PASSWORD_HASHERS
    settings.AUTHSERVER_LOCKOUT_THRESHOLD = 1000
    make_user(username="alice")

    def timed(name: str) -> float:
        start = time.perf_counter()
        with pytest.raises(LoginFailed):
            login(name, WRONG)
        return time.perf_counter() - start

    timed("alice"), timed("nobody")  # warm-up (imports, first connection use)
    unknown, wrong = [], []
    for _ in range(7):  # interleaved, so drifting machine load hits both alike
        unknown.append(timed("nobody"))
        wrong.append(timed("alice"))
    ratio = statistics.median(unknown) / statistics.median(wrong)
    # Skipping the hash would make the unknown path ~50x faster; a second hash ~2x slower.
    assert 0.6 < ratio < 1.6, (unknown, wrong)


# --- Lockout ------------------------------------------------------------------------------


def test_lockout_after_threshold_even_for_the_right_password(make_user, loose_throttle):
    user = make_user(username="alice")
    for n in range(4):
        failure_of("alice", now=T0 + timedelta(seconds=n))
        assert not events("account.locked")
    failure_of("alice", now=T0 + timedelta(seconds=4))
    (locked,) = events("account.locked")
    assert locked.user == user
    assert locked.details == {
        "locked_until": (T0 + timedelta(seconds=64)).isoformat(),
        "seconds": 60,
        "level": 1,
    }
    failure_of("alice", PASSWORD, now=T0 + timedelta(seconds=63))
    assert events("login.failed")[-1].details["reason"] == "locked"
    assert login("alice", now=T0 + timedelta(seconds=65)) == user
    assert len(events("account.locked")) == 1


def test_lockout_doubles_up_to_the_cap(make_user, settings, loose_throttle):
    settings.AUTHSERVER_LOCKOUT_MAX_SECONDS = 200
    make_user(username="alice")
    now = T0
    periods = []
    for _ in range(4):
        for _ in range(5):
            failure_of("alice", now=now)
        periods.append(events("account.locked")[-1].details["seconds"])
        now += timedelta(seconds=periods[-1] - 1)
        failure_of("alice", PASSWORD, now=now)  # still locked one second before the end
        now += timedelta(seconds=2)
    assert periods == [60, 120, 200, 200]
    assert [e.details["level"] for e in events("account.locked")] == [1, 2, 3, 4]


def test_success_resets_the_failure_count(make_user, loose_throttle):
    user = make_user(username="alice")
    for _ in range(4):
        failure_of("alice")
    login("alice")
    for _ in range(4):
        failure_of("alice")
    assert not login_lockout_status(user=user, now=T0).locked
    assert login("alice") == user


def test_failures_via_username_and_email_count_for_one_account(make_user, loose_throttle):
    make_user(username="alice", email="alice@example.com")
    for name in ["alice", "ALICE@example.com", "alice", "alice@example.com", "Alice"]:
        failure_of(name)
    assert len(events("account.locked")) == 1


def test_admin_clears_a_lockout(make_user, loose_throttle):
    user = make_user(username="alice")
    admin = make_user(username="root", is_staff=True)
    for _ in range(5):
        failure_of("alice")
    login_lockout_clear(user=user, actor=admin, now=T0)
    assert login("alice") == user
    (unlocked,) = events("account.unlocked")
    assert unlocked.user == user
    assert unlocked.details == {
        "actor_sub": admin.sub,
        "actor_username": "root",
        "was_locked": True,
    }


def test_lockout_on_database_cache(make_user, database_cache, loose_throttle):
    user = make_user(username="alice")
    for _ in range(5):
        failure_of("alice")
    failure_of("alice", PASSWORD)
    assert login_lockout_status(user=user, now=T0).locked
    assert len(events("account.locked")) == 1


# --- Throttle -----------------------------------------------------------------------------


def test_ip_throttle_answers_with_retry_after_and_no_hash(make_user, settings, counting_hasher):
    settings.AUTHSERVER_LOGIN_THROTTLE_PER_IP = 3
    make_user(username="alice")
    for n in range(3):
        failure_of(f"nobody{n}")
    runs = counting_hasher.runs
    now = T0 + timedelta(seconds=120)
    for _ in range(2):
        with pytest.raises(LoginThrottled) as caught:
            login("alice", now=now)
        assert caught.value.retry_after == 180
    assert counting_hasher.runs == runs  # no password work for throttled attempts
    (throttled,) = events("login.throttled")  # recorded once per bucket and window
    assert throttled.details["scope"] == "ip"
    assert throttled.details["retry_after"] == 180
    assert login("alice", now=T0 + timedelta(seconds=300)).username == "alice"


def test_login_name_throttle_applies_whether_or_not_the_account_exists(make_user, settings):
    settings.AUTHSERVER_LOCKOUT_THRESHOLD = 100
    make_user(username="alice")
    outcomes = {}
    for name in ["alice", "nobody"]:
        seen = []
        for n in range(11):
            try:
                login(name, WRONG, ip=f"203.0.113.{n}")
            except (LoginFailed, LoginThrottled) as exc:
                seen.append(type(exc).__name__)
        outcomes[name] = seen
    assert outcomes["alice"] == outcomes["nobody"] == ["LoginFailed"] * 10 + ["LoginThrottled"]


def test_lockout_clear_also_lifts_the_login_name_throttle(make_user, settings):
    settings.AUTHSERVER_LOGIN_THROTTLE_PER_LOGIN = 2
    user = make_user(username="alice")
    failure_of("alice")
    failure_of("alice")
    with pytest.raises(LoginThrottled):
        login("alice")
    login_lockout_clear(user=user, now=T0)
    assert login("alice") == user


# --- Fail closed --------------------------------------------------------------------------


def test_cache_down_refuses_every_login(make_user, dead_cache, counting_hasher):
    make_user(username="alice")
    for password in [PASSWORD, WRONG]:
        with pytest.raises(LoginUnavailable):
            login("alice", password)
    assert counting_hasher.runs == 1  # make_user's hash only: no login got as far as a check
    assert not AuthEvent.objects.filter(event_type="login.succeeded").exists()


# --- Secrets ------------------------------------------------------------------------------


def test_password_never_reaches_the_trail_or_the_logs(make_user, caplog, settings):
    settings.AUTHSERVER_LOGIN_THROTTLE_PER_IP = 8  # the 9th failure below is refused
    caplog.set_level(logging.DEBUG)
    make_user(username="alice")
    typed = "Tr0ub4dor&3-typed-into-the-name-field"
    attempts = (
        [("alice", PASSWORD), ("alice", typed)] + [(typed, typed)] * 3 + [("alice", typed)] * 5
    )
    for name, password in attempts:
        with contextlib.suppress(LoginFailed, LoginThrottled):
            login(name, password)
    stored = json.dumps(
        list(AuthEvent.objects.values("details", "user_agent", "client_id")), default=str
    )
    assert {e.event_type for e in AuthEvent.objects.all()} >= {
        "login.succeeded",
        "login.failed",
        "account.locked",
        "login.throttled",
    }
    for secret in (PASSWORD, typed, typed.casefold()):
        assert secret not in stored
        assert secret not in caplog.text
