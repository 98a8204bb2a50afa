"""The signing-key store as each process sees it: an in-process key ring, kept in step with the
database (the source of truth) through a generation token in the shared cache.

Hot path: `active_signing_key()`, `published_key()` and `jwks_document()` read an immutable
snapshot held in process memory; they query neither the database nor (more than once a second)
the cache. Freshness, per process:

- at most once a second the snapshot compares its generation token with the shared cache; every
  change of key state (tokens/rotation.py) writes a new token after its transaction commits, so
  a rotation or revocation on any instance reaches every worker within about a second;
- whatever the cache says, a snapshot older than AUTHSERVER_KEY_CACHE_SECONDS (60 s) is reloaded,
  so a lost or unreachable cache delays propagation by at most that;
- timed transitions (a next key's `activate_at`, a retired key's `remove_after`, a rotation made
  due by AUTHSERVER_KEY_ROTATION_DAYS) are read from the snapshot; the first process that sees one
  due performs it under the store's lock (tokens/rotation.py) and the others follow.

Private keys are decrypted and parsed once per process and kept by kid.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.core.cache import cache
from django.db import DatabaseError
from django.utils import timezone
from rest_framework import status
from rest_framework.exceptions import APIException

from authserver.conf import get_config
from tokens.backends import SigningKeyBackend
from tokens.jwk import (
    JwkError,
    PrivateKey,
    PublicKey,
    jwk_thumbprint,
    private_key_from_der,
    public_jwk,
    public_key_from_jwk,
)
from tokens.kek import WRONG_KEK_REASON, KeyDecryptError, kek_held, private_key_open
from tokens.models import SigningKey

logger = logging.getLogger("authserver.keys")

GENERATION_CACHE_KEY = "tokens:signing-keys:generation"
CHECK_INTERVAL_SECONDS = 1.0
# After a failed automatic transition, wait this long before trying again in this process.
MAINTENANCE_RETRY_SECONDS = 5.0
# After a reload found the database unreachable, the last snapshot is served this long before
# the next attempt.
DATABASE_RETRY_SECONDS = 4.0

# Test seam: the monotonic clock behind the check interval and the snapshot age.
clock = time.monotonic


class KeyStoreUnavailable(APIException):
    """Signing (or the JWKS) is unavailable: DRF views answer 503 (authserver.errors renders
    `temporarily_unavailable`).

    `reason` names the cause for operators (readiness probe, logs, management commands); it
    never contains key material. The response body stays generic.
    """

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "temporarily_unavailable"

    def __init__(self, reason: str):
        super().__init__("Signing keys are unavailable; try again later.")
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True)
class PublishedKey:
    kid: str
    alg: str
    state: str
    jwk: dict[str, str]  # kty, kid, use, alg + public members: exactly what the JWKS serves
    backend: SigningKeyBackend = field(repr=False)
    created_at: datetime
    activate_at: datetime | None
    activated_at: datetime | None
    remove_after: datetime | None


@dataclass(frozen=True)
class ActiveKey:
    kid: str
    alg: str
    backend: SigningKeyBackend = field(repr=False)  # holds the parsed private key


@dataclass
class KeyRing:
    generation: str | None
    loaded_at: float
    checked_at: float
    keys: dict[str, PublishedKey]
    active: ActiveKey | None
    # Why signing is unavailable although the JWKS is served (no active key, cannot decrypt).
    signing_problem: str | None
    # Why nothing is served (the database cannot be read).
    error: str | None
    warnings: tuple[str, ...]
    # kid -> why the row is left out of the JWKS and the signing keys (not sound).
    unusable: dict[str, str]
    # Why this process must not change the key store (another KEK than the store's), if so.
    changes_refused: str | None
    due_at: datetime | None
    jwks_body: bytes
    etag: str


_lock = threading.RLock()
_ring: KeyRing | None = None
_private_keys: dict[str, PrivateKey] = {}
# kid -> the retired key's ciphertext last seen to authenticate (never the plaintext).
_sealed_ok: dict[str, bytes] = {}
_maintenance_not_before = 0.0
_logged_problems: set[str] = set()


@contextlib.contextmanager
def key_store_log_muted() -> Iterator[None]:
    """For commands that report the key store's state themselves, as their one line."""
    previous = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = previous


