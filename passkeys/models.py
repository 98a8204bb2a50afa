"""A registered WebAuthn credential (passkey or security key) of an account.

Only public material is stored: the credential id (base64url, as browsers report it) and its
COSE public key. `sign_count` is the authenticator's signature counter (WebAuthn §6.1.1), moved
forward only by one conditional UPDATE; a counter that goes backwards is the spec's sign of a
cloned authenticator: the assertion is refused and `flagged_at` set, and a flagged credential
is refused from then on until its owner removes it.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class Passkey(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="passkeys"
    )
    name = models.CharField(max_length=64)
    # base64url without padding; WebAuthn allows up to 1023 bytes (1364 characters).
    credential_id = models.CharField(max_length=1400, unique=True, editable=False)
    public_key = models.BinaryField(editable=False)  # COSE_Key
    sign_count = models.BigIntegerField(default=0, editable=False)
    transports = models.JSONField(default=list, blank=True, editable=False)
    aaguid = models.CharField(max_length=36, blank=True, default="", editable=False)
    # credProps.rk from the browser at registration; None when it did not say.
    discoverable = models.BooleanField(null=True, editable=False)
    # The BE flag (WebAuthn §6.1): a multi-device (synced) credential. Decides hwk vs swk.
    backup_eligible = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    flagged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "passkey"
        verbose_name_plural = "passkeys"
        indexes = [models.Index(fields=["user", "created_at"], name="passkey_user_created")]

    def __str__(self) -> str:  # never key material
        return f"passkey {self.name!r} of user {self.user_id}"

    @property
    def amr(self) -> str:
        """RFC 8176: "hwk" for a device-bound key (the private key cannot leave the
        authenticator), "swk" for a synced (backup-eligible) one, copied between devices by
        software."""
        return "swk" if self.backup_eligible else "hwk"
