"""The refresh token's format: self-describing, so one session row is all it needs (issue 15.1).

A refresh token is 65 bytes, base64url without padding (87 characters):

    version (1) | key id (4) | session id (16) | generation (4) | random (24) | MAC (16)

- The session id and generation say which session the token belongs to and which of its
  rotations issued it. The session row keeps only the SHA-256 digest of its current token and
  its generation (`Session.rotations`), so a session is one row however often it refreshes.
- The random part (192 bits) makes the current token unguessable even to someone who holds the
  MAC key: it is accepted only if its digest equals the one stored.
- The MAC (HMAC-SHA-256, truncated to 128 bits) authenticates everything before it. It is what
  lets the server trust an *earlier* token, whose digest it no longer keeps: only a token this
  server issued can name a session and an old generation, so only a real replay can revoke a
  session, never a forged or guessed value (RFC 9700 §4.14.2 reuse detection, without a row per
  token).

The MAC key is derived (HKDF-SHA-256, its own label) from the key-encryption key, so it rotates
with it: a new AUTHSERVER_KEY_ENCRYPTION_KEY MACs new tokens while the old one, kept in
AUTHSERVER_KEY_ENCRYPTION_KEY_FALLBACKS, still verifies earlier ones (README "Rotating the
key-encryption key"). A token whose key is no longer configured still works while it is the
current one (its digest proves it); only reuse detection for tokens older than the dropped key
is lost.

Tokens issued before this format (43 characters, no structure) are still accepted: they are
looked up by digest in the old table (sessions.models.RefreshToken) and rotated into this format.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import secrets
import struct
import uuid
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from authserver.conf import get_config

VERSION = 1
_HEADER = struct.Struct(">B4s16sI")  # version, key id, session id, generation
RANDOM_BYTES = 24
MAC_BYTES = 16
TOKEN_BYTES = _HEADER.size + RANDOM_BYTES + MAC_BYTES  # 65
TOKEN_LENGTH = 87  # base64url of 65 bytes, without padding
MAX_GENERATION = 2**31 - 1  # Session.rotations is a PostgreSQL integer

_MAC_LABEL = b"authserver refresh-token mac v1"
_KEY_ID_LABEL = b"authserver refresh-token key id\x00"


@dataclass(frozen=True, slots=True)
class ParsedRefreshToken:
    """What a well-formed token says about itself. `authentic` is set by `refresh_token_parse`
    only when its MAC verified under a configured key."""

    session_id: uuid.UUID
    generation: int
    authentic: bool

    def __repr__(self) -> str:  # never the token
        return f"ParsedRefreshToken(session={self.session_id}, generation={self.generation})"


def refresh_token_digest(value: str) -> bytes:
    """SHA-256 of the token: what the session row stores (256 random bits need no slow hash)."""
    return hashlib.sha256(value.encode("ascii")).digest()


@functools.lru_cache(maxsize=8)
def _mac_key(kek: bytes) -> tuple[bytes, bytes]:
    """(key id, MAC key) derived from one key-encryption key."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_MAC_LABEL).derive(kek)
    return hashlib.sha256(_KEY_ID_LABEL + key).digest()[:4], key


def _signing_key() -> tuple[bytes, bytes]:
    return _mac_key(get_config().key_encryption_key)


def _verifying_keys() -> dict[bytes, bytes]:
    config = get_config()
    keys = {}
    for kek in (config.key_encryption_key, *config.key_encryption_key_fallbacks):
        key_id, key = _mac_key(kek)
        keys.setdefault(key_id, key)
    return keys


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.digest(key, body, "sha256")[:MAC_BYTES]


def refresh_token_new(*, session_id: uuid.UUID, generation: int) -> tuple[str, bytes]:
    """A new token for `generation` of the session, and its digest."""
    key_id, key = _signing_key()
    body = _HEADER.pack(VERSION, key_id, session_id.bytes, generation) + secrets.token_bytes(
        RANDOM_BYTES
    )
    value = base64.urlsafe_b64encode(body + _mac(key, body)).rstrip(b"=").decode("ascii")
    return value, refresh_token_digest(value)


def refresh_token_parse(value: object) -> ParsedRefreshToken | None:
    """The session and generation a token names, or None if it is not one of this format.

    The MAC is checked here (constant time); `authentic` is False when it does not verify or its
    key is no longer configured. Callers trust an inauthentic token only if it is the session's
    current one (its digest matches).
    """
    if not isinstance(value, str) or len(value) != TOKEN_LENGTH or not value.isascii():
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=")
    except (binascii.Error, ValueError):
        return None
    # The decoder ignores characters outside the alphabet; re-encoding catches them and any
    # non-canonical final character, so each token has exactly one spelling.
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != value:
        return None
    version, key_id, session_bytes, generation = _HEADER.unpack_from(raw)
    if version != VERSION or generation > MAX_GENERATION:
        return None
    body, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    key = _verifying_keys().get(key_id)
    authentic = key is not None and hmac.compare_digest(_mac(key, body), mac)
    return ParsedRefreshToken(uuid.UUID(bytes=session_bytes), generation, authentic)