def keyring_reset() -> None:
    """Forget this process's snapshot and parsed private keys (tests; after local changes)."""
    global _ring, _maintenance_not_before  # noqa: PLW0603
    with _lock:
        _ring = None
        _private_keys.clear()
        _sealed_ok.clear()
        _maintenance_not_before = 0.0
        _logged_problems.clear()


def keyring_reset_snapshot() -> None:
    """Drop this process's snapshot (kept parsed private keys): the next call reloads."""
    global _ring  # noqa: PLW0603
    with _lock:
        _ring = None


def keyring_changed() -> None:
    """Tell every process that key state changed: a new generation token in the shared cache."""
    global _ring  # noqa: PLW0603
    try:
        cache.set(GENERATION_CACHE_KEY, secrets.token_hex(8), timeout=None)
    except Exception:  # noqa: BLE001 - any cache failure: other processes fall back to the TTL
        logger.warning("key store: cannot publish a new key generation to the shared cache")
    with _lock:
        _ring = None


def _generation() -> str | None:
    try:
        value = cache.get(GENERATION_CACHE_KEY)
        if value is None:
            cache.add(GENERATION_CACHE_KEY, secrets.token_hex(8), timeout=None)
            value = cache.get(GENERATION_CACHE_KEY)
    except Exception:  # noqa: BLE001 - any cache failure: fall back to the snapshot TTL
        return None
    return value


def _log_once(level: int, message: str) -> None:
    if message not in _logged_problems:
        _logged_problems.add(message)
        logger.log(level, "key store: %s", message)


def _keks() -> tuple[bytes, ...]:
    config = get_config()
    return (config.key_encryption_key, *config.key_encryption_key_fallbacks)


def _private_key(row: SigningKey) -> PrivateKey:
    """Decrypt and parse a row's private key once per process; check it matches the kid."""
    key = _private_keys.get(row.kid)
    if key is not None:
        return key
    der = private_key_open(
        row.private_key_ciphertext, kid=row.kid, sealed_with=row.kek_id, keks=_keks()
    )
    try:
        key = private_key_from_der(der)
        thumbprint = jwk_thumbprint(public_jwk(key))  # ValueError: a key type we never create
    except ValueError:
        raise KeyDecryptError("its decrypted private key does not parse") from None
    if thumbprint != row.kid:
        raise KeyDecryptError("its private key does not match its kid")
    _private_keys[row.kid] = key
    return key


def _sealed_check(row: SigningKey) -> None:
    """Check that a retired key's ciphertext authenticates (AES-GCM, bound to the kid), without
    parsing or keeping its private key: a row that does not was not sealed by this server for
    this kid. Checked once per process for each ciphertext."""
    sealed = bytes(row.private_key_ciphertext)
    if row.kid in _private_keys or _sealed_ok.get(row.kid) == sealed:
        return
    private_key_open(sealed, kid=row.kid, sealed_with=row.kek_id, keks=_keks())
    _sealed_ok[row.kid] = sealed


def store_change_refusal(rows: Iterable[SigningKey]) -> str | None:
    """Why this process must not create, activate, retire, remove or revoke keys, or None.

    Every change seals new keys with this process's KEK and decides for every instance which key
    signs. A process started with another KEK than the one that sealed the store's keys would
    hand signing to a key no correctly configured instance can decrypt: it must only read. The
    reference is the active key, else the newest published key; an empty store (first key) is
    anyone's to fill, under the store's lock.
    """
    rows = [row for row in rows if row.state in SigningKey.PUBLISHED_STATES]
    active = [row for row in rows if row.state == SigningKey.State.ACTIVE]
    candidates = active or sorted(rows, key=lambda row: row.created_at, reverse=True)
    if not candidates:
        return None
    reference = candidates[0]
    if kek_held(reference.kek_id, _keks()):
        return None
    return (
        "this process will not create, rotate or remove signing keys: "
        f"{reference.state} signing key {reference.kid} {WRONG_KEK_REASON.removeprefix('it ')}"
    )


def _public_key(row: SigningKey) -> PublicKey:
    """A row's public key, checked against its kid and alg; raises JwkError if unsound."""
    public_key = public_key_from_jwk(row.public_jwk)
    if jwk_thumbprint(row.public_jwk) != row.kid:
        raise JwkError("its public key does not match its kid")
    if _ALG_KTY.get(row.alg) != row.public_jwk["kty"]:
        raise JwkError("its algorithm does not fit its public key")
    return public_key


