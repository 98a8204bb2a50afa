from __future__ import annotations

import base64
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tokens.keys import active_signing_key

AUDIENCE = "https://api.example.com"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict, claims: dict, key=None, alg: str = "RS256") -> str:
    """A JWS with exactly this header, signed with `key` (an attacker's, unless given)."""
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, key, algorithm=alg, headers=header, sort_headers=False)


def unsigned(header: dict, claims: dict) -> str:
    return b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode()) + "."


def active_private_key():
    return active_signing_key().backend.signing_key


def public_pem() -> bytes:
    return (
        active_private_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


@pytest.fixture
def signing_key(db):
    """The active key of this test's database (created on first use, as in production)."""
    return active_signing_key()
