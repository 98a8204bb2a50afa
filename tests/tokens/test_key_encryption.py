"""The key-encryption key: AES-GCM sealing bound to the kid, and the settings that supply it."""

from __future__ import annotations

import os
import secrets
import stat

import pytest

from tests.authserver.test_settings import assert_refused, production_env
from tests.live import ROOT, base_env, manage
from tokens.kek import KeyDecryptError, kek_id, private_key_open, private_key_seal

KEK = secrets.token_bytes(32)


def test_seal_and_open_round_trip_with_a_fresh_nonce():
    first = private_key_seal(b"secret der", kid="k1", kek=KEK)
    second = private_key_seal(b"secret der", kid="k1", kek=KEK)
    assert first != second  # random 96-bit nonce
    assert b"secret der" not in first
    assert private_key_open(first, kid="k1", sealed_with=kek_id(KEK), keks=[KEK]) == b"secret der"


def test_ciphertext_is_bound_to_its_kid():
    sealed = private_key_seal(b"secret der", kid="k1", kek=KEK)
    with pytest.raises(KeyDecryptError, match="corrupt"):
        private_key_open(sealed, kid="k2", sealed_with=kek_id(KEK), keks=[KEK])


def test_wrong_kek_and_tampering_are_told_apart():
    sealed = private_key_seal(b"secret der", kid="k1", kek=KEK)
    other = secrets.token_bytes(32)
    with pytest.raises(KeyDecryptError, match="different key-encryption key"):
        private_key_open(sealed, kid="k1", sealed_with=kek_id(KEK), keks=[other])
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(KeyDecryptError, match="authentication failed"):
        private_key_open(bytes(tampered), kid="k1", sealed_with=kek_id(KEK), keks=[KEK])
    with pytest.raises(KeyDecryptError, match="bad format"):
        private_key_open(b"\x02" + sealed[1:], kid="k1", sealed_with=kek_id(KEK), keks=[KEK])
    with pytest.raises(KeyDecryptError, match="erased"):
        private_key_open(b"", kid="k1", sealed_with=kek_id(KEK), keks=[KEK])


def test_fallback_keks_open_older_rows():
    sealed = private_key_seal(b"x", kid="k1", kek=KEK)
    assert private_key_open(sealed, kid="k1", sealed_with=kek_id(KEK), keks=[b"n" * 32, KEK])


def test_kek_id_reveals_nothing_usable():
    assert len(kek_id(KEK)) == 16 and KEK.hex()[:16] != kek_id(KEK)


def print_kek_length(env):
    return manage(
        "shell",
        "-c",
        "from django.conf import settings as s; print(len(s.AUTHSERVER_KEY_ENCRYPTION_KEY))",
        "--no-imports",
        env=env,
    )


def test_production_refuses_to_start_without_a_kek():
    env = production_env(AUTHSERVER_KEY_ENCRYPTION_KEY="<unset>")
    assert_refused(manage("check", env=env), "AUTHSERVER_KEY_ENCRYPTION_KEY")


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"AUTHSERVER_KEY_ENCRYPTION_KEY": "too-short"}, "AUTHSERVER_KEY_ENCRYPTION_KEY"),
        ({"AUTHSERVER_KEY_ENCRYPTION_KEY": "!" * 43}, "AUTHSERVER_KEY_ENCRYPTION_KEY"),
        (
            {"AUTHSERVER_KEY_ENCRYPTION_KEY_FILE": "/nonexistent/kek"},
            "AUTHSERVER_KEY_ENCRYPTION_KEY_FILE",
        ),
        (
            {"AUTHSERVER_KEY_ENCRYPTION_KEY_FALLBACKS": "nope"},
            "AUTHSERVER_KEY_ENCRYPTION_KEY_FALLBACKS",
        ),
        ({"AUTHSERVER_SIGNING_ALG": "HS256"}, "AUTHSERVER_SIGNING_ALG"),
        ({"AUTHSERVER_RSA_KEY_SIZE": "1024"}, "AUTHSERVER_RSA_KEY_SIZE"),
        ({"AUTHSERVER_ACCESS_TOKEN_TTL": "5"}, "AUTHSERVER_ACCESS_TOKEN_TTL"),
        ({"AUTHSERVER_TOKEN_LEEWAY": "3600"}, "AUTHSERVER_TOKEN_LEEWAY"),
        (
            {"AUTHSERVER_JWKS_MAX_AGE": "3600", "AUTHSERVER_KEY_ACTIVATION_DELAY": "600"},
            "AUTHSERVER_KEY_ACTIVATION_DELAY",
        ),
        (
            {"AUTHSERVER_ACCESS_TOKEN_TTL": "7200", "AUTHSERVER_SIGNED_TOKEN_MAX_LIFETIME": "3600"},
            "AUTHSERVER_SIGNED_TOKEN_MAX_LIFETIME",
        ),
    ],
)
def test_bad_key_settings_give_one_line_naming_the_variable(overrides, variable):
    assert_refused(manage("check", env=base_env(**overrides)), variable)


def test_kek_and_kek_file_together_are_refused(tmp_path):
    path = tmp_path / "kek"
    path.write_text(secrets.token_urlsafe(32))
    env = base_env(AUTHSERVER_KEY_ENCRYPTION_KEY_FILE=str(path))
    assert_refused(manage("check", env=env), "AUTHSERVER_KEY_ENCRYPTION_KEY_FILE")


def test_kek_from_a_mounted_secret_file(tmp_path):
    path = tmp_path / "kek"
    path.write_text(secrets.token_urlsafe(32) + "\n")
    env = production_env(
        AUTHSERVER_KEY_ENCRYPTION_KEY="<unset>", AUTHSERVER_KEY_ENCRYPTION_KEY_FILE=str(path)
    )
    result = print_kek_length(env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "32"


def test_standard_base64_is_accepted_too():
    import base64

    text = base64.b64encode(secrets.token_bytes(32)).decode()
    result = print_kek_length(base_env(AUTHSERVER_KEY_ENCRYPTION_KEY=text))
    assert result.returncode == 0, result.stderr


def test_development_generates_a_kek_into_var_once():
    env = base_env()
    env.pop("AUTHSERVER_KEY_ENCRYPTION_KEY", None)
    env["AUTHSERVER_MODE"] = "development"
    first = print_kek_length(env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "32"
    path = ROOT / "var" / "key_encryption_key"
    assert path.exists()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    before = path.read_text()
    assert print_kek_length(env).returncode == 0
    assert path.read_text() == before
