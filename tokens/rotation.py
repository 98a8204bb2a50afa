"""Services that change signing-key state: first key, rotation, timed transitions, revocation.

Every change runs in one transaction holding the store's lock (a PostgreSQL transaction-level
advisory lock), so concurrent workers and instances serialise and re-check what they saw; the
partial unique indexes on `state` (one active, one next) are the database's own guarantee behind
it. After commit, a new generation token in the shared cache tells every process to reload.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from authserver.conf import get_config
from tokens import keys
from tokens.jwk import (
    jwk_thumbprint,
    key_size,
    private_key_generate,
    private_key_to_der,
    public_jwk,
)
from tokens.kek import KeyDecryptError, kek_id, private_key_open, private_key_seal
from tokens.models import SigningKey

logger = logging.getLogger("authserver.keys")

# pg_advisory_xact_lock key for the signing-key store ("authkeys" in ASCII).
STORE_LOCK_ID = 0x617574686B657973

State = SigningKey.State


class SigningKeyError(ValueError):
    """The requested key change is not possible; the message is safe to show to an operator."""


@dataclass
class KeyStoreChange:
    """Which kids moved where in one service call."""

    published: list[str] = field(default_factory=list)
    activated: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        moved = (self.published, self.activated, self.retired, self.removed, self.revoked)
        return any(moved)

    def summary(self) -> str:
        parts = [
            f"{name} {', '.join(kids)}"
            for name, kids in (
                ("revoked", self.revoked),
                ("published", self.published),
                ("activated", self.activated),
                ("retired", self.retired),
                ("removed", self.removed),
            )
            if kids
        ]
        return "; ".join(parts + self.notes) or "no change"


def _lock_store() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [STORE_LOCK_ID])


def _changed() -> None:
    keys.keyring_reset_snapshot()
    transaction.on_commit(keys.keyring_changed)


def _audit(event: str, change: KeyStoreChange, now: datetime, **details: object) -> None:
    record = {
        "published": change.published,
        "activated": change.activated,
        "retired": change.retired,
        "removed": change.removed,
        "revoked": change.revoked,
        **details,
    }
    logger.info("%s %s", event, change.summary())
    try:
        from audit.services import audit_event_record
    except ImportError:  # the audit app is optional; the log line above is the record then
        return
    audit_event_record(event=event, details=record, occurred_at=now)


def _create(*, state: str, now: datetime, activate_at: datetime | None = None) -> SigningKey:
    config = get_config()
    private = private_key_generate(alg=config.signing_alg, rsa_key_size=config.rsa_key_size)
    jwk = public_jwk(private)
    kid = jwk_thumbprint(jwk)
    row = SigningKey(
        kid=kid,
        alg=config.signing_alg,
        key_size=key_size(private),
        state=state,
        public_jwk=jwk,
        private_key_ciphertext=private_key_seal(
            private_key_to_der(private), kid=kid, kek=config.key_encryption_key
        ),
        kek_id=kek_id(config.key_encryption_key),
        created_at=now,
        activate_at=activate_at or (now if state == State.ACTIVE else None),
        activated_at=now if state == State.ACTIVE else None,
    )
    row.save()
    return row


def _retire(row: SigningKey, now: datetime, change: KeyStoreChange) -> None:
    """active -> retired: published until every token it can have signed has expired."""
    config = get_config()
    grace = config.signed_token_max_lifetime + config.token_leeway + config.key_cache_seconds
    row.state = State.RETIRED
    row.retired_at = now
    row.remove_after = now + timedelta(seconds=grace)
    row.save(update_fields=["state", "retired_at", "remove_after"])
    change.retired.append(row.kid)


def _activate(row: SigningKey, now: datetime, change: KeyStoreChange) -> None:
    """next -> active, retiring the current active key first (one active at a time)."""
    current = SigningKey.objects.filter(state=State.ACTIVE).first()
    if current is not None:
        _retire(current, now, change)
    row.state = State.ACTIVE
    row.activated_at = now
    if row.activate_at is None or row.activate_at > now:
        row.activate_at = now
    row.save(update_fields=["state", "activated_at", "activate_at"])
    change.activated.append(row.kid)


def _require_store_kek() -> None:
    """Refuse, before any write, when this process holds another KEK than the one that sealed
    the store's keys (see keys.store_change_refusal); the caller holds the store's lock."""
    published = SigningKey.objects.filter(state__in=SigningKey.PUBLISHED_STATES)
    refusal = keys.store_change_refusal(published.only("kid", "state", "kek_id", "created_at"))
    if refusal:
        raise SigningKeyError(refusal)


def _erase(row: SigningKey) -> None:
    row.private_key_ciphertext = b""


def signing_key_create_first(*, now: datetime | None = None) -> SigningKey | None:
    """Create the first key, active at once, if the store has never held one.

    Safe to call from many processes at the same moment: exactly one creates it.
    """
    now = now or timezone.now()
    try:
        with transaction.atomic():
            _lock_store()
            if SigningKey.objects.exists():
                return None
            row = _create(state=State.ACTIVE, now=now)
            change = KeyStoreChange(published=[row.kid], activated=[row.kid])
            _audit("key.rotated", change, now, reason="first key")
            _changed()
    except IntegrityError:
        # Without the advisory lock (SQLite) a racing process may have won: that is fine.
        return None
    return row


def signing_key_rotate(*, now: datetime | None = None, immediate: bool = False) -> KeyStoreChange:
    """Start a rotation.

    Normally: publish a new key (state next) that starts signing AUTHSERVER_KEY_ACTIVATION_DELAY
    from now, so every verifier's cached JWKS holds it before the first token it signs. If a next
    key is already published, nothing changes. `immediate=True` makes the next key (published
    now if there is none) sign at once: verifiers that cache the JWKS without refetching on an
    unknown kid reject its tokens until their cache expires.
    """
    now = now or timezone.now()
    config = get_config()
    change = KeyStoreChange()
    with transaction.atomic():
        _lock_store()
        _require_store_kek()
        if not immediate and not SigningKey.objects.filter(state=State.ACTIVE).exists():
            immediate = True  # nothing signs: no verifier can be waiting for the new key
            change.notes.append("no key was active: the new key signs at once")
        pending = SigningKey.objects.filter(state=State.NEXT).first()
        if pending is None:
            activate_at = now if immediate else now + timedelta(seconds=config.key_activation_delay)
            pending = _create(state=State.NEXT, now=now, activate_at=activate_at)
            change.published.append(pending.kid)
        elif not immediate:
            change.notes.append(
                f"key {pending.kid} is already published and signs from "
                f"{pending.activate_at.isoformat()}"
            )
        if immediate:
            problem = keys.signing_key_problem(pending)
            if problem:
                raise SigningKeyError(f"next key {pending.kid} cannot be used: {problem}")
            published_for = (now - pending.created_at).total_seconds()
            if published_for < config.jwks_max_age and not change.notes:
                change.notes.append(
                    f"warning: key {pending.kid} was published {int(published_for)} s ago, less "
                    f"than the JWKS max-age ({config.jwks_max_age} s); verifiers that do not "
                    "refetch on an unknown kid may reject its tokens until their cache expires"
                )
            _activate(pending, now, change)
        if change:
            _audit("key.rotated", change, now, immediate=immediate)
            _changed()
    return change


def signing_keys_maintain(*, now: datetime | None = None) -> KeyStoreChange:
    """Perform every timed transition that is due (cron, or the automatic check on request).

    - a next key whose `activate_at` has passed starts signing; the active key retires;
    - a retired key past `remove_after` leaves the JWKS and its private key is erased;
    - when AUTHSERVER_KEY_ROTATION_DAYS says the active key is old enough and no key is
      waiting, a new one is published;
    - an empty store gets its first key.
    """
    now = now or timezone.now()
    config = get_config()
    change = KeyStoreChange()
    with transaction.atomic():
        _lock_store()
        _require_store_kek()
        if not SigningKey.objects.exists():
            row = _create(state=State.ACTIVE, now=now)
            change.published.append(row.kid)
            change.activated.append(row.kid)
        pending = SigningKey.objects.filter(state=State.NEXT, activate_at__lte=now).first()
        if pending is not None:
            problem = keys.signing_key_problem(pending)
            if problem:
                change.notes.append(f"next key {pending.kid} not activated: {problem}")
                logger.error("key store: next key %s not activated: %s", pending.kid, problem)
            else:
                _activate(pending, now, change)
        for row in SigningKey.objects.filter(state=State.RETIRED, remove_after__lte=now):
            row.state = State.REMOVED
            row.removed_at = now
            _erase(row)
            row.save(update_fields=["state", "removed_at", "private_key_ciphertext"])
            change.removed.append(row.kid)
        if config.key_rotation_days and not SigningKey.objects.filter(state=State.NEXT).exists():
            active = SigningKey.objects.filter(state=State.ACTIVE).first()
            due = (
                active is not None
                and active.activated_at is not None
                and active.activated_at + timedelta(days=config.key_rotation_days) <= now
            )
            if due:
                row = _create(
                    state=State.NEXT,
                    now=now,
                    activate_at=now + timedelta(seconds=config.key_activation_delay),
                )
                change.published.append(row.kid)
                change.notes.append(f"rotation due after {config.key_rotation_days} days")
        if change:
            _audit("key.rotated", change, now, scheduled=True)
            _changed()
    return change


def signing_key_revoke(*, kid: str, now: datetime | None = None) -> KeyStoreChange:
    """Emergency: take a key out of the JWKS at once and erase its private key.

    If it was the active key, the waiting next key (else a new key) signs from now on.
    """
    now = now or timezone.now()
    change = KeyStoreChange()
    with transaction.atomic():
        _lock_store()
        _require_store_kek()
        row = SigningKey.objects.filter(kid=kid).first()
        if row is None:
            raise SigningKeyError(f"no signing key with kid {kid!r}")
        if row.state in (State.REVOKED, State.REMOVED):
            raise SigningKeyError(f"key {kid} is already {row.state}")
        was_active = row.state == State.ACTIVE
        row.state = State.REVOKED
        row.revoked_at = now
        _erase(row)
        row.save(update_fields=["state", "revoked_at", "private_key_ciphertext"])
        change.revoked.append(row.kid)
        if was_active:
            replacement = SigningKey.objects.filter(state=State.NEXT).first()
            if replacement is not None and keys.signing_key_problem(replacement) is None:
                _activate(replacement, now, change)
            else:
                if replacement is not None:  # unusable: it must not linger either
                    replacement.state = State.REVOKED
                    replacement.revoked_at = now
                    _erase(replacement)
                    replacement.save(
                        update_fields=["state", "revoked_at", "private_key_ciphertext"]
                    )
                    change.revoked.append(replacement.kid)
                fresh = _create(state=State.ACTIVE, now=now)
                change.published.append(fresh.kid)
                change.activated.append(fresh.kid)
        _audit("key.revoked", change, now, kid=kid, was_active=was_active)
        _changed()
    return change


def signing_keys_reencrypt() -> int:
    """Re-seal every stored private key under the current KEK (after rotating the KEK).

    Keys sealed with a KEK listed in AUTHSERVER_KEY_ENCRYPTION_KEY_FALLBACKS are decrypted with
    it and encrypted again with AUTHSERVER_KEY_ENCRYPTION_KEY. Returns how many rows changed.
    """
    config = get_config()
    current = kek_id(config.key_encryption_key)
    count = 0
    with transaction.atomic():
        _lock_store()
        _require_store_kek()
        rows = SigningKey.objects.filter(state__in=SigningKey.PUBLISHED_STATES).exclude(
            kek_id=current
        )
        for row in rows:
            try:
                der = private_key_open(
                    row.private_key_ciphertext,
                    kid=row.kid,
                    sealed_with=row.kek_id,
                    keks=(config.key_encryption_key, *config.key_encryption_key_fallbacks),
                )
            except KeyDecryptError as exc:
                raise SigningKeyError(f"key {row.kid} cannot be decrypted: {exc.reason}") from None
            row.private_key_ciphertext = private_key_seal(
                der, kid=row.kid, kek=config.key_encryption_key
            )
            row.kek_id = current
            row.save(update_fields=["private_key_ciphertext", "kek_id"])
            count += 1
        if count:
            logger.info("key store: re-encrypted %d private key(s) under the current KEK", count)
            _changed()
    return count


def signing_keys_replace_all(
    *, now: datetime | None = None, keep_published: bool = False
) -> KeyStoreChange:
    """After a restore: a fresh key signs from now on and no key that came back with the
    backup ever signs again.

    The backup cannot say which of its keys were revoked after it was taken, so by default every
    restored key is revoked: out of the JWKS at once, private key erased. Tokens they signed stop
    verifying (access tokens live minutes; clients refresh). `keep_published=True` retires them
    instead (published until every token they can have signed has expired, never signing), for
    an operator who knows no key was revoked after the backup.
    """
    now = now or timezone.now()
    change = KeyStoreChange()
    with transaction.atomic():
        _lock_store()
        _require_store_kek()
        restored = list(SigningKey.objects.filter(state__in=SigningKey.PUBLISHED_STATES))
        # The active one first: the new key may be active only once it no longer is.
        restored.sort(key=lambda row: row.state != State.ACTIVE)
        for row in restored:
            if keep_published and row.state == State.ACTIVE:
                _retire(row, now, change)
            elif keep_published and row.state == State.RETIRED:
                change.notes.append(f"{row.kid} stays retired")
            else:
                row.state = State.REVOKED
                row.revoked_at = now
                _erase(row)
                row.save(update_fields=["state", "revoked_at", "private_key_ciphertext"])
                change.revoked.append(row.kid)
        fresh = _create(state=State.ACTIVE, now=now)
        change.published.append(fresh.kid)
        change.activated.append(fresh.kid)
        _audit("key.rotated", change, now, reason="after restore", immediate=True)
        _changed()
    return change
