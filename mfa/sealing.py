"""TOTP secrets at rest: AES-256-GCM under the key-encryption key that seals signing keys
(AUTHSERVER_KEY_ENCRYPTION_KEY, tokens/kek.py), bound to the factor's id (associated data), so a
ciphertext copied onto another factor row does not open."""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from authserver.conf import get_config
from tokens.kek import kek_id

_VERSION = b"\x01"
_NONCE_BYTES = 12
_AAD_PREFIX = b"authserver mfa secret v1 factor="


class SecretUnavailable(Exception):
    """The sealed secret cannot be opened (wrong KEK configured, or the row was altered)."""


def _aad(factor_id: str) -> bytes:
    return _AAD_PREFIX + str(factor_id).encode("ascii")


def secret_seal(plaintext: bytes, *, factor_id: str) -> tuple[bytes, str]:
    """(ciphertext, id of the KEK that sealed it)."""
    kek = get_config().key_encryption_key
    nonce = secrets.token_bytes(_NONCE_BYTES)
    sealed = _VERSION + nonce + AESGCM(kek).encrypt(nonce, plaintext, _aad(factor_id))
    return sealed, kek_id(kek)


def secret_open(sealed: bytes, *, factor_id: str, sealed_with: str) -> bytes:
    config = get_config()
    keks = (config.key_encryption_key, *config.key_encryption_key_fallbacks)
    kek = next((k for k in keks if secrets.compare_digest(kek_id(k), sealed_with)), None)
    sealed = bytes(sealed)
    if kek is None or len(sealed) < 1 + _NONCE_BYTES + 16 or sealed[:1] != _VERSION:
        raise SecretUnavailable("the second factor's secret cannot be opened")
    nonce = sealed[1 : 1 + _NONCE_BYTES]
    try:
        return AESGCM(kek).decrypt(nonce, sealed[1 + _NONCE_BYTES :], _aad(factor_id))
    except InvalidTag:
        raise SecretUnavailable("the second factor's secret cannot be opened") from None