def signing_key_problem(row: SigningKey) -> str | None:
    """Why `row` cannot sign in this process (before it is made the active key), or None."""
    try:
        _public_key(row)
        _private_key(row)
    except JwkError as exc:
        return f"its public key is corrupt: {exc}"
    except KeyDecryptError as exc:
        return exc.reason
    return None


def _published(row: SigningKey, issuer: str, leeway: int) -> PublishedKey:
    """The JWKS entry and verifier of a row; raises JwkError if its public key is unsound."""
    public_key = _public_key(row)
    members = {name: value for name, value in row.public_jwk.items() if name != "kty"}
    jwk = {"kty": row.public_jwk["kty"], "kid": row.kid, "use": "sig", "alg": row.alg}
    jwk.update(sorted(members.items()))
    return PublishedKey(
        kid=row.kid,
        alg=row.alg,
        state=row.state,
        jwk=jwk,
        backend=SigningKeyBackend(
            kid=row.kid, alg=row.alg, verifying_key=public_key, issuer=issuer, leeway=leeway
        ),
        created_at=row.created_at,
        activate_at=row.activate_at,
        activated_at=row.activated_at,
        remove_after=row.remove_after,
    )


_ALG_KTY = {SigningKey.Algorithm.RS256: "RSA", SigningKey.Algorithm.ES256: "EC"}
_STATE_ORDER = {SigningKey.State.ACTIVE: 0, SigningKey.State.NEXT: 1, SigningKey.State.RETIRED: 2}


def _load(generation: str | None, *, now: datetime, create_first: bool) -> KeyRing:
    """Read the published rows into a snapshot.

    A row that is not sound (a malformed public JWK, or a ciphertext that does not authenticate
    under this server's KEK: altered, or planted without the KEK) is left out of the JWKS and
    the signing keys and reported in `unusable`; the others keep serving. If it is the active
    key, nothing signs. A row sealed with a KEK this process does not hold stays published
    (verification needs no private key) but cannot sign here.
    """
    config = get_config()
    mono = clock()
    rows = list(SigningKey.objects.filter(state__in=SigningKey.PUBLISHED_STATES))
    if not rows and create_first:
        from tokens.rotation import signing_key_create_first

        if not SigningKey.objects.exists():
            signing_key_create_first(now=now)
        # Read again either way: another process may have committed the first key since.
        rows = list(SigningKey.objects.filter(state__in=SigningKey.PUBLISHED_STATES))
    rows.sort(key=lambda r: (_STATE_ORDER[r.state], -r.created_at.timestamp()))

    keys: dict[str, PublishedKey] = {}
    unusable: dict[str, str] = {}
    active = None
    signing_problem = None
    warnings: list[str] = []
    for row in rows:
        try:
            published = _published(row, config.issuer, config.token_leeway)
            if row.state == SigningKey.State.RETIRED:
                _sealed_check(row)
            else:
                private = _private_key(row)  # a next key: decrypted now, so activation never waits
        except JwkError as exc:
            unusable[row.kid] = f"{row.state} signing key {row.kid} is corrupt: {exc}"
            continue
        except KeyDecryptError as exc:
            if not exc.wrong_kek:
                unusable[row.kid] = (
                    f"{row.state} signing key {row.kid} cannot be decrypted: {exc.reason}"
                )
                continue
            keys[row.kid] = published
            if row.state == SigningKey.State.ACTIVE:
                signing_problem = f"active signing key {row.kid} cannot be decrypted: {exc.reason}"
            elif row.state == SigningKey.State.NEXT:
                warnings.append(f"next signing key {row.kid} cannot be decrypted: {exc.reason}")
            continue
        keys[row.kid] = published
        if row.state == SigningKey.State.ACTIVE:
            active = ActiveKey(
                kid=row.kid,
                alg=row.alg,
                backend=SigningKeyBackend(
                    kid=row.kid,
                    alg=row.alg,
                    verifying_key=published.backend.verifying_key,
                    signing_key=private,
                    issuer=config.issuer,
                    leeway=config.token_leeway,
                ),
            )
    active_rows = [row for row in rows if row.state == SigningKey.State.ACTIVE]
    if active_rows and active_rows[0].kid in unusable:
        signing_problem = unusable[active_rows[0].kid]
    for row in rows:
        if row.kid in unusable and row.state != SigningKey.State.ACTIVE:
            warnings.append(unusable[row.kid] + " (left out of the JWKS)")
    if active is None and signing_problem is None:
        signing_problem = (
            "no active signing key (run `manage.py rotate_signing_keys --activate-now`)"
        )
    refusal = store_change_refusal(rows)

    body = json.dumps({"keys": [key.jwk for key in keys.values()]}, separators=(",", ":")).encode()
    return KeyRing(
        generation=generation,
        loaded_at=mono,
        checked_at=mono,
        keys=keys,
        active=active,
        signing_problem=signing_problem,
        error=None,
        warnings=tuple(warnings),
        unusable=unusable,
        changes_refused=refusal,
        # A process that may not change the store never performs a timed transition; it follows
        # the changes correctly configured instances make.
        due_at=None if refusal else _due_at(rows, unusable, config.key_rotation_days),
        jwks_body=body,
        etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
    )


