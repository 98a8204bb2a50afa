"""Login-protection settings: bad values refuse to start; the DB cache keeps lockouts."""

from __future__ import annotations

import pytest

from tests.live import base_env, manage


def assert_refused(result, variable: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"AUTHSERVER_LOGIN_THROTTLE_PER_IP": "0"}, "AUTHSERVER_LOGIN_THROTTLE_PER_IP"),
        ({"AUTHSERVER_LOGIN_THROTTLE_PER_LOGIN": "many"}, "AUTHSERVER_LOGIN_THROTTLE_PER_LOGIN"),
        ({"AUTHSERVER_LOGIN_THROTTLE_WINDOW_SECONDS": "5"}, "AUTHSERVER_LOGIN_THROTTLE_WINDOW"),
        ({"AUTHSERVER_LOGIN_THROTTLE_WINDOW_SECONDS": "999999"}, "AUTHSERVER_LOGIN_THROTTLE_WIN"),
        ({"AUTHSERVER_LOCKOUT_THRESHOLD": "0"}, "AUTHSERVER_LOCKOUT_THRESHOLD"),
        (
            {"AUTHSERVER_LOCKOUT_BASE_SECONDS": "600", "AUTHSERVER_LOCKOUT_MAX_SECONDS": "60"},
            "AUTHSERVER_LOCKOUT_MAX_SECONDS",
        ),
        (
            {"AUTHSERVER_LOCKOUT_MAX_SECONDS": "7200", "AUTHSERVER_LOCKOUT_RESET_SECONDS": "3600"},
            "AUTHSERVER_LOCKOUT_RESET_SECONDS",
        ),
        ({"AUTHSERVER_TRUSTED_PROXIES": "10.0.0.1,my-load-balancer"}, "AUTHSERVER_TRUSTED_PROX"),
    ],
)
def test_bad_values_refuse_to_start(overrides, variable):
    assert_refused(manage("check", env=base_env(**overrides)), variable)


def test_database_cache_is_not_culled_at_djangos_default_300_entries():
    env = base_env()
    env.pop("REDIS_URL", None)
    code = (
        "from django.conf import settings; c = settings.CACHES['default']; "
        "print(c['BACKEND'], c['OPTIONS']['MAX_ENTRIES'])"
    )
    result = manage("shell", "-c", code, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].split() == [
        "django.core.cache.backends.db.DatabaseCache",
        "100000",
    ]
