"""PKCE (RFC 7636), S256 only, on top of authlib's CodeChallenge extension.

What changes from authlib's defaults: `plain` is refused (RFC 9700 §2.1.1), including the
implicit `plain` of a challenge sent without a method; every client must send a challenge
already at the authorization endpoint (RFC 9700 §2.1.1), except a confidential client an admin
has explicitly exempted (Client.pkce_required off; never a public client); the verifier is
compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

from authlib.oauth2.rfc6749 import InvalidGrantError, InvalidRequestError
from authlib.oauth2.rfc7636 import CodeChallenge

S256 = "S256"


def s256_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def s256_matches(verifier: str, challenge: str) -> bool:
    return secrets.compare_digest(s256_challenge(verifier), challenge)


class S256CodeChallenge(CodeChallenge):
    SUPPORTED_CODE_CHALLENGE_METHOD = [S256]
    DEFAULT_CODE_CHALLENGE_METHOD = S256
    CODE_CHALLENGE_METHODS = {S256: s256_matches}

    def __init__(self) -> None:
        super().__init__(required=True)

    def validate_code_challenge(self, grant, redirect_uri) -> None:
        data = grant.request.payload.data
        challenge = data.get("code_challenge")
        method = data.get("code_challenge_method")
        client = grant.request.client
        if not challenge and client.is_public:
            raise InvalidRequestError(
                "Public clients must use PKCE: send code_challenge with code_challenge_method=S256."
            )
        if not challenge and client.pkce_required:
            raise InvalidRequestError(
                "This client must use PKCE: send code_challenge with code_challenge_method=S256."
            )
        super().validate_code_challenge(grant, redirect_uri)
        if challenge and method != S256:
            # RFC 7636 §4.3: no method means "plain", which we do not accept.
            raise InvalidRequestError("code_challenge_method must be S256.")

    def validate_code_verifier(self, grant, result) -> None:
        # A code issued without a challenge (before an admin turned PKCE on for the client) is
        # not redeemed once the client requires PKCE: nothing binds it to the client instance.
        code = grant.request.authorization_code
        if not code.code_challenge and grant.request.client.pkce_required:
            raise InvalidGrantError("The authorization code was issued without PKCE.")
        super().validate_code_verifier(grant, result)
