"""Encryption of private signing keys at rest: AES-256-GCM under the key-encryption key (KEK).

The ciphertext is bound to the key's kid (GCM associated data), so a ciphertext copied onto
another row does not decrypt. Each row records the id of the KEK that sealed it, a truncated
SHA-256 over a fixed label and the KEK: enough to tell "wrong KEK" from "corrupt row", useless to
recover the KEK.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = b"\x01"
NONCE_BYTES = 12
_AAD_PREFIX = b"authserver signing key v1 kid="


class KeyDecryptError(Exception):
    """A sealed private key cannot be opened; `reason` is safe to show to an operator.

    `wrong_kek`: this process holds none of the KEKs that sealed it, so it cannot tell whether
    the row is sound. Otherwise the row itself is bad (altered, erased, moved to another kid):
    it was not sealed by this server for this kid.
    """

    def __init__(self, reason: str, *, wrong_kek: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.wrong_kek = wrong_kek


WRONG_KEK_REASON = (
    "it was encrypted with a different key-encryption key than "
    "AUTHSERVER_KEY_ENCRYPTION_KEY (or its _FALLBACKS)"
)


def kek_id(kek: bytes) -> str:
    return hashlib.sha256(b"authserver kek id\x00" + kek).hexdigest()[:16]


def kek_held(sealed_with: str, keks: Iterable[bytes]) -> bool:
    """Whether one of `keks` (this process's KEK and fallbacks) has the id `sealed_with`."""
    return any(secrets.compare_digest(kek_id(k), sealed_with) for k in keks)


def _aad(kid: str) -> bytes:
    return _AAD_PREFIX + kid.encode("ascii")


def private_key_seal(plaintext: bytes, *, kid: str, kek: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    return VERSION + nonce + AESGCM(kek).encrypt(nonce, plaintext, _aad(kid))


def private_key_open(
    ciphertext: bytes, *, kid: str, sealed_with: str, keks: Iterable[bytes]
) -> bytes:
    """Decrypt with the configured KEK whose id is `sealed_with`.

    Raises KeyDecryptError naming the cause: no configured KEK has that id (the operator set the
    wrong AUTHSERVER_KEY_ENCRYPTION_KEY), or the KEK matches but the ciphertext does not
    authenticate (the row was altered or copied from another kid).
    """
    ciphertext = bytes(ciphertext)
    if not ciphertext:
        raise KeyDecryptError("its private key has been erased")
    kek = next((k for k in keks if secrets.compare_digest(kek_id(k), sealed_with)), None)
    if kek is None:
        raise KeyDecryptError(WRONG_KEK_REASON, wrong_kek=True)
    if len(ciphertext) < 1 + NONCE_BYTES + 16 or ciphertext[:1] != VERSION:
        raise KeyDecryptError("its stored ciphertext is corrupt (bad format)")
    nonce = ciphertext[1 : 1 + NONCE_BYTES]
    try:
        return AESGCM(kek).decrypt(nonce, ciphertext[1 + NONCE_BYTES :], _aad(kid))
    except InvalidTag:
        raise KeyDecryptError("its stored ciphertext is corrupt (authentication failed)") from None