def _due_at(
    rows: list[SigningKey], unusable: dict[str, str], rotation_days: int
) -> datetime | None:
    """The next moment a timed transition is due. A next key that is not sound is never due: it
    cannot be activated (an operator revokes it; see /readyz)."""
    moments = []
    has_next = False
    for row in rows:
        if row.state == SigningKey.State.NEXT:
            has_next = True
            if row.activate_at is not None and row.kid not in unusable:
                moments.append(row.activate_at)
        elif row.state == SigningKey.State.RETIRED and row.remove_after is not None:
            moments.append(row.remove_after)
    if rotation_days and not has_next:
        for row in rows:
            if row.state == SigningKey.State.ACTIVE and row.activated_at is not None:
                moments.append(row.activated_at + timedelta(days=rotation_days))
    return min(moments) if moments else None


def _failed_ring(generation: str | None, reason: str) -> KeyRing:
    mono = clock()
    return KeyRing(
        generation=generation,
        loaded_at=mono,
        checked_at=mono,
        keys={},
        active=None,
        signing_problem=reason,
        error=reason,
        warnings=(),
        unusable={},
        changes_refused=None,
        due_at=None,
        jwks_body=b"",
        etag="",
    )


_UNREAD = object()


def _reload(now: datetime, generation: object = _UNREAD) -> KeyRing:
    """Load a new snapshot; `generation` is the cache's token when the caller just read it."""
    global _ring  # noqa: PLW0603
    if generation is _UNREAD:
        generation = _generation()
    try:
        ring = _load(generation, now=now, create_first=True)
    except DatabaseError as exc:
        previous = _ring
        if previous is not None and previous.error is None:
            # The database is unreachable, so no key can have changed meanwhile: keep serving
            # the last sound snapshot (JWKS, signing, verification) and try again a few seconds
            # later, rather than answer 503 or hold threads on a stalled database.
            _log_once(
                logging.ERROR,
                f"key store reload failed ({exc.__class__.__name__}); serving the last snapshot",
            )
            previous.checked_at = clock() + DATABASE_RETRY_SECONDS
            return previous
        ring = _failed_ring(generation, f"database unavailable ({exc.__class__.__name__})")
    for problem in (ring.error, ring.signing_problem, *ring.warnings, ring.changes_refused):
        if problem:
            _log_once(logging.ERROR, problem)
    _ring = ring
    return ring


def _maintain(ring: KeyRing, now: datetime) -> KeyRing:
    """Perform a timed transition that this snapshot says is due, then reload."""
    global _maintenance_not_before  # noqa: PLW0603
    if clock() < _maintenance_not_before:
        return ring
    from tokens.rotation import SigningKeyError, signing_keys_maintain

    try:
        signing_keys_maintain(now=now)
    except SigningKeyError as exc:  # e.g. the store's KEK changed under this process: only read
        _maintenance_not_before = clock() + MAINTENANCE_RETRY_SECONDS
        _log_once(logging.ERROR, f"automatic key maintenance refused: {exc}")
        return ring
    except (DatabaseError, KeyStoreUnavailable) as exc:
        _maintenance_not_before = clock() + MAINTENANCE_RETRY_SECONDS
        _log_once(logging.ERROR, f"automatic key maintenance failed: {exc.__class__.__name__}")
        return ring
    ring = _reload(now)
    if ring.due_at is not None and now >= ring.due_at:
        _maintenance_not_before = clock() + MAINTENANCE_RETRY_SECONDS
    return ring


