"""authserver settings: the one module that reads the environment.

Every variable is documented in docs/reference/environment.md (tests/docs/ holds the page to
this module) and deploy/env.example. Values are read
through django-environ and checked here; a bad value stops the process with one line naming the
variable (authserver.startup.config_fail). There is no production-only settings module: the
environment (AUTHSERVER_MODE=production) switches the security settings on.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import secrets
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

from authserver.startup import config_fail
from branding import values as brand_values

BASE_DIR = Path(__file__).resolve().parent.parent
# Local state of the development server (SQLite file, generated secrets). Ignored by git.
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
if env.str("AUTHSERVER_READ_DOT_ENV", default="0") in {"1", "true", "yes", "on"}:
    # The OS environment wins over .env (overwrite=False is django-environ's default).
    env.read_env(BASE_DIR / ".env")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _bool(name: str, default: bool) -> bool:
    raw = env.str(name, default=None)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    config_fail(name, f"must be a boolean (true/false), got {raw!r}")


def _int(name: str, default: int, minimum: int = 0) -> int:
    raw = env.str(name, default=None)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        config_fail(name, f"must be an integer, got {raw!r}")
    if value < minimum:
        config_fail(name, f"must be at least {minimum}, got {value}")
    return value


def _str(name: str, default: str | None = None) -> str | None:
    value = env.str(name, default=None)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _list(name: str, default: list[str]) -> list[str]:
    raw = _str(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def _dev_secret(filename: str, make: callable) -> str:
    """A development-only secret, generated once into var/ so every process shares it."""
    path = VAR_DIR / filename
    if not path.exists():
        VAR_DIR.mkdir(exist_ok=True)
        with open(path, "x", encoding="ascii") as fh:  # "x": never overwrite a racing writer
            fh.write(make())
        path.chmod(0o600)
    return path.read_text(encoding="ascii").strip()


def _weak_secret_key(key: str) -> str | None:
    # The same bar as Django's deploy check (security.W009), so `check --deploy` agrees with us.
    if key.startswith("django-insecure"):
        return "starts with 'django-insecure'"
    if len(key) < 50:
        return "is shorter than 50 characters"
    if len(set(key)) < 5:
        return "has fewer than 5 distinct characters"
    return None


# --- Mode -----------------------------------------------------------------------------------
AUTHSERVER_MODE = (_str("AUTHSERVER_MODE", "development") or "").lower()
if AUTHSERVER_MODE not in {"development", "production"}:
    config_fail(
        "AUTHSERVER_MODE", f"must be 'development' or 'production', got {AUTHSERVER_MODE!r}"
    )
PRODUCTION = AUTHSERVER_MODE == "production"

# --- Core Django ----------------------------------------------------------------------------
DEBUG = _bool("DEBUG", default=False)
if PRODUCTION and DEBUG:
    config_fail("DEBUG", "must be off when AUTHSERVER_MODE=production")

SECRET_KEY = _str("SECRET_KEY")
if SECRET_KEY is None:
    if PRODUCTION:
        config_fail("SECRET_KEY", "is required when AUTHSERVER_MODE=production")
    SECRET_KEY = _dev_secret("secret_key", lambda: secrets.token_urlsafe(64))
elif PRODUCTION and (weakness := _weak_secret_key(SECRET_KEY)):
    config_fail("SECRET_KEY", f"is too weak: it {weakness}; use 50+ random characters")
SECRET_KEY_FALLBACKS = _list("SECRET_KEY_FALLBACKS", [])

ALLOWED_HOSTS = _list(
    "ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]", "testserver"]
)
if PRODUCTION and not ALLOWED_HOSTS:
    config_fail(
        "ALLOWED_HOSTS", "must list this server's host names when AUTHSERVER_MODE=production"
    )

# --- Issuer ---------------------------------------------------------------------------------
_issuer = _str("AUTHSERVER_ISSUER", None if PRODUCTION else "http://127.0.0.1:8000")
if _issuer is None:
    config_fail("AUTHSERVER_ISSUER", "is required when AUTHSERVER_MODE=production")
_issuer_parts = urlsplit(_issuer)
if _issuer_parts.scheme not in {"http", "https"} or not _issuer_parts.netloc:
    config_fail("AUTHSERVER_ISSUER", f"must be an absolute URL, got {_issuer!r}")
if _issuer_parts.query or _issuer_parts.fragment:
    config_fail(
        "AUTHSERVER_ISSUER", "must not have a query or fragment (OpenID Connect Discovery §2)"
    )
if PRODUCTION and _issuer_parts.scheme != "https":
    config_fail("AUTHSERVER_ISSUER", "must be an https:// URL when AUTHSERVER_MODE=production")
AUTHSERVER_ISSUER = _issuer.rstrip("/")

# --- Database -------------------------------------------------------------------------------
_default_db = f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # django-environ warns about unknown schemes; we report
        _db = env.db_url("DATABASE_URL", default=_default_db)
except (ImproperlyConfigured, ValueError, KeyError) as exc:
    config_fail("DATABASE_URL", f"is malformed ({exc.__class__.__name__}: {exc})")
_engine = _db.get("ENGINE", "")
if _engine == "django.db.backends.sqlite3":
    if _db.get("NAME") in (None, ""):
        config_fail("DATABASE_URL", "names no SQLite file (use sqlite:////absolute/path.sqlite3)")
    if _db["NAME"] != ":memory:":
        Path(_db["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    _db.setdefault("OPTIONS", {})["timeout"] = 20
elif _engine == "django.db.backends.postgresql":
    # Persistent connections with health checks: the connection survives across requests and a
    # broken one is replaced before use (Django "Persistent connections"). Our backend is Django's
    # with the check spaced out to once a second per connection (authserver/db/base.py).
    _db["ENGINE"] = "authserver.db"
    _db["CONN_MAX_AGE"] = _int("DATABASE_CONN_MAX_AGE", 600)
    _db["CONN_HEALTH_CHECKS"] = True
    # Seconds to open a connection (libpq counts anything below 2 as 2). A database that does
    # not answer fails the request (503) rather than holding a thread (issue 19.3).
    _db.setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", _int("DATABASE_CONNECT_TIMEOUT", 2, minimum=1)
    )
    # Server-side parameters and prepared statements (psycopg 3): a statement run 5 times on a
    # connection is prepared, so PostgreSQL parses and plans the hot queries once per connection
    # instead of on every request (bench/README.md). Turn off behind a transaction-pooling
    # PgBouncer older than 1.21, which cannot keep prepared statements apart.
    if _bool("DATABASE_PREPARED_STATEMENTS", default=True):
        _db["OPTIONS"].setdefault("server_side_binding", True)
        _db["OPTIONS"].setdefault("prepare_threshold", 5)
else:
    config_fail("DATABASE_URL", f"must be a sqlite:// or postgres:// URL, got engine {_engine!r}")
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache: shared by every worker and instance (rate limits and lockouts live here) ---------
REDIS_URL = _str("REDIS_URL")
# Namespace of our cache keys (lets several deployments, or test runs, share one Redis).
CACHE_KEY_PREFIX = _str("AUTHSERVER_CACHE_KEY_PREFIX", "authserver")
if REDIS_URL:
    if urlsplit(REDIS_URL).scheme not in {"redis", "rediss", "unix"}:
        config_fail("REDIS_URL", f"must be a redis://, rediss:// or unix:// URL, got {REDIS_URL!r}")
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": CACHE_KEY_PREFIX,
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    # The database cache table is shared across gunicorn workers; it is created by a migration.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "authserver_cache",
            "KEY_PREFIX": CACHE_KEY_PREFIX,
        }
    }

# --- Applications ---------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "authserver.apps.AuthserverConfig",
    "accounts.apps.AccountsConfig",
    "tokens.apps.TokensConfig",
    "sessions.apps.SessionsConfig",
    "audit.apps.AuditConfig",
    "oauth.apps.OauthConfig",
    "mail.apps.MailConfig",
    "mfa.apps.MfaConfig",
    "passkeys.apps.PasskeysConfig",
    "branding.apps.BrandingConfig",
]

MIDDLEWARE = [
    "authserver.middleware.RequestIdMiddleware",
    "authserver.middleware.RequestMetricsMiddleware",
    "authserver.middleware.InfrastructureEndpointsMiddleware",
    # Turns the HTTPS redirect of the next one into a 308.
    "authserver.middleware.HttpsRedirect308Middleware",
    "django.middleware.security.SecurityMiddleware",
    # Errors on API paths in the APIs' JSON shape, never an HTML page (an unknown /api/v1 path).
    "authserver.middleware.ApiErrorsAsJsonMiddleware",
    # The token endpoints, userinfo and the JWKS skip the middleware below (bench/README.md):
    # the browser's, and WhiteNoise, which serves only STATIC_URL (never one of those paths).
    "authserver.middleware.MachinePathsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # A strict Content-Security-Policy on the admin's pages (and only there).
    "authserver.middleware.AdminSecurityHeadersMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user only while the browser's sign-in (a Session row) is live (sessions/browser.py).
    "sessions.browser.BrowserSessionMiddleware",
    # The page's language: ui_locales, the user's saved language, Accept-Language
    # (authserver/languages.py); after the two that set request.user.
    "authserver.languages.LanguageMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "authserver.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "authserver.urls"
# An operator's template folder, searched before the built-in templates (README "Branding"):
# AUTHSERVER_TEMPLATE_DIR; AUTHSERVER_EMAIL_TEMPLATE_DIR is its older name (mail only at first)
# and is still honoured, searched after it.
_template_dirs = []
for _name in ("AUTHSERVER_TEMPLATE_DIR", "AUTHSERVER_EMAIL_TEMPLATE_DIR"):
    if _template_dir := _str(_name):
        if not Path(_template_dir).is_dir():
            config_fail(_name, f"{_template_dir!r} is not a directory")
        _template_dirs.append(Path(_template_dir))
WSGI_APPLICATION = "authserver.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # An operator's folder first (AUTHSERVER_TEMPLATE_DIR), so its files (email/<name>/...,
        # authserver/base.html, accounts/login.html, ...) replace the built-in ones.
        "DIRS": [*_template_dirs, BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                # {{ brand }}: lazy, read only by templates that print it.
                "branding.context.brand",
            ],
        },
    },
]

# --- Users and passwords --------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
# Every password check, the admin's login form included, goes through the throttle and lockout.
AUTHENTICATION_BACKENDS = ["accounts.backends.ProtectedModelBackend"]
# Argon2id first; PBKDF2 second so hashes made by it still verify and are upgraded on login.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": _int("AUTHSERVER_PASSWORD_MIN_LENGTH", 10, minimum=8)},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- HTTPS and cookies: on in production, from the environment -------------------------------
SECURE_SSL_REDIRECT = _bool("AUTHSERVER_SSL_REDIRECT", default=PRODUCTION)
SECURE_HSTS_SECONDS = _int("AUTHSERVER_HSTS_SECONDS", 31_536_000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _bool("AUTHSERVER_HSTS_INCLUDE_SUBDOMAINS", default=PRODUCTION)
SECURE_HSTS_PRELOAD = _bool("AUTHSERVER_HSTS_PRELOAD", default=PRODUCTION)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
# __Host- cookies are bound to this exact origin over HTTPS: no Domain attribute, Path=/.
SESSION_COOKIE_NAME = "__Host-authserver-session" if PRODUCTION else "authserver-session"
CSRF_COOKIE_NAME = "__Host-authserver-csrf" if PRODUCTION else "authserver-csrf"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = _int("AUTHSERVER_BROWSER_SESSION_SECONDS", 8 * 3600, minimum=60)
# The account pages' sensitive actions (change password, end sessions, withdraw an app, delete the
# account) need a password typed within this many seconds; otherwise they ask for it again.
AUTHSERVER_REAUTH_MAX_AGE = _int("AUTHSERVER_REAUTH_MAX_AGE", 300, minimum=30)
# Who must enrol a second factor (mfa/, README "Multi-factor sign-in"): optional (nobody),
# staff (is_staff accounts), required (everyone). Enrolment is asked for at the next sign-in.
AUTHSERVER_MFA = (_str("AUTHSERVER_MFA", "optional") or "").lower()
if AUTHSERVER_MFA not in {"optional", "staff", "required"}:
    config_fail("AUTHSERVER_MFA", "must be optional, staff or required")
CSRF_TRUSTED_ORIGINS = _list("CSRF_TRUSTED_ORIGINS", [])
# Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (IPs or CIDRs, and "unix" for
# the peer of a Unix socket). Used by the rate limiter and by deploy/gunicorn.conf.py
# (forwarded_allow_ips). Empty: trust no forwarding header.
AUTHSERVER_TRUSTED_PROXIES = _list("AUTHSERVER_TRUSTED_PROXIES", [])

# --- Login protection -----------------------------------------------------------------------
# Failure budgets per client IP and per submitted login name, per fixed window (successful
# sign-ins spend nothing), plus a progressive lockout per account. All state is in the default
# cache (shared by every worker). 50 failures per IP: a 500-person office behind one NAT address
# may mistype 1 sign-in in 10 within a window; a credential-stuffing bot gets 50 guesses per
# address per 5 minutes. 10 per name: 30 guesses at one account are refused after the 10th.
AUTHSERVER_LOGIN_THROTTLE_WINDOW_SECONDS = _int(
    "AUTHSERVER_LOGIN_THROTTLE_WINDOW_SECONDS", 300, minimum=10
)
AUTHSERVER_LOGIN_THROTTLE_PER_IP = _int("AUTHSERVER_LOGIN_THROTTLE_PER_IP", 50, minimum=1)
AUTHSERVER_LOGIN_THROTTLE_PER_LOGIN = _int("AUTHSERVER_LOGIN_THROTTLE_PER_LOGIN", 10, minimum=1)
AUTHSERVER_LOCKOUT_THRESHOLD = _int("AUTHSERVER_LOCKOUT_THRESHOLD", 5, minimum=1)
AUTHSERVER_LOCKOUT_BASE_SECONDS = _int("AUTHSERVER_LOCKOUT_BASE_SECONDS", 60, minimum=1)
AUTHSERVER_LOCKOUT_MAX_SECONDS = _int("AUTHSERVER_LOCKOUT_MAX_SECONDS", 3600, minimum=1)
AUTHSERVER_LOCKOUT_RESET_SECONDS = _int("AUTHSERVER_LOCKOUT_RESET_SECONDS", 86_400, minimum=60)
if AUTHSERVER_LOGIN_THROTTLE_WINDOW_SECONDS > 86_400:
    config_fail("AUTHSERVER_LOGIN_THROTTLE_WINDOW_SECONDS", "must be at most 86400 (one day)")
if AUTHSERVER_LOCKOUT_MAX_SECONDS < AUTHSERVER_LOCKOUT_BASE_SECONDS:
    config_fail(
        "AUTHSERVER_LOCKOUT_MAX_SECONDS",
        f"must be at least AUTHSERVER_LOCKOUT_BASE_SECONDS ({AUTHSERVER_LOCKOUT_BASE_SECONDS})",
    )
if AUTHSERVER_LOCKOUT_MAX_SECONDS > 30 * 86_400:
    config_fail("AUTHSERVER_LOCKOUT_MAX_SECONDS", "must be at most 2592000 (30 days)")

# --- Sign-up and email verification (accounts/registration.py, accounts/verification.py) ----
# closed: no sign-up page (404), accounts come from admins; open: anyone may sign up; invite:
# only through an invitation link an admin sent (admin action or `manage.py invite_user`).
AUTHSERVER_REGISTRATION = (_str("AUTHSERVER_REGISTRATION", "closed") or "closed").lower()
if AUTHSERVER_REGISTRATION not in {"closed", "open", "invite"}:
    config_fail("AUTHSERVER_REGISTRATION", "must be one of closed, open, invite")
# An account made on the sign-up page stays inactive (cannot sign in) until its address is
# confirmed; false lets it sign in at once, with email_verified false in its tokens.
AUTHSERVER_REGISTRATION_REQUIRE_VERIFIED = _bool("AUTHSERVER_REGISTRATION_REQUIRE_VERIFIED", True)
# Comma-separated domains the sign-up page accepts (exactly: example.com admits no subdomain);
# empty: any. Invitations and admins are not limited.
AUTHSERVER_REGISTRATION_EMAIL_DOMAINS = [
    d.lower().lstrip("@") for d in _list("AUTHSERVER_REGISTRATION_EMAIL_DOMAINS", [])
]
# Sign-up attempts per client IP (IPv6 per /64) per window, counted whether or not they succeed.
AUTHSERVER_REGISTRATION_THROTTLE_PER_IP = _int(
    "AUTHSERVER_REGISTRATION_THROTTLE_PER_IP", 10, minimum=1
)
AUTHSERVER_REGISTRATION_THROTTLE_WINDOW_SECONDS = _int(
    "AUTHSERVER_REGISTRATION_THROTTLE_WINDOW_SECONDS", 3600, minimum=10
)
# Lifetimes of a confirmation link (sign-up, new address) and of an invitation link.
AUTHSERVER_EMAIL_VERIFY_LINK_SECONDS = _int(
    "AUTHSERVER_EMAIL_VERIFY_LINK_SECONDS", 86_400, minimum=60
)
AUTHSERVER_INVITE_LINK_SECONDS = _int("AUTHSERVER_INVITE_LINK_SECONDS", 7 * 86_400, minimum=60)
if AUTHSERVER_LOCKOUT_RESET_SECONDS < AUTHSERVER_LOCKOUT_MAX_SECONDS:
    # Otherwise the lockout level would be forgotten while the account is still locked.
    config_fail(
        "AUTHSERVER_LOCKOUT_RESET_SECONDS",
        f"must be at least AUTHSERVER_LOCKOUT_MAX_SECONDS ({AUTHSERVER_LOCKOUT_MAX_SECONDS})",
    )
# The client IP behind proxies is derived from these (accounts/network.py): refuse typos here
# rather than silently trusting nothing (or everything).
for _proxy in AUTHSERVER_TRUSTED_PROXIES:
    if _proxy.lower() == "unix":
        continue
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError:
        config_fail(
            "AUTHSERVER_TRUSTED_PROXIES", f"has {_proxy!r}, which is not an IP, a CIDR or 'unix'"
        )
if CACHES["default"]["BACKEND"] == "django.core.cache.backends.db.DatabaseCache":
    # Django culls a third of the table once it holds MAX_ENTRIES rows (default 300), expired rows
    # first; with the default a flood of junk logins could wipe live lockouts.
    CACHES["default"].setdefault("OPTIONS", {}).setdefault("MAX_ENTRIES", 100_000)

# --- Sessions and refresh tokens (sessions/services.py) ---------------------------------------
# A session (refresh-token family) ends at its absolute lifetime or after this long unused.
AUTHSERVER_SESSION_MAX_AGE = _int("AUTHSERVER_SESSION_MAX_AGE", 30 * 86_400, minimum=300)
AUTHSERVER_SESSION_IDLE_TIMEOUT = _int("AUTHSERVER_SESSION_IDLE_TIMEOUT", 7 * 86_400, minimum=60)
if AUTHSERVER_SESSION_IDLE_TIMEOUT > AUTHSERVER_SESSION_MAX_AGE:
    config_fail(
        "AUTHSERVER_SESSION_IDLE_TIMEOUT",
        f"must not exceed AUTHSERVER_SESSION_MAX_AGE ({AUTHSERVER_SESSION_MAX_AGE})",
    )
# 0 = strict: any replay of a spent refresh token revokes the session. Up to 300 s otherwise.
AUTHSERVER_REFRESH_REUSE_GRACE_SECONDS = _int("AUTHSERVER_REFRESH_REUSE_GRACE_SECONDS", 0)
if AUTHSERVER_REFRESH_REUSE_GRACE_SECONDS > 300:
    config_fail("AUTHSERVER_REFRESH_REUSE_GRACE_SECONDS", "must be at most 300 seconds")
# "body": refresh tokens travel in JSON; "cookie": browser mode, an HttpOnly; Secure;
# SameSite=Strict cookie scoped to the auth API path, with CSRF protection.
AUTHSERVER_REFRESH_TOKEN_TRANSPORT = (
    _str("AUTHSERVER_REFRESH_TOKEN_TRANSPORT", "body") or ""
).lower()
if AUTHSERVER_REFRESH_TOKEN_TRANSPORT not in {"body", "cookie"}:
    config_fail("AUTHSERVER_REFRESH_TOKEN_TRANSPORT", "must be 'body' or 'cookie'")
# Ended sessions (and their token rows) are kept this long for the audit trail, then purged.
AUTHSERVER_SESSION_RETENTION_DAYS = _int("AUTHSERVER_SESSION_RETENTION_DAYS", 30)

# --- Audit trail (audit/) --------------------------------------------------------------------
# Events older than this many days are removed by `purge_audit_events` (1 day to 100 years); on
# PostgreSQL whole week partitions, once the week is wholly older (audit/partitions.py).
AUTHSERVER_AUDIT_RETENTION_DAYS = _int("AUTHSERVER_AUDIT_RETENTION_DAYS", 365, minimum=1)
if AUTHSERVER_AUDIT_RETENTION_DAYS > 36_500:
    config_fail("AUTHSERVER_AUDIT_RETENTION_DAYS", "must be at most 36500 (100 years)")
# A failed client authentication is audited once per (client, IP) and window of this length;
# later failures in the window are only counted (oauth/client_auth.py).
AUTHSERVER_CLIENT_AUTH_AUDIT_WINDOW_SECONDS = _int(
    "AUTHSERVER_CLIENT_AUTH_AUDIT_WINDOW_SECONDS", 300, minimum=10
)
if AUTHSERVER_CLIENT_AUTH_AUDIT_WINDOW_SECONDS > 86_400:
    config_fail("AUTHSERVER_CLIENT_AUTH_AUDIT_WINDOW_SECONDS", "must be at most 86400 (one day)")

# --- Internationalisation -------------------------------------------------------------------
# The hosted pages and emails in English and German (docs: Reference > Languages). English is
# the default; a language is added with its catalog under locale/<code>/LC_MESSAGES/.
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("de", "Deutsch")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# DATETIME_FORMAT per language for the account pages (authserver/formats).
FORMAT_MODULE_PATH = ["authserver.formats"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files (served by WhiteNoise from the app process) -------------------------------
STATIC_URL = "static/"
# `collectstatic` target in production; development serves from the app folders instead.
STATIC_ROOT = BASE_DIR / "staticfiles" if PRODUCTION else None
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Development serves straight from the app folders, so `make run` needs no collectstatic.
WHITENOISE_USE_FINDERS = not PRODUCTION


# --- Signing keys and access tokens ---------------------------------------------------------
# Private signing keys live in the database, encrypted with AES-256-GCM under this key-encryption
# key (KEK): 32 random bytes in base64, from the variable or from a mounted secret file.
def _kek(name: str, text: str) -> bytes:
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        config_fail(
            name,
            "must be 32 random bytes in base64, e.g. "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'",
        )
    return raw


_kek_text = _str("AUTHSERVER_KEY_ENCRYPTION_KEY")
_kek_file = _str("AUTHSERVER_KEY_ENCRYPTION_KEY_FILE")
_kek_name = "AUTHSERVER_KEY_ENCRYPTION_KEY"
if _kek_text is not None and _kek_file is not None:
    config_fail(
        "AUTHSERVER_KEY_ENCRYPTION_KEY_FILE",
        "must not be set together with AUTHSERVER_KEY_ENCRYPTION_KEY (set one of them)",
    )
if _kek_file is not None:
    _kek_name = "AUTHSERVER_KEY_ENCRYPTION_KEY_FILE"
    try:
        _kek_text = Path(_kek_file).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        config_fail(_kek_name, f"cannot be read: {exc.__class__.__name__} on {_kek_file}")
elif _kek_text is None:
    if PRODUCTION:
        config_fail(
            "AUTHSERVER_KEY_ENCRYPTION_KEY",
            "is required when AUTHSERVER_MODE=production (or AUTHSERVER_KEY_ENCRYPTION_KEY_FILE); "
            "generate one with python3 -c 'import secrets; print(secrets.token_urlsafe(32))'",
        )
    _kek_text = _dev_secret("key_encryption_key", lambda: secrets.token_urlsafe(32))
AUTHSERVER_KEY_ENCRYPTION_KEY = _kek(_kek_name, _kek_text)
# Older KEKs still accepted for decryption while re-encrypting (rotate_signing_keys --reencrypt).
AUTHSERVER_KEY_ENCRYPTION_KEY_FALLBACKS = [
    _kek("AUTHSERVER_KEY_ENCRYPTION_KEY_FALLBACKS", text)
    for text in _list("AUTHSERVER_KEY_ENCRYPTION_KEY_FALLBACKS", [])
]
del _kek_text, _kek_file, _kek_name

AUTHSERVER_SIGNING_ALG = (_str("AUTHSERVER_SIGNING_ALG", "RS256") or "").upper()
if AUTHSERVER_SIGNING_ALG not in {"RS256", "ES256"}:
    config_fail("AUTHSERVER_SIGNING_ALG", f"must be RS256 or ES256, got {AUTHSERVER_SIGNING_ALG!r}")
AUTHSERVER_RSA_KEY_SIZE = _int("AUTHSERVER_RSA_KEY_SIZE", 2048)
if AUTHSERVER_RSA_KEY_SIZE not in {2048, 3072, 4096}:
    config_fail(
        "AUTHSERVER_RSA_KEY_SIZE", f"must be 2048, 3072 or 4096, got {AUTHSERVER_RSA_KEY_SIZE}"
    )


def _at_most(name: str, value: int, maximum: int) -> int:
    if value > maximum:
        config_fail(name, f"must be at most {maximum}, got {value}")
    return value


AUTHSERVER_ACCESS_TOKEN_TTL = _at_most(
    "AUTHSERVER_ACCESS_TOKEN_TTL", _int("AUTHSERVER_ACCESS_TOKEN_TTL", 600, minimum=30), 86_400
)
# The longest lifetime of any token signed with a signing key (access or ID token). A retired key
# stays in the JWKS for this long (plus leeway and the key-cache bound) after it stops signing.
AUTHSERVER_SIGNED_TOKEN_MAX_LIFETIME = _at_most(
    "AUTHSERVER_SIGNED_TOKEN_MAX_LIFETIME",
    _int(
        "AUTHSERVER_SIGNED_TOKEN_MAX_LIFETIME",
        max(3600, AUTHSERVER_ACCESS_TOKEN_TTL),
        minimum=AUTHSERVER_ACCESS_TOKEN_TTL,
    ),
    7 * 86_400,
)
AUTHSERVER_TOKEN_LEEWAY = _at_most(
    "AUTHSERVER_TOKEN_LEEWAY", _int("AUTHSERVER_TOKEN_LEEWAY", 30), 300
)
AUTHSERVER_DEFAULT_AUDIENCE = _str("AUTHSERVER_DEFAULT_AUDIENCE", AUTHSERVER_ISSUER + "/api")
AUTHSERVER_JWKS_MAX_AGE = _at_most(
    "AUTHSERVER_JWKS_MAX_AGE", _int("AUTHSERVER_JWKS_MAX_AGE", 300), 86_400
)
# Every worker re-reads the key rows at least this often even when the shared cache is lost; with
# the cache up, a rotation or revocation reaches every worker within about a second.
AUTHSERVER_KEY_CACHE_SECONDS = 60
AUTHSERVER_KEY_ROTATION_DAYS = _at_most(
    "AUTHSERVER_KEY_ROTATION_DAYS", _int("AUTHSERVER_KEY_ROTATION_DAYS", 90), 3650
)
# A new key is published (JWKS) this long before it signs, so every verifier's cached JWKS has it.
_min_delay = AUTHSERVER_JWKS_MAX_AGE + AUTHSERVER_KEY_CACHE_SECONDS
AUTHSERVER_KEY_ACTIVATION_DELAY = _at_most(
    "AUTHSERVER_KEY_ACTIVATION_DELAY",
    _int("AUTHSERVER_KEY_ACTIVATION_DELAY", max(3600, _min_delay), minimum=_min_delay),
    30 * 86_400,
)
if AUTHSERVER_KEY_ROTATION_DAYS and AUTHSERVER_KEY_ROTATION_DAYS * 86_400 <= (
    AUTHSERVER_KEY_ACTIVATION_DELAY
):
    config_fail(
        "AUTHSERVER_KEY_ROTATION_DAYS", "must be longer than AUTHSERVER_KEY_ACTIVATION_DELAY"
    )
del _min_delay

# --- Email (mail/) -----------------------------------------------------------------------------
# Messages go to the outbox table (in the transaction that causes them) and `manage.py
# deliver_email` sends them. EMAIL_URL: smtp://, smtp+tls:// (STARTTLS) or smtp+ssl:// with
# optional user:password@; read by django-environ. Without it, development prints each message
# on the worker's console and production holds messages in the outbox (the worker refuses to
# start) until it is set: a reset link must never land in a production log.
_email_url = _str("EMAIL_URL")
if _email_url is not None:
    if urlsplit(_email_url).scheme not in {"smtp", "smtp+tls", "smtp+ssl", "smtps"}:
        config_fail("EMAIL_URL", "must be an smtp://, smtp+tls:// or smtp+ssl:// URL")
    try:
        globals().update(env.email_url("EMAIL_URL"))
    except (ImproperlyConfigured, ValueError, KeyError) as exc:
        config_fail("EMAIL_URL", f"is malformed ({exc.__class__.__name__})")
    EMAIL_CONFIGURED = True
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    EMAIL_CONFIGURED = not PRODUCTION
del _email_url
DEFAULT_FROM_EMAIL = _str("DEFAULT_FROM_EMAIL", "authserver <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Seconds one SMTP connection may take (connect, each command); a hanging server is retried.
EMAIL_TIMEOUT = _int("AUTHSERVER_EMAIL_TIMEOUT", 10, minimum=1)
# A failed delivery waits BASE, 2*BASE, 4*BASE, ... seconds, at most MAX; it is never dropped.
AUTHSERVER_EMAIL_RETRY_BASE_SECONDS = _int("AUTHSERVER_EMAIL_RETRY_BASE_SECONDS", 30, minimum=1)
AUTHSERVER_EMAIL_RETRY_MAX_SECONDS = _int("AUTHSERVER_EMAIL_RETRY_MAX_SECONDS", 3600, minimum=1)
if AUTHSERVER_EMAIL_RETRY_MAX_SECONDS < AUTHSERVER_EMAIL_RETRY_BASE_SECONDS:
    config_fail(
        "AUTHSERVER_EMAIL_RETRY_MAX_SECONDS",
        "must be at least AUTHSERVER_EMAIL_RETRY_BASE_SECONDS",
    )
# Delivered messages (their bodies already blanked) are deleted after this many days.
AUTHSERVER_EMAIL_RETENTION_DAYS = _int("AUTHSERVER_EMAIL_RETENTION_DAYS", 30, minimum=1)

# --- Branding (branding/; README "Branding") ---------------------------------------------------
# Product name, logo and colours of the hosted pages, the emails and the admin. The admin's Brand
# row overrides each one that it sets. AUTHSERVER_SITE_NAME is the older name of
# AUTHSERVER_BRAND_NAME (mail only at first), still read when the new one is unset.
AUTHSERVER_BRAND_NAME = _str("AUTHSERVER_BRAND_NAME") or _str("AUTHSERVER_SITE_NAME", "authserver")
AUTHSERVER_SITE_NAME = AUTHSERVER_BRAND_NAME
AUTHSERVER_BRAND_LOGO_URL = _str("AUTHSERVER_BRAND_LOGO_URL", "")
AUTHSERVER_BRAND_PRIMARY_COLOR = _str("AUTHSERVER_BRAND_PRIMARY_COLOR", "")
AUTHSERVER_BRAND_PRIMARY_COLOR_DARK = _str("AUTHSERVER_BRAND_PRIMARY_COLOR_DARK", "")
if _problem := brand_values.name_problem(AUTHSERVER_BRAND_NAME):
    config_fail("AUTHSERVER_BRAND_NAME", _problem)
for _name, _color in (
    ("AUTHSERVER_BRAND_PRIMARY_COLOR", AUTHSERVER_BRAND_PRIMARY_COLOR),
    ("AUTHSERVER_BRAND_PRIMARY_COLOR_DARK", AUTHSERVER_BRAND_PRIMARY_COLOR_DARK),
):
    if _color and (_problem := brand_values.color_problem(_color)):
        config_fail(_name, _problem)
if AUTHSERVER_BRAND_LOGO_URL and (
    _problem := brand_values.logo_url_problem(
        AUTHSERVER_BRAND_LOGO_URL,
        static_url=brand_values.static_prefix(STATIC_URL),
        allow_http=not PRODUCTION,
    )
):
    config_fail("AUTHSERVER_BRAND_LOGO_URL", _problem)

# --- Password reset (accounts/password_reset.py) ----------------------------------------------
# Lifetime of a reset link, in seconds (default 30 minutes, at most one day).
AUTHSERVER_PASSWORD_RESET_TTL = _int("AUTHSERVER_PASSWORD_RESET_TTL", 1800, minimum=60)
if AUTHSERVER_PASSWORD_RESET_TTL > 86_400:
    config_fail("AUTHSERVER_PASSWORD_RESET_TTL", "must be at most 86400 (one day)")
# Reset requests per submitted address/username, and per client IP, per window (every request
# counts, whether or not the account exists). 100 per IP and hour: an office of hundreds behind
# one NAT address does not forget that many passwords in an hour; a bot probing names does.
AUTHSERVER_PASSWORD_RESET_WINDOW_SECONDS = _int(
    "AUTHSERVER_PASSWORD_RESET_WINDOW_SECONDS", 3600, minimum=60
)
AUTHSERVER_PASSWORD_RESET_PER_LOGIN = _int("AUTHSERVER_PASSWORD_RESET_PER_LOGIN", 3, minimum=1)
AUTHSERVER_PASSWORD_RESET_PER_IP = _int("AUTHSERVER_PASSWORD_RESET_PER_IP", 100, minimum=1)

# --- Hosted pages (accounts/views.py) -------------------------------------------------------
# Where login_required / redirect_to_login send a visitor who is not signed in.
LOGIN_URL = "login"

# --- OAuth 2.0 / OpenID Connect (oauth/) ---------------------------------------------------
# Lifetime of ID tokens. Signed with the same keys, so bounded like every signed token.
AUTHSERVER_ID_TOKEN_TTL = _at_most(
    "AUTHSERVER_ID_TOKEN_TTL",
    _int("AUTHSERVER_ID_TOKEN_TTL", min(600, AUTHSERVER_SIGNED_TOKEN_MAX_LIFETIME), minimum=60),
    AUTHSERVER_SIGNED_TOKEN_MAX_LIFETIME,
)

# --- REST framework -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["authserver.parsers.BoundedJSONParser"],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "authserver.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "authserver API",
    "DESCRIPTION": "authserver's HTTP API: the first-party sign-in API (login, refresh-token "
    "rotation, logout, profile and sessions) and the OAuth 2.0 / OpenID Connect back channel "
    "(token, revocation, introspection, userinfo, discovery, JWKS). Errors are "
    '{"error", "error_description"} (RFC 6749 §5.2 style) everywhere.',
    # The OAuth endpoints (plain Django views) and the tags by area: oauth/openapi.py.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "oauth.openapi.openapi_add_oauth",
    ],
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI assets from drf-spectacular-sidecar, served by us: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
# Who may read the OpenAPI schema and Swagger UI (authserver/api_docs.py): "public", "staff"
# (signed-in staff accounts) or "off". "on" means public in development and staff in production.
_api_docs = (_str("AUTHSERVER_API_DOCS", "off" if PRODUCTION else "public") or "").lower()
if _api_docs == "on":
    _api_docs = "staff" if PRODUCTION else "public"
if _api_docs not in {"off", "staff", "public"}:
    config_fail("AUTHSERVER_API_DOCS", f"must be off, staff, public or on, got {_api_docs!r}")
AUTHSERVER_API_DOCS = _api_docs
del _api_docs
# Request bodies of the JSON API are small; refuse anything larger than this.
DATA_UPLOAD_MAX_MEMORY_SIZE = 256 * 1024

# --- Metrics and process model (authserver/metrics.py, deploy/gunicorn.conf.py) -------------
# /metrics answers clients whose address (same proxy policy as the rate limiter) is in this list,
# or that send `Authorization: Bearer <AUTHSERVER_METRICS_TOKEN>`; with neither set it is off.
AUTHSERVER_METRICS_ALLOWED_IPS = _list("AUTHSERVER_METRICS_ALLOWED_IPS", ["127.0.0.1", "::1"])
for _entry in AUTHSERVER_METRICS_ALLOWED_IPS:
    try:
        ipaddress.ip_network(_entry, strict=False)
    except ValueError:
        config_fail("AUTHSERVER_METRICS_ALLOWED_IPS", f"has {_entry!r}, which is not an IP or CIDR")
AUTHSERVER_METRICS_TOKEN = _str("AUTHSERVER_METRICS_TOKEN")
if AUTHSERVER_METRICS_TOKEN is not None and len(AUTHSERVER_METRICS_TOKEN) < 32:
    config_fail("AUTHSERVER_METRICS_TOKEN", "must be at least 32 characters (a random secret)")
# The per-instance folder where gunicorn workers share metric values: deploy/gunicorn.conf.py
# hands it to prometheus-client as PROMETHEUS_MULTIPROC_DIR (a temporary folder when unset), so
# management commands, which do not set that, never write metric files.
AUTHSERVER_METRICS_DIR = _str("AUTHSERVER_METRICS_DIR")
_multiproc_dir = _str("PROMETHEUS_MULTIPROC_DIR")
if _multiproc_dir is not None and not Path(_multiproc_dir).is_dir():
    config_fail(
        "PROMETHEUS_MULTIPROC_DIR",
        f"names {_multiproc_dir!r}, which is not a directory (leave it unset: "
        "deploy/gunicorn.conf.py sets it from AUTHSERVER_METRICS_DIR)",
    )
del _multiproc_dir
# Read by deploy/gunicorn.conf.py only (the app never looks at them).
AUTHSERVER_BIND = _list("AUTHSERVER_BIND", ["127.0.0.1:8000"])
AUTHSERVER_WORKERS = _int("AUTHSERVER_WORKERS", 0)  # 0: one per available CPU, at most 16
AUTHSERVER_THREADS = _int("AUTHSERVER_THREADS", 4, minimum=1)
AUTHSERVER_WORKER_TIMEOUT = _int("AUTHSERVER_WORKER_TIMEOUT", 30, minimum=5)
AUTHSERVER_GRACEFUL_TIMEOUT = _int("AUTHSERVER_GRACEFUL_TIMEOUT", 25, minimum=1)
AUTHSERVER_KEEPALIVE = _int("AUTHSERVER_KEEPALIVE", 5, minimum=1)
AUTHSERVER_MAX_REQUESTS = _int("AUTHSERVER_MAX_REQUESTS", 0)
# --- Database timeouts (issue 19.3) ----------------------------------------------------------
# Serving processes (gunicorn, runserver) give every PostgreSQL connection a statement_timeout
# and a lock_timeout (the `options` startup parameter), and wait for any one answer of the
# server at most the statement timeout plus CLIENT_TIMEOUT_MARGIN_MS on the client side
# (authserver/db/base.py): a server that stops answering altogether (paused, a dead host, a
# network partition) enforces no timeout of its own. Either way the request ends in 503
# `temporarily_unavailable` within about two seconds instead of holding a thread. Management
# commands (migrate, the purges, key rotation: manage.py marks them) use the
# AUTHSERVER_DB_COMMAND_* values instead, by default no limit (PostgreSQL's own default).
CLIENT_TIMEOUT_MARGIN_MS = 500


def _timeout_ms(name: str, default: int) -> int:
    value = _int(name, default, minimum=1)  # zero or negative: refused
    if value + CLIENT_TIMEOUT_MARGIN_MS >= AUTHSERVER_WORKER_TIMEOUT * 1000:
        config_fail(
            name,
            f"must be below AUTHSERVER_WORKER_TIMEOUT ({AUTHSERVER_WORKER_TIMEOUT} s) minus "
            f"{CLIENT_TIMEOUT_MARGIN_MS} ms, got {value} ms",
        )
    return value


def _command_timeout_ms(name: str) -> int:
    return _int(name, 0, minimum=0)  # 0: no limit


AUTHSERVER_DB_STATEMENT_TIMEOUT_MS = _timeout_ms("AUTHSERVER_DB_STATEMENT_TIMEOUT_MS", 1500)
AUTHSERVER_DB_LOCK_TIMEOUT_MS = _timeout_ms("AUTHSERVER_DB_LOCK_TIMEOUT_MS", 1000)
AUTHSERVER_DB_COMMAND_STATEMENT_TIMEOUT_MS = _command_timeout_ms(
    "AUTHSERVER_DB_COMMAND_STATEMENT_TIMEOUT_MS"
)
AUTHSERVER_DB_COMMAND_LOCK_TIMEOUT_MS = _command_timeout_ms("AUTHSERVER_DB_COMMAND_LOCK_TIMEOUT_MS")
if "connect_timeout" in DATABASES["default"].get("OPTIONS", {}) and _engine.endswith("postgresql"):
    _connect = int(DATABASES["default"]["OPTIONS"]["connect_timeout"])
    if _connect >= AUTHSERVER_WORKER_TIMEOUT:
        config_fail(
            "DATABASE_CONNECT_TIMEOUT",
            f"must be below AUTHSERVER_WORKER_TIMEOUT ({AUTHSERVER_WORKER_TIMEOUT} s), "
            f"got {_connect}",
        )
# manage.py sets this for every command but runserver.
AUTHSERVER_MANAGEMENT_COMMAND = env.str("_AUTHSERVER_MANAGEMENT_COMMAND", default="") == "1"
if _engine.endswith("postgresql"):
    if AUTHSERVER_MANAGEMENT_COMMAND:
        _statement_ms = AUTHSERVER_DB_COMMAND_STATEMENT_TIMEOUT_MS
        _lock_ms = AUTHSERVER_DB_COMMAND_LOCK_TIMEOUT_MS
    else:
        _statement_ms = AUTHSERVER_DB_STATEMENT_TIMEOUT_MS
        _lock_ms = AUTHSERVER_DB_LOCK_TIMEOUT_MS
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    _options["options"] = (
        _options.get("options", "") + f" -c statement_timeout={_statement_ms}"
        f" -c lock_timeout={_lock_ms}"
    ).strip()
    # Read by authserver/db/base.py: the longest wait for one answer of the server (0: none).
    DATABASES["default"]["CLIENT_TIMEOUT_MS"] = (
        _statement_ms + CLIENT_TIMEOUT_MARGIN_MS if _statement_ms else 0
    )
    del _statement_ms, _lock_ms, _options

if AUTHSERVER_WORKERS > 64:
    config_fail("AUTHSERVER_WORKERS", f"must be at most 64, got {AUTHSERVER_WORKERS}")
if AUTHSERVER_THREADS > 64:
    config_fail("AUTHSERVER_THREADS", f"must be at most 64, got {AUTHSERVER_THREADS}")
# Password hashing per process (accounts/hash_gate.py): at most this many threads hash at once
# and at most AUTHSERVER_PASSWORD_HASH_QUEUE more wait for a slot; further sign-ins get 503 at
# once. The defaults together take at most half of the threads: a sign-in flood leaves the other
# half to refresh, token, JWKS and the probes.
AUTHSERVER_PASSWORD_HASH_CONCURRENCY = _int(
    "AUTHSERVER_PASSWORD_HASH_CONCURRENCY", max(1, AUTHSERVER_THREADS // 4), minimum=1
)
AUTHSERVER_PASSWORD_HASH_QUEUE = _int(
    "AUTHSERVER_PASSWORD_HASH_QUEUE",
    max(0, AUTHSERVER_THREADS // 2 - AUTHSERVER_PASSWORD_HASH_CONCURRENCY),
)
if AUTHSERVER_PASSWORD_HASH_CONCURRENCY > 64:
    config_fail(
        "AUTHSERVER_PASSWORD_HASH_CONCURRENCY",
        f"must be at most 64, got {AUTHSERVER_PASSWORD_HASH_CONCURRENCY}",
    )
if AUTHSERVER_PASSWORD_HASH_QUEUE > 256:
    config_fail(
        "AUTHSERVER_PASSWORD_HASH_QUEUE",
        f"must be at most 256, got {AUTHSERVER_PASSWORD_HASH_QUEUE}",
    )
if not AUTHSERVER_BIND:
    config_fail("AUTHSERVER_BIND", "must name at least one address")
for _entry in AUTHSERVER_BIND:
    if not (_entry.startswith(("unix:", "fd://")) or _entry.rpartition(":")[2].isdigit()):
        config_fail("AUTHSERVER_BIND", f"has {_entry!r}; use HOST:PORT, unix:PATH or fd://N")
    # A Unix-socket peer has no address: unless it is a trusted proxy whose X-Forwarded-For names
    # the client, every client would share one login throttle bucket (one attacker would block
    # sign-in for everyone) and the audit trail would lose their addresses.
    if _entry.startswith("unix:") and "unix" not in {p.lower() for p in AUTHSERVER_TRUSTED_PROXIES}:
        config_fail(
            "AUTHSERVER_BIND",
            f"has {_entry!r}, but AUTHSERVER_TRUSTED_PROXIES does not contain 'unix' (the proxy "
            "on the socket, which must set X-Forwarded-For); add it, or bind HOST:PORT",
        )
del _entry

# Django's error pages (404, 500, 403, 400 from authserver.urls) and the CSRF failure page get
# the hosted pages' Content-Security-Policy (authserver/pages.py).
CSRF_FAILURE_VIEW = "authserver.pages.csrf_failure"

# --- Logging: one line per record on stderr; never request bodies --------------------------
LOG_LEVEL = (_str("AUTHSERVER_LOG_LEVEL", "INFO") or "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    config_fail("AUTHSERVER_LOG_LEVEL", f"must be a logging level name, got {LOG_LEVEL!r}")
# "json": one JSON object per line (log pipelines); "plain": readable lines for development.
_log_format = _str("AUTHSERVER_LOG_FORMAT", "json" if PRODUCTION else "plain") or ""
AUTHSERVER_LOG_FORMAT = _log_format.lower()
if AUTHSERVER_LOG_FORMAT not in {"json", "plain"}:
    config_fail("AUTHSERVER_LOG_FORMAT", f"must be 'json' or 'plain', got {_log_format!r}")
del _log_format
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Every record carries the id of the request it was logged in (authserver/logs.py).
    "filters": {
        "request_id": {"()": "authserver.logs.RequestIdFilter"},
        "redact_query": {"()": "authserver.logs.QueryStringRedactor"},
    },
    "formatters": {
        "main": {
            "()": "authserver.logs.JsonFormatter"
            if AUTHSERVER_LOG_FORMAT == "json"
            else "authserver.logs.PlainFormatter"
        }
    },
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "main", "filters": ["request_id"]}
    },
    "root": {"handlers": ["stderr"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # authlib logs issued tokens at DEBUG (e.g. "Issue token %r"); never let them through.
        "authlib": {"level": "WARNING"},
        # Django logs every 4xx response as a warning ("Unauthorized: /oauth/token"). The access
        # log has each request's status already; a warning per bad request would let a flood of
        # them write a second unbounded stream (issue 14.4). 5xx are still logged here.
        "django.request": {"level": "ERROR"},
        # runserver (`make run`) logs each request line, query string included.
        "django.server": {"filters": ["redact_query"]},
    },
}
