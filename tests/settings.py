"""Test settings: the real settings module, given test values through the environment.

Tests run against real PostgreSQL and real Redis. `make test` (scripts/runtests.py) finds or starts
them and exports DATABASE_URL and REDIS_URL; running pytest by hand needs the same two variables.
"""

import os
import secrets
import sys

if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
    sys.stderr.write(
        "tests: DATABASE_URL must point at PostgreSQL (postgres://...); run `make test`, "
        "which finds or starts one\n"
    )
    raise SystemExit(2)
if not os.environ.get("REDIS_URL"):
    sys.stderr.write("tests: REDIS_URL must point at Redis; run `make test`, which finds one\n")
    raise SystemExit(2)

os.environ.setdefault("AUTHSERVER_MODE", "development")
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(64))
os.environ.setdefault("AUTHSERVER_ISSUER", "http://testserver")
# Key-encryption key for signing keys: generated per test session, inherited by child processes.
os.environ.setdefault("AUTHSERVER_KEY_ENCRYPTION_KEY", secrets.token_urlsafe(32))

from authserver.settings import *  # noqa: F403
from authserver.settings import CACHES

# A unique prefix per test process keeps parallel runs sharing one Redis apart.
CACHES["default"]["KEY_PREFIX"] = f"authserver-test-{os.getpid()}"

# Fast hashing for the many users tests create. Tests about the production hasher list override
# PASSWORD_HASHERS back to authserver.settings' value.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]

# The test process itself sets up databases, loads fixtures and runs the data-scale checks: it
# is a management command for the database timeouts (none by default). The authserver processes
# the tests start (gunicorn, tests/live.py) read the environment afresh and get the serving ones.
from authserver.settings import (  # noqa: E402
    AUTHSERVER_DB_COMMAND_LOCK_TIMEOUT_MS,
    AUTHSERVER_DB_COMMAND_STATEMENT_TIMEOUT_MS,
    CLIENT_TIMEOUT_MARGIN_MS,
    DATABASES,
)

DATABASES["default"]["OPTIONS"]["options"] = (
    f"-c statement_timeout={AUTHSERVER_DB_COMMAND_STATEMENT_TIMEOUT_MS}"
    f" -c lock_timeout={AUTHSERVER_DB_COMMAND_LOCK_TIMEOUT_MS}"
)
DATABASES["default"]["CLIENT_TIMEOUT_MS"] = (
    AUTHSERVER_DB_COMMAND_STATEMENT_TIMEOUT_MS + CLIENT_TIMEOUT_MARGIN_MS
    if AUTHSERVER_DB_COMMAND_STATEMENT_TIMEOUT_MS
    else 0
)
