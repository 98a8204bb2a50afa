"""Typed, call-time view of authserver's own settings.

App code calls `get_config()` instead of reading `django.conf.settings` attributes or the
environment. It is built once and rebuilt after any setting changes (Django's `setting_changed`
signal, sent by override_settings and pytest-django's `settings` fixture), so test overrides take
effect. Building it reads some forty lazy settings: doing that on every call cost about 0.1 ms,
several times per token request (bench/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver


@dataclass(frozen=True, slots=True)
class Config:
    mode: str
    issuer: str
    trusted_proxies: tuple[str, ...]
    # Sessions and refresh tokens (sessions/services.py)
    session_max_age: int
    session_idle_timeout: int
    refresh_reuse_grace_seconds: int
    refresh_token_transport: str
    session_retention_days: int
    # A browser sign-in's lifetime (SESSION_COOKIE_AGE, AUTHSERVER_BROWSER_SESSION_SECONDS)
    browser_session_seconds: int
    # How recent a password check the account pages' sensitive actions need (accounts/account_*)
    reauth_max_age: int
    # Audit trail (audit/, oauth/client_auth.py)
    audit_retention_days: int
    client_auth_audit_window_seconds: int
    # Login protection (accounts/throttling.py)
    login_throttle_window_seconds: int
    login_throttle_per_ip: int
    login_throttle_per_login: int
    lockout_threshold: int
    lockout_base_seconds: int
    lockout_max_seconds: int
    lockout_reset_seconds: int
    # Sign-up and email verification (accounts/registration.py, accounts/verification.py)
    registration: str
    registration_require_verified: bool
    registration_email_domains: tuple[str, ...]
    registration_throttle_per_ip: int
    registration_throttle_window_seconds: int
    email_verify_link_seconds: int
    invite_link_seconds: int
    # Password hashing bound per process (accounts/hash_gate.py)
    password_hash_concurrency: int
    password_hash_queue: int
    # Signing keys and access tokens (tokens/). The KEKs never appear in repr().
    key_encryption_key: bytes = field(repr=False)
    key_encryption_key_fallbacks: tuple[bytes, ...] = field(repr=False)
    signing_alg: str
    rsa_key_size: int
    access_token_ttl: int
    signed_token_max_lifetime: int
    token_leeway: int
    default_audience: str
    jwks_max_age: int
    key_cache_seconds: int
    key_rotation_days: int
    key_activation_delay: int
    # Metrics (authserver/metrics.py). The scrape token never appears in repr().
    metrics_allowed_ips: tuple[str, ...]
    metrics_token: str | None = field(repr=False)
    # OAuth 2.0 / OpenID Connect (oauth/)
    id_token_ttl: int
    # OpenAPI schema and docs (authserver/api_docs.py): "off", "staff" or "public"
    api_docs: str

    @property
    def production(self) -> bool:
        return self.mode == "production"


_config: Config | None = None


def get_config() -> Config:
    config = _config
    if config is None:
        config = _config_build()
    return config


@receiver(setting_changed)
def _config_forget(**kwargs) -> None:
    global _config  # noqa: PLW0603
    _config = None


def _config_build() -> Config:
    global _config  # noqa: PLW0603
    _config = Config(
        mode=settings.AUTHSERVER_MODE,
        issuer=settings.AUTHSERVER_ISSUER,
        trusted_proxies=tuple(settings.AUTHSERVER_TRUSTED_PROXIES),
        session_max_age=settings.AUTHSERVER_SESSION_MAX_AGE,
        session_idle_timeout=settings.AUTHSERVER_SESSION_IDLE_TIMEOUT,
        refresh_reuse_grace_seconds=settings.AUTHSERVER_REFRESH_REUSE_GRACE_SECONDS,
        refresh_token_transport=settings.AUTHSERVER_REFRESH_TOKEN_TRANSPORT,
        session_retention_days=settings.AUTHSERVER_SESSION_RETENTION_DAYS,
        browser_session_seconds=settings.SESSION_COOKIE_AGE,
        reauth_max_age=settings.AUTHSERVER_REAUTH_MAX_AGE,
        audit_retention_days=settings.AUTHSERVER_AUDIT_RETENTION_DAYS,
        client_auth_audit_window_seconds=settings.AUTHSERVER_CLIENT_AUTH_AUDIT_WINDOW_SECONDS,
        login_throttle_window_seconds=settings.AUTHSERVER_LOGIN_THROTTLE_WINDOW_SECONDS,
        login_throttle_per_ip=settings.AUTHSERVER_LOGIN_THROTTLE_PER_IP,
        login_throttle_per_login=settings.AUTHSERVER_LOGIN_THROTTLE_PER_LOGIN,
        lockout_threshold=settings.AUTHSERVER_LOCKOUT_THRESHOLD,
        lockout_base_seconds=settings.AUTHSERVER_LOCKOUT_BASE_SECONDS,
        lockout_max_seconds=settings.AUTHSERVER_LOCKOUT_MAX_SECONDS,
        lockout_reset_seconds=settings.AUTHSERVER_LOCKOUT_RESET_SECONDS,
        registration=settings.AUTHSERVER_REGISTRATION,
        registration_require_verified=settings.AUTHSERVER_REGISTRATION_REQUIRE_VERIFIED,
        registration_email_domains=tuple(settings.AUTHSERVER_REGISTRATION_EMAIL_DOMAINS),
        registration_throttle_per_ip=settings.AUTHSERVER_REGISTRATION_THROTTLE_PER_IP,
        registration_throttle_window_seconds=(
            settings.AUTHSERVER_REGISTRATION_THROTTLE_WINDOW_SECONDS
        ),
        email_verify_link_seconds=settings.AUTHSERVER_EMAIL_VERIFY_LINK_SECONDS,
        invite_link_seconds=settings.AUTHSERVER_INVITE_LINK_SECONDS,
        password_hash_concurrency=settings.AUTHSERVER_PASSWORD_HASH_CONCURRENCY,
        password_hash_queue=settings.AUTHSERVER_PASSWORD_HASH_QUEUE,
        key_encryption_key=settings.AUTHSERVER_KEY_ENCRYPTION_KEY,
        key_encryption_key_fallbacks=tuple(settings.AUTHSERVER_KEY_ENCRYPTION_KEY_FALLBACKS),
        signing_alg=settings.AUTHSERVER_SIGNING_ALG,
        rsa_key_size=settings.AUTHSERVER_RSA_KEY_SIZE,
        access_token_ttl=settings.AUTHSERVER_ACCESS_TOKEN_TTL,
        signed_token_max_lifetime=settings.AUTHSERVER_SIGNED_TOKEN_MAX_LIFETIME,
        token_leeway=settings.AUTHSERVER_TOKEN_LEEWAY,
        default_audience=settings.AUTHSERVER_DEFAULT_AUDIENCE,
        jwks_max_age=settings.AUTHSERVER_JWKS_MAX_AGE,
        key_cache_seconds=settings.AUTHSERVER_KEY_CACHE_SECONDS,
        key_rotation_days=settings.AUTHSERVER_KEY_ROTATION_DAYS,
        key_activation_delay=settings.AUTHSERVER_KEY_ACTIVATION_DELAY,
        metrics_allowed_ips=tuple(settings.AUTHSERVER_METRICS_ALLOWED_IPS),
        metrics_token=settings.AUTHSERVER_METRICS_TOKEN,
        id_token_ttl=settings.AUTHSERVER_ID_TOKEN_TTL,
        api_docs=settings.AUTHSERVER_API_DOCS,
    )
    return _config
