"""Login throttle and progressive lockout, kept in the shared default cache.

Two layers (README "Login protection and audit"):

- a rate throttle: every login attempt is counted, before any password is checked, per client IP
  (IPv6 per /64) and per submitted login name (normalised, whether or not the account exists),
  in fixed windows of AUTHSERVER_LOGIN_THROTTLE_WINDOW_SECONDS. Counting the attempt first with
  an atomic increment means parallel requests cannot slip past the limit together.
- a lockout per real account: AUTHSERVER_LOCKOUT_THRESHOLD consecutive wrong passwords lock it for
  AUTHSERVER_LOCKOUT_BASE_SECONDS, doubling for each further lockout up to
  AUTHSERVER_LOCKOUT_MAX_SECONDS. Failures and the lockout level are forgotten after
  AUTHSERVER_LOCKOUT_RESET_SECONDS without a failure, or at the next successful login.

The state must be shared by every worker and instance, so it lives in the default cache (Redis,
or the database cache table). Any cache error raises CacheUnavailable; the login service turns
that into a refusal (fail closed), never into "no limit". The windowed counters themselves are
authserver/counters.py, shared with the client-authentication audit (oauth/client_auth.py).
"""

from __future__ import annotations

import ipaddress
import logging
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils.crypto import salted_hmac

from authserver.conf import get_config
from authserver.counters import (
    TTL_SLACK_SECONDS,
    CacheUnavailable,  # noqa: F401 - re-exported: the login service and the admin catch it
    cache_guard,
    counter_incr,
    shared_cache,
    window_at,
    window_count,
    window_key,
)

logger = logging.getLogger(__name__)

_HMAC_SALT = "authserver.accounts.throttling"
IPV6_PREFIX = 64


@dataclass(frozen=True, slots=True)
class ThrottleHit:
    """An attempt over a rate limit. `first` is true for the one attempt that crossed it."""

    scope: str  # "ip" or "login"
    retry_after: int
    first: bool


@dataclass(frozen=True, slots=True)
class LockoutStatus:
    locked_until: datetime | None
    failures: int
    level: int

    @property
    def locked(self) -> bool:
        return self.locked_until is not None


@dataclass(frozen=True, slots=True)
class LockoutStarted:
    locked_until: datetime
    seconds: int
    level: int


def login_normalize(login: str) -> str:
    """The form of a login name used for lookups and throttle buckets (NFKC, case-folded)."""
    return unicodedata.normalize("NFKC", login or "").strip().casefold()


def _digest(value: str) -> str:
    return salted_hmac(_HMAC_SALT, value, algorithm="sha256").hexdigest()[:32]


def login_digest(login: str) -> str:
    """A keyed, non-reversible tag of a login name, for cache keys and audit details.

    It lets an admin correlate attempts against one name without the trail storing what was
    typed (people type passwords into the username field)."""
    return _digest(login_normalize(login))


def ip_bucket(ip: str) -> str:
    """The throttle bucket of an IP: the address, or its /64 for IPv6 (one subscriber's
    allocation, which an attacker can cycle through freely)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return "unknown"
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False))
    return str(address)


_IP_COUNTER = "login:ip"
_LOGIN_COUNTER = "login:name"


def _login_key(login: str, index: int) -> str:
    return window_key(_LOGIN_COUNTER, index, login_digest(login))


def login_rate_check(*, ip: str, login: str, now: datetime) -> ThrottleHit | None:
    """Count this attempt against the IP's and the login name's limits; the first limit it
    exceeds, or None. An attempt refused on its IP is not counted against the login name."""
    config = get_config()
    buckets = (
        ("ip", _IP_COUNTER, _digest(ip_bucket(ip)), config.login_throttle_per_ip),
        ("login", _LOGIN_COUNTER, login_digest(login), config.login_throttle_per_login),
    )
    for scope, name, bucket, limit in buckets:
        counted = window_count(
            name=name, bucket=bucket, window_seconds=config.login_throttle_window_seconds, now=now
        )
        if counted.count > limit:
            return ThrottleHit(
                scope=scope, retry_after=counted.remaining, first=counted.count == limit + 1
            )
    return None


def _lock_keys(user) -> tuple[str, str, str]:
    base = f"lockout:{user.public_id}"
    return f"{base}:until", f"{base}:failures", f"{base}:level"


def login_lockout_status(*, user, now: datetime) -> LockoutStatus:
    until_key, failures_key, level_key = _lock_keys(user)
    with cache_guard():
        values = shared_cache().get_many([until_key, failures_key, level_key])
    until = values.get(until_key)
    locked_until = None
    if until is not None and float(until) > now.timestamp():
        locked_until = datetime.fromtimestamp(float(until), tz=now.tzinfo)
    return LockoutStatus(
        locked_until=locked_until,
        failures=int(values.get(failures_key) or 0),
        level=int(values.get(level_key) or 0),
    )


def login_failure_register(*, user, now: datetime) -> LockoutStarted | None:
    """Count a wrong password for `user`; start a lockout when this one reaches the threshold.

    Exactly one request sees the counter equal the threshold, so a burst of parallel failures
    starts one lockout (and one account.locked event), not several."""
    config = get_config()
    until_key, failures_key, level_key = _lock_keys(user)
    failures = counter_incr(failures_key, config.lockout_reset_seconds)
    if failures != config.lockout_threshold:
        return None
    level = counter_incr(level_key, config.lockout_reset_seconds)
    seconds = min(config.lockout_base_seconds * 2 ** min(level - 1, 32), config.lockout_max_seconds)
    locked_until = now + timedelta(seconds=seconds)
    with cache_guard():
        cache = shared_cache()
        cache.set(until_key, locked_until.timestamp(), seconds + TTL_SLACK_SECONDS)
        cache.delete(failures_key)
    return LockoutStarted(locked_until=locked_until, seconds=seconds, level=level)


def login_failures_reset(*, user) -> None:
    """After a successful login: forget the failures and the lockout level."""
    _, failures_key, level_key = _lock_keys(user)
    with cache_guard():
        shared_cache().delete_many([failures_key, level_key])


def login_lockout_reset(*, user, now: datetime) -> bool:
    """Lift a lockout and forget failures, level, and this window's throttle count for the
    account's username and email. True if the account was locked."""
    was_locked = login_lockout_status(user=user, now=now).locked
    index, _ = window_at(now, get_config().login_throttle_window_seconds)
    names = {name for name in (user.username, user.email) if name}
    with cache_guard():
        shared_cache().delete_many(
            [*_lock_keys(user), *(_login_key(name, index) for name in names)]
        )
    return was_locked
