"""A software WebAuthn authenticator and client for tests: an independent implementation of what
a browser and an authenticator send (WebAuthn §6.1 authenticator data, §5.8.1 client data, §6.5
attestation "none", §6.3.3 assertion signature), built from `cryptography` (EC P-256, ES256) and
`cbor2`, sharing no code with passkeys/. Every field can be bent to make bad input."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct
from dataclasses import dataclass, field

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, BE, AT = 0x01, 0x04, 0x08, 0x40


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class SoftKey:
    rp_id: str
    origin: str
    user_handle: bytes = b""
    sign_count: int = 0
    credential_id: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    def cose_public_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,
                3: -7,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )

    def _auth_data(self, flags: int, count: int, rp_id: str | None, attested: bool) -> bytes:
        data = hashlib.sha256((rp_id or self.rp_id).encode()).digest()
        data += bytes([flags | (AT if attested else 0)]) + struct.pack(">I", count)
        if attested:
            data += b"\x00" * 16 + struct.pack(">H", len(self.credential_id)) + self.credential_id
            data += self.cose_public_key()
        return data

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        return json.dumps(
            {
                "type": kind,
                "challenge": challenge,
                "origin": origin or self.origin,
                "crossOrigin": False,
            }
        ).encode()

    def register(self, options: dict, *, rk: bool = True) -> str:
        """The JSON a browser posts after navigator.credentials.create(options)."""
        self.user_handle = unb64u(options["user"]["id"])
        client_data = self._client_data("webauthn.create", options["challenge"], None)
        att = cbor2.dumps(
            {
                "fmt": "none",
                "attStmt": {},
                "authData": self._auth_data(UP | UV, self.sign_count, None, True),
            }
        )
        return json.dumps(
            {
                "id": b64u(self.credential_id),
                "rawId": b64u(self.credential_id),
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64u(client_data),
                    "attestationObject": b64u(att),
                    "transports": ["internal"],
                },
                "clientExtensionResults": {"credProps": {"rk": rk}},
            }
        )

    def assert_(
        self,
        challenge: str,
        *,
        rp_id: str | None = None,
        origin: str | None = None,
        count: int | None = None,
        flags: int = UP | UV,
    ) -> str:
        """The JSON a browser posts after navigator.credentials.get(); the sign count moves on
        by one unless `count` is given."""
        if count is None:
            self.sign_count += 1
            count = self.sign_count
        client_data = self._client_data("webauthn.get", challenge, origin)
        auth_data = self._auth_data(flags, count, rp_id, False)
        signature = self.key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return json.dumps(
            {
                "id": b64u(self.credential_id),
                "rawId": b64u(self.credential_id),
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64u(client_data),
                    "authenticatorData": b64u(auth_data),
                    "signature": b64u(signature),
                    "userHandle": b64u(self.user_handle),
                },
                "clientExtensionResults": {},
            }
        )
