"""Login throttle and progressive lockout, kept in the shared default cache.

Two layers (README "Login protection and audit"):

- failure budgets: per client IP (IPv6 per /64) and per submitted login name (normalised, whether
  or not the account exists), at most AUTHSERVER_LOGIN_THROTTLE_PER_IP / _PER_LOGIN failed
  attempts in a fixed window of AUTHSERVER_LOGIN_THROTTLE_WINDOW_SECONDS. Only failures count:
  a user signing in many times, or many people behind one office NAT, never spend a budget.
  Each attempt reserves a slot with an atomic increment *before* any password is checked, so an
  attempt over the budget costs no hash and parallel attempts cannot slip past it together;
  a successful sign-in gives its slot back (login_budget_release), a failed one keeps it.
- a lockout per real account: AUTHSERVER_LOCKOUT_THRESHOLD consecutive wrong passwords lock it for
  AUTHSERVER_LOCKOUT_BASE_SECONDS, doubling for each further lockout up to
  AUTHSERVER_LOCKOUT_MAX_SECONDS. Failures and the lockout level are forgotten after
  AUTHSERVER_LOCKOUT_RESET_SECONDS without a failure, or at the next successful login.

The state must be shared by every worker and instance, so it lives in the default cache (Redis,
or the database cache table). Any cache error raises CacheUnavailable; the login service turns
that into a refusal (fail closed), never into "no limit".
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
    cache_guard,
    counter_decr,
    counter_incr,
    shared_cache,
    window_at,
)

logger = logging.getLogger(__name__)

# Cache entries outlive their window by this much, so a slightly skewed clock between instances
# never reads a window that has already expired.
_TTL_SLACK_SECONDS = 60
_HMAC_SALT = "authserver.accounts.throttling"
IPV6_PREFIX = 64


@dataclass(frozen=True, slots=True)
class ThrottleHit:
    """An attempt refused because a failure budget is spent. `first` is true for the first
    refusal of that budget in its window (the one the audit trail records)."""

    scope: str  # "ip" or "login"
    retry_after: int
    first: bool


@dataclass(frozen=True, slots=True)
class BudgetReservation:
    """The slots one attempt holds in the failure budgets while its password is checked: kept
    if it fails, given back with login_budget_release if it succeeds."""

    keys: tuple[str, ...]
    ttl: int


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


def _ip_key(ip: str, index: int) -> str:
    return f"login:ip:{index}:{_digest(ip_bucket(ip))}"


def _login_key(login: str, index: int) -> str:
    return f"login:name:{index}:{login_digest(login)}"


def _refused_key(key: str) -> str:
    return f"{key}:refused"


def _refusal_first(key: str, ttl: int) -> bool:
    """True exactly once per budget and window: SET NX of a marker beside the counter."""
    with cache_guard():
        return bool(shared_cache().add(_refused_key(key), 1, ttl))


def login_budget_reserve(*, ip: str, login: str, now: datetime) -> BudgetReservation | ThrottleHit:
    """Reserve one slot in the IP's and in the login name's failure budget for this attempt, or
    say which budget is spent.

    Called before any password work. The increment is the check: a slot is taken atomically and
    the attempt goes on only if the count stays within the limit, so of N parallel attempts
    against a budget with k slots left at most k get a password check, whatever the
    interleaving (exactly k if they all fail). A refused
    attempt gives back what it took: it is not a failure (no password was checked), and a client
    hammering a name whose budget is spent must not use up its IP's budget (the office NAT
    whose other users would pay for it)."""
    config = get_config()
    index, remaining = window_at(now, config.login_throttle_window_seconds)
    ttl = remaining + _TTL_SLACK_SECONDS
    budgets = (
        ("ip", _ip_key(ip, index), config.login_throttle_per_ip),
        ("login", _login_key(login, index), config.login_throttle_per_login),
    )
    taken: list[str] = []
    for scope, key, limit in budgets:
        taken.append(key)
        if counter_incr(key, ttl) > limit:
            for held in taken:
                counter_decr(held, ttl)
            return ThrottleHit(scope=scope, retry_after=remaining, first=_refusal_first(key, ttl))
    return BudgetReservation(keys=tuple(taken), ttl=ttl)


def login_budget_release(reservation: BudgetReservation) -> None:
    """After a successful sign-in: give its slots back, so only failures spend the budgets."""
    for key in reservation.keys:
        counter_decr(key, reservation.ttl)


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
        cache.set(until_key, locked_until.timestamp(), seconds + _TTL_SLACK_SECONDS)
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
    budgets = [_login_key(name, index) for name in names]
    with cache_guard():
        shared_cache().delete_many([*_lock_keys(user), *budgets, *map(_refused_key, budgets)])
    return was_locked
