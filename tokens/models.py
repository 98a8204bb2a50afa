"""Signing keys: the database is the source of truth for which key signs and which are published."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class SigningKey(models.Model):
    """One asymmetric signing key and where it is in its life.

    next -> active -> retired -> removed; or revoked at any point (emergency). The JWKS publishes
    next, active and retired keys. Only the active key signs; the database allows at most one
    (partial unique index) and at most one next key. The private key is stored only as AES-GCM
    ciphertext (tokens/kek.py) bound to the kid; it is erased when the key is removed or revoked.
    """

    class State(models.TextChoices):
        NEXT = "next", "next (published, not signing yet)"
        ACTIVE = "active", "active (signing)"
        RETIRED = "retired", "retired (published, no longer signing)"
        REMOVED = "removed", "removed"
        REVOKED = "revoked", "revoked"

    class Algorithm(models.TextChoices):
        RS256 = "RS256", "RS256 (RSA PKCS#1 v1.5, SHA-256)"
        ES256 = "ES256", "ES256 (ECDSA P-256, SHA-256)"

    PUBLISHED_STATES = (State.NEXT, State.ACTIVE, State.RETIRED)

    kid = models.CharField("key id (RFC 7638 thumbprint)", max_length=64, unique=True)
    alg = models.CharField("algorithm", max_length=8, choices=Algorithm.choices)
    key_size = models.PositiveIntegerField("key size (bits)")
    state = models.CharField(max_length=8, choices=State.choices, db_index=True)
    # Public members only (kty, n, e / crv, x, y): what the JWKS serves.
    public_jwk = models.JSONField("public JWK")
    # version || nonce || AES-256-GCM(PKCS#8 DER), with the kid as associated data. Empty once the
    # key is removed or revoked.
    private_key_ciphertext = models.BinaryField(editable=False)
    # Which key-encryption key sealed it (a fingerprint, not the key), to name a wrong KEK.
    kek_id = models.CharField("key-encryption key id", max_length=16)

    created_at = models.DateTimeField()
    activate_at = models.DateTimeField("signs from", null=True, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    remove_after = models.DateTimeField("published until", null=True, blank=True)
    removed_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "signing key"
        verbose_name_plural = "signing keys"
        ordering = ("-created_at",)
        constraints = [
            models.UniqueConstraint(
                fields=["state"],
                condition=Q(state="active"),
                name="tokens_signingkey_one_active",
                violation_error_message="Only one signing key can be active.",
            ),
            models.UniqueConstraint(
                fields=["state"],
                condition=Q(state="next"),
                name="tokens_signingkey_one_next",
                violation_error_message="Only one signing key can be waiting to sign.",
            ),
            models.CheckConstraint(
                condition=Q(state__in=["next", "active", "retired", "removed", "revoked"]),
                name="tokens_signingkey_state_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.alg} key {self.kid} ({self.state})"

    @property
    def is_published(self) -> bool:
        return self.state in self.PUBLISHED_STATES


class RevokedAccessToken(models.Model):
    """An access token without a session (client_credentials) revoked before its expiry (RFC
    7009): refused by `jti` until `expires_at`, then purged by purge_expired_sessions. Tokens of
    a session need no row here: revoking one ends its session, which every check consults."""

    jti = models.CharField(max_length=64, primary_key=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = "revoked access token"
        verbose_name_plural = "revoked access tokens"

    def __str__(self) -> str:
        return f"revoked access token {self.jti} (until {self.expires_at:%Y-%m-%d %H:%M})"


class RestoreMarker(models.Model):
    """One row telling a database restored from a dump apart from the one the dump was taken
    of (`manage.py after_restore`).

    The row holds the OID PostgreSQL gave this very table when the row was written (by the
    migration that creates it, then by every after_restore). pg_dump carries the row but not the
    OID: restoring a dump (pg_restore, psql, `--clean` or into a new database) creates the table
    anew under another OID, so the row no longer matches its table. A physical copy (volume
    snapshot, base backup) keeps the OIDs and is not recognised: after_restore --force.
    """

    table_oid = models.BigIntegerField("OID of this table when the row was written", null=True)
    recorded_at = models.DateTimeField()
    after_restore_at = models.DateTimeField("last after_restore", null=True, blank=True)

    class Meta:
        verbose_name = "restore marker"
        verbose_name_plural = "restore markers"

    def __str__(self) -> str:
        return f"restore marker (table OID {self.table_oid})"
