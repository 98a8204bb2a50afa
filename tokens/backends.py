"""simplejwt's TokenBackend, one instance per signing key.

Stock `TokenBackend` holds one key and one algorithm, and its `encode` cannot set JWS header
parameters. authserver keeps several keys published at once (next, active, retired), so each key
gets its own backend with the algorithm pinned to that key, and:

- `encode` adds the `kid` and `typ` header parameters (RFC 7515 §4.1.4, RFC 9068 §2.1);
- `decode` requires the registered claims and checks time against a `now` argument (stock
  `decode` requires no claim and reads the wall clock, which tests cannot move).

Key objects are passed in already parsed: PyJWT uses them as they are, so a private key is parsed
once per process instead of once per token.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import jwt
from rest_framework_simplejwt.backends import TokenBackend

from tokens import jws
from tokens.jwk import PrivateKey, PublicKey

REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "jti")


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

    def __repr__(self) -> str:
        return f"<SigningKeyBackend {self.algorithm} kid={self.kid}>"

    def encode(self, payload: dict[str, Any], *, typ: str = "JWT") -> str:  # type: ignore[override]
        if self.signing_key is None:
            raise ValueError("this backend holds no private key")
        return jwt.encode(
            payload,
            self.prepared_signing_key,
            algorithm=self.algorithm,
            headers={"kid": self.kid, "typ": typ},
        )

    def decode(  # type: ignore[override]
        self, token: str, *, audience: str | list[str] | None, now: datetime
    ) -> dict[str, Any]:
        """Verify signature, iss and aud (PyJWT), then exp/iat/nbf against `now` with leeway.

        `audience=None` accepts any audience the token names (the authorization server reading
        its own tokens); `aud` must still be a non-empty string or list of them.
        Raises jwt.InvalidTokenError subclasses; the caller turns them into a short reason.
        """
        claims = jws.decode(
            token,
            self.prepared_verifying_key,
            algorithms=[self.algorithm],
            audience=audience,
            issuer=self.issuer,
            options={
                "require": list(REQUIRED_CLAIMS),
                "verify_aud": audience is not None,
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
        if audience is None:
            aud = claims["aud"]
            names = [aud] if isinstance(aud, str) else aud
            if not isinstance(names, list) or not names:
                raise jwt.InvalidAudienceError("invalid audience")
            if any(not isinstance(name, str) or not name for name in names):
                raise jwt.InvalidAudienceError("invalid audience")
        leeway = self.get_leeway().total_seconds()
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
