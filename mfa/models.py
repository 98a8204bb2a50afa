"""Second factors of an account.

A `Factor` is one registered authenticator: a TOTP app (RFC 6238). Passkeys keep their own
rows (passkeys.models.Passkey: public keys, sign counts) and join as the method "passkey" in
mfa.selectors and mfa.services.METHOD_VERIFIERS. Its secret is sealed with the key-encryption key
(mfa/sealing.py), bound to the factor's id, and never leaves the server except once, on the
enrolment page. A factor counts only once `confirmed_at` is set (a first code was accepted).

`RecoveryCode` rows are the single-use codes shown once at enrolment: only a keyed SHA-256 of
each code is stored, and using one stamps `used_at` with one conditional UPDATE, so of two
concurrent uses exactly one wins.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class Factor(models.Model):
    class Method(models.TextChoices):
        TOTP = "totp", "authenticator app (TOTP)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="second_factors"
    )
    method = models.CharField(max_length=20, choices=Method.choices)
    name = models.CharField(max_length=100, blank=True, default="")
    # AES-256-GCM ciphertext of the TOTP secret under the KEK whose id is `sealed_with`.
    secret_sealed = models.BinaryField(editable=False)
    sealed_with = models.CharField(max_length=16, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # The RFC 6238 time step of the last accepted code: a code of this step or an earlier one is
    # refused (no replay within the window). Moved forward only, by one conditional UPDATE.
    last_used_step = models.BigIntegerField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "second factor"
        verbose_name_plural = "second factors"
        indexes = [models.Index(fields=["user", "method"], name="mfa_factor_user_method")]

    def __str__(self) -> str:  # never the secret
        return f"{self.get_method_display()} of user {self.user_id}"


class RecoveryCode(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="recovery_codes"
    )
    digest = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "recovery code"
        verbose_name_plural = "recovery codes"
        constraints = [
            models.UniqueConstraint(fields=["user", "digest"], name="mfa_recovery_user_digest")
        ]

    def __str__(self) -> str:  # never the code
        return f"recovery code {self.pk} of user {self.user_id}"
