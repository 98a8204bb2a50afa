"""simplejwt's TokenBackend, one instance per signing key.

Stock `TokenBackend` holds one key and one algorithm, and its `encode` cannot set JWS header
parameters. authserver keeps several keys published at once (next, active, retired), so each key
gets its own backend with the algorithm pinned to that key, and:

- `encode` adds the `kid` and `typ` header parameters (RFC 7515 §4.1.4, RFC 9068 §2.1);
- `verify` (and `decode`) require the registered claims and check time against a `now` argument
  (stock `decode` requires no claim and reads the wall clock, which tests cannot move).

Both go through tokens/jws.py rather than PyJWT: the header of each `typ` is serialised once per
key, a token is parsed once (the verifier reads `kid` from the same parse), and the claim rules
are the ones PyJWT applied, written out below (tests/tokens/test_jws.py compares the two).
Key objects are parsed once per process (tokens/keys.py) and used as they are.

A backend remembers the tokens whose signature it has verified (`VERIFIED_MEMO_SIZE` of them,
by a SHA-256 digest of the signed bytes and the signature): a resource server introspects the
same access token on each of its API calls, and an app sends the same one to userinfo, so the
public-key operation runs once per token and key snapshot rather than once per request. Only
the signature's verdict is remembered, and only when it passed: every request still parses the
token and checks its algorithm, its claims and their times, and reads its session. The memo
lives and dies with the backend, which tokens/keys.py builds anew on every reload of the key
snapshot (a key change, or at least every AUTHSERVER_KEY_CACHE_SECONDS), so a key that is
removed stops verifying at once. The digest is of the bytes the signature covers and the
signature itself, length-prefixed, so no other token maps to a remembered one; the memo holds
no token.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import datetime
from typing import Any

import jwt
from jwt.exceptions import InvalidJTIError, InvalidSubjectError
from rest_framework_simplejwt.backends import TokenBackend

from tokens import jws
from tokens.jwk import PrivateKey, PublicKey

REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "jti")
# Verified signatures a backend remembers: 32-byte digests, about 100 bytes each with the dict's
# own cost, so at most about 1 MB per published key. Beyond it the oldest half is forgotten.
VERIFIED_MEMO_SIZE = 8192


class SigningKeyBackend(TokenBackend):
    def __init__(
        self,
        *,
        kid: str,
        alg: str,
        verifying_key: PublicKey,
        signing_key: PrivateKey | None = None,
        issuer: str,
        leeway: int,
    ) -> None:
        super().__init__(
            algorithm=alg,
            signing_key=signing_key,
            verifying_key=verifying_key,
            issuer=issuer,
            leeway=leeway,
        )
        self.kid = kid
        self._headers: dict[str, bytes] = {}
        self._leeway_seconds = self.get_leeway().total_seconds()
        # Digests of the tokens whose signature this key verified (module docstring). Read
        # without the lock (a dict lookup is atomic); added to and trimmed under it.
        self._verified: dict[bytes, None] = {}
        self._verified_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<SigningKeyBackend {self.algorithm} kid={self.kid}>"

    def encode(self, payload: dict[str, Any], *, typ: str = "JWT") -> str:  # type: ignore[override]
        """A compact JWS of `payload` with this key (tokens.jws.encode; the header of each `typ`
        is serialised once per key)."""
        if self.signing_key is None:
            raise ValueError("this backend holds no private key")
        header = self._headers.get(typ)
        if header is None:
            header = jws.header_segment(alg=self.algorithm, kid=self.kid, typ=typ)
            self._headers[typ] = header
        return jws.encode(header, payload, self.signing_key, self.algorithm)

    def decode(  # type: ignore[override]
        self, token: str, *, audience: str | list[str] | None, now: datetime
    ) -> dict[str, Any]:
        """`verify` of the parsed token; for callers that have not parsed it yet."""
        return self.verify(jws.parse(token), audience=audience, now=now)

    def verify(
        self, token: jws.CompactJws, *, audience: str | list[str] | None, now: datetime
    ) -> dict[str, Any]:
        """The claims of `token` if this key signed it and they hold: the signature (with this
        key's algorithm whatever the header says, RFC 8725 §3.1), the registered claims present
        (REQUIRED_CLAIMS, none null), `iss` this issuer, `aud` naming `audience`, `sub` and
        `jti` strings, then exp/iat/nbf against `now` with leeway.

        `audience=None` accepts any audience the token names (the authorization server reading
        its own tokens); `aud` must still be a non-empty string or list of them.
        Raises jwt.InvalidTokenError subclasses; the caller turns them into a short reason.
        """
        if token.header.get("alg") != self.algorithm:
            raise jwt.InvalidAlgorithmError("The specified alg value is not allowed")
        if not self._signature_valid(token):
            raise jwt.InvalidSignatureError("Signature verification failed")
        claims = jws.payload_claims(token)
        for name in REQUIRED_CLAIMS:
            if claims.get(name) is None:
                raise jwt.MissingRequiredClaimError(name)
        if not isinstance(claims["iss"], str) or claims["iss"] != self.issuer:
            raise jwt.InvalidIssuerError("Invalid issuer")
        _audience_check(claims["aud"], audience)
        if not isinstance(claims["sub"], str):
            raise InvalidSubjectError("Subject must be a string")
        if not isinstance(claims["jti"], str):
            raise InvalidJTIError("JWT ID must be a string")
        leeway = self._leeway_seconds
        moment = now.timestamp()
        for name in ("exp", "iat", "nbf"):
            if name in claims and (
                isinstance(claims[name], bool) or not isinstance(claims[name], int | float)
            ):
                raise jwt.InvalidTokenError(f"{name} is not a number")
        if claims["exp"] <= moment - leeway:
            raise jwt.ExpiredSignatureError("expired")
        if claims["iat"] > moment + leeway:
            raise jwt.ImmatureSignatureError("issued in the future")
        if "nbf" in claims and claims["nbf"] > moment + leeway:
            raise jwt.ImmatureSignatureError("not yet valid")
        return claims

    def _signature_valid(self, token: jws.CompactJws) -> bool:
        """`jws.verify_signature` with this key, remembered when it passed (module docstring)."""
        digest = hashlib.sha256(
            len(token.signing_input).to_bytes(8, "big") + token.signing_input + token.signature
        ).digest()
        if digest in self._verified:
            return True
        if not jws.verify_signature(self.verifying_key, self.algorithm, token):
            return False
        with self._verified_lock:
            verified = self._verified
            if len(verified) >= VERIFIED_MEMO_SIZE:
                # Forget the oldest half (a dict keeps insertion order), not everything at once.
                for old in list(verified)[: VERIFIED_MEMO_SIZE // 2]:
                    del verified[old]
            verified[digest] = None
        return True


def _audience_check(aud: Any, audience: str | list[str] | None) -> None:
    """PyJWT's audience rule when `audience` is given (a string or list of strings naming one of
    them); when None, any audience, but still a non-empty string or a non-empty list of
    non-empty strings."""
    if audience is not None and not aud:
        raise jwt.MissingRequiredClaimError("aud")
    names = [aud] if isinstance(aud, str) else aud
    if not isinstance(names, list) or any(not isinstance(name, str) for name in names):
        raise jwt.InvalidAudienceError("Invalid claim format in token")
    if audience is None:
        if not names or not all(names):
            raise jwt.InvalidAudienceError("invalid audience")
        return
    wanted = [audience] if isinstance(audience, str) else audience
    if all(name not in names for name in wanted):
        raise jwt.InvalidAudienceError("Audience doesn't match")
