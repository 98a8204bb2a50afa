"""The settings module: production refuses weak configuration with one line naming the variable."""

from __future__ import annotations

import secrets

import pytest

from tests.live import base_env, manage

STRONG_KEY = secrets.token_urlsafe(64)


def production_env(**overrides: str) -> dict[str, str]:
    env = base_env(
        AUTHSERVER_MODE="production",
        SECRET_KEY=STRONG_KEY,
        ALLOWED_HOSTS="id.example.com",
        AUTHSERVER_ISSUER="https://id.example.com",
        DEBUG="false",
    )
    env.pop("REDIS_URL", None)
    env.update(overrides)
    return {key: value for key, value in env.items() if value != "<unset>"}


def assert_refused(result, variable: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one clear line, no traceback
    assert variable in lines[0]
    assert "Traceback" not in result.stderr


def test_production_environment_passes_check_deploy_without_warnings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"SECRET_KEY": "<unset>"}, "SECRET_KEY"),
        ({"SECRET_KEY": "too-short-secret"}, "SECRET_KEY"),
        ({"SECRET_KEY": "django-insecure-" + "x" * 60}, "SECRET_KEY"),
        ({"SECRET_KEY": "ab" * 40}, "SECRET_KEY"),
        ({"ALLOWED_HOSTS": "<unset>"}, "ALLOWED_HOSTS"),
        ({"ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS"),
        ({"DEBUG": "true"}, "DEBUG"),
        ({"AUTHSERVER_ISSUER": "http://id.example.com"}, "AUTHSERVER_ISSUER"),
        ({"AUTHSERVER_ISSUER": "<unset>"}, "AUTHSERVER_ISSUER"),
    ],
)
def test_production_refuses_weak_settings(overrides, variable):
    assert_refused(manage("check", env=production_env(**overrides)), variable)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AUTHSERVER_MODE", "staging"),
        ("DEBUG", "maybe"),
        ("DATABASE_URL", "mysql-ish://nowhere/db"),
        ("DATABASE_URL", "not a url"),
        ("DATABASE_CONN_MAX_AGE", "ten"),
        ("REDIS_URL", "http://127.0.0.1:6379"),
        ("AUTHSERVER_ISSUER", "id.example.com"),
        ("AUTHSERVER_ISSUER", "https://id.example.com/?tenant=1"),
        ("AUTHSERVER_LOG_LEVEL", "LOUD"),
    ],
)
def test_malformed_values_give_one_line_naming_the_variable(variable, value):
    assert_refused(manage("check", env=base_env(**{variable: value})), variable)


def test_unreachable_database_gives_one_line_naming_database_url():
    env = base_env(DATABASE_URL="postgres://nobody@127.0.0.1:1/nothing")
    result = manage("migrate", env=env)
    assert_refused(result, "DATABASE_URL")


def test_development_mode_starts_with_defaults():
    env = base_env()
    for name in ("AUTHSERVER_MODE", "SECRET_KEY", "ALLOWED_HOSTS", "AUTHSERVER_ISSUER"):
        env.pop(name, None)
    result = manage(
        "shell",
        "-c",
        "from django.conf import settings as s; print(s.AUTHSERVER_ISSUER)",
        "--no-imports",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "http://127.0.0.1:8000"


def test_postgres_url_uses_persistent_connections_with_health_checks(settings):
    db = settings.DATABASES["default"]
    assert db["ENGINE"] == "authserver.db"  # Django's, health check once a second at most
    assert db["CONN_MAX_AGE"] > 0
    assert db["CONN_HEALTH_CHECKS"] is True


def test_psycopg3_is_the_driver():
    from django.db import connection

    assert connection.Database.__name__ == "psycopg"


def test_cache_is_redis_when_redis_url_is_set(settings):
    assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"


def test_cache_without_redis_is_the_shared_database_cache():
    env = base_env()
    env.pop("REDIS_URL", None)
    result = manage(
        "shell",
        "-c",
        "from django.conf import settings as s; print(s.CACHES['default']['BACKEND'])",
        "--no-imports",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "django.core.cache.backends.db.DatabaseCache"


def test_password_policy_is_argon2_first_then_pbkdf2_with_validators():
    from authserver import settings as production_settings

    assert production_settings.PASSWORD_HASHERS[:2] == [
        "django.contrib.auth.hashers.Argon2PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]
    names = {v["NAME"].rsplit(".", 1)[-1] for v in production_settings.AUTH_PASSWORD_VALIDATORS}
    assert names == {
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    }
