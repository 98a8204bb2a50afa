"""Typed, call-time view of authserver's own settings.

App code calls `get_config()` instead of reading `django.conf.settings` attributes or the
environment; it is rebuilt from settings on every call, so test overrides take effect.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings


@dataclass(frozen=True, slots=True)
class Config:
    mode: str
    issuer: str
    trusted_proxies: tuple[str, ...]

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

    @property
    def production(self) -> bool:
        return self.mode == "production"


def get_config() -> Config:
    return Config(
        mode=settings.AUTHSERVER_MODE,
        issuer=settings.AUTHSERVER_ISSUER,
        trusted_proxies=tuple(settings.AUTHSERVER_TRUSTED_PROXIES),
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
    )