def keyring(now: datetime | None = None) -> KeyRing:
    """This process's current snapshot of the key store (see the module docstring)."""
    now = now or timezone.now()
    ring = _ring
    mono = clock()
    due = ring is not None and ring.due_at is not None and now >= ring.due_at
    if ring is not None and mono - ring.checked_at < CHECK_INTERVAL_SECONDS and not due:
        return ring
    generation: object = _UNREAD
    if ring is not None and mono - ring.checked_at >= CHECK_INTERVAL_SECONDS:
        # Never wait here for a reload under way in another thread (it may be waiting for a
        # database that stopped answering): serve the snapshot meanwhile.
        if not _lock.acquire(blocking=due):
            return _ring or ring
        try:
            claimed = _ring is ring and clock() - ring.checked_at >= CHECK_INTERVAL_SECONDS
            if claimed:
                ring.checked_at = mono  # this thread checks; the others keep serving the snapshot
        finally:
            _lock.release()
        if not claimed and not due and _ring is not None:
            return _ring
        if claimed:
            # Outside the lock: a cache that hangs instead of refusing stalls this thread only.
            generation = _generation()  # None: cache unreachable, rely on the snapshot age
    if ring is None or due:
        _lock.acquire()
    elif not _lock.acquire(blocking=False):
        return _ring or ring  # another thread is reloading: serve the snapshot meanwhile
    try:
        current = _ring
        if current is None:
            current = _reload(now)
        elif current is ring and generation is not _UNREAD:
            stale = clock() - ring.loaded_at >= get_config().key_cache_seconds
            changed = generation is not None and generation != ring.generation
            if stale or changed or ring.error:
                current = _reload(now, generation)
        if current.due_at is not None and now >= current.due_at and current.error is None:
            current = _maintain(current, now)
        return current
    finally:
        _lock.release()


def active_signing_key(now: datetime | None = None) -> ActiveKey:
    """The key that signs now. Raises KeyStoreUnavailable with the cause."""
    ring = keyring(now)
    if ring.active is None:
        raise KeyStoreUnavailable(ring.signing_problem or "no active signing key")
    return ring.active


def published_keys(now: datetime | None = None) -> tuple[PublishedKey, ...]:
    """Every key in the JWKS: active first, then next, then retired."""
    ring = keyring(now)
    if ring.error:
        raise KeyStoreUnavailable(ring.error)
    return tuple(ring.keys.values())


def published_key(kid: str, now: datetime | None = None) -> PublishedKey | None:
    ring = keyring(now)
    if ring.error:
        raise KeyStoreUnavailable(ring.error)
    return ring.keys.get(kid)


def jwks_document(now: datetime | None = None) -> tuple[bytes, str]:
    """(body, strong ETag) of the public JWKS.

    Unusable rows are left out and the rest is served; if every published row is unusable, 503
    (no-store) rather than an empty set that verifiers would cache and reject every token by.
    """
    ring = keyring(now)
    if ring.error:
        raise KeyStoreUnavailable(ring.error)
    if not ring.keys and ring.unusable:
        raise KeyStoreUnavailable("; ".join(ring.unusable.values()))
    return ring.jwks_body, ring.etag


def unusable_keys() -> dict[str, str]:
    """kid -> why that published row is left out of the JWKS and the signing keys (this
    process's current snapshot; /readyz reads it right after keystore_state())."""
    ring = _ring
    return dict(ring.unusable) if ring is not None else {}


def keystore_state(now: datetime | None = None) -> tuple[bool, str]:
    """(ready, reason) for the readiness probe: can this process sign and publish keys?

    Reloads from the database so that the answer is current; creates the very first key when
    the store is empty.
    """
    global _ring  # noqa: PLW0603
    with _lock:
        _ring = None
        ring = keyring(now)
    if ring.error:
        return False, ring.error
    if ring.active is None:
        reason = ring.signing_problem or "no active signing key"
        if ring.changes_refused:
            reason += f"; {ring.changes_refused}"
        return False, reason
    reason = f"ok (active kid {ring.active.kid}, {len(ring.keys)} published)"
    if ring.warnings:
        reason += "; warning: " + "; ".join(ring.warnings)
    return True, reason
