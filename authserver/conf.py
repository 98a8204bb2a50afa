"""Typed, call-time view of authserver's own settings.

App code calls `get_config()` instead of reading `django.conf.settings` attributes or the
environment; it is rebuilt from settings on every call, so test overrides take effect.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True, slots=True)
class Config:
    mode: str
    issuer: str
    trusted_proxies: tuple[str, ...]

    @property
    def production(self) -> bool:
        return self.mode == "production"


def get_config() -> Config:
    return Config(
        mode=settings.AUTHSERVER_MODE,
        issuer=settings.AUTHSERVER_ISSUER,
        trusted_proxies=tuple(settings.AUTHSERVER_TRUSTED_PROXIES),
    )
