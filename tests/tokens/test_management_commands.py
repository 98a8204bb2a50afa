"""rotate_signing_keys and issue_access_token."""

from __future__ import annotations

from io import StringIO

import jwt
import pytest
from django.core.management import CommandError, call_command

from tokens import keys
from tokens.models import SigningKey
from tokens.verification import access_token_verify

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_rotate_publishes_a_key_and_list_shows_states():
    old = keys.active_signing_key().kid
    output = run("rotate_signing_keys")
    (new,) = SigningKey.objects.filter(state="next").values_list("kid", flat=True)
    assert f"published {new}" in output
    listing = run("rotate_signing_keys", "--list")
    assert f"{old}" in listing and f"{new}" in listing
    assert "next" in listing and "active" in listing


def test_activate_now_then_revoke():
    old = keys.active_signing_key().kid
    output = run("rotate_signing_keys", "--activate-now")
    assert "activated" in output and f"retired {old}" in output
    assert keys.active_signing_key().kid != old
    output = run("rotate_signing_keys", f"--revoke={old}")  # a kid may start with "-"
    assert f"revoked {old}" in output
    assert SigningKey.objects.get(kid=old).state == "revoked"


@pytest.mark.parametrize("form", ["separate", "joined"])
def test_revoke_takes_a_kid_that_starts_with_a_dash(form):
    """base64url kids start with "-" one time in 64; both spellings of the option must work."""
    keys.active_signing_key()
    run("rotate_signing_keys", "--activate-now")
    key = SigningKey.objects.get(state="retired")
    SigningKey.objects.filter(pk=key.pk).update(kid="-" + key.kid[1:])
    kid = "-" + key.kid[1:]
    args = ["--revoke", kid] if form == "separate" else [f"--revoke={kid}"]
    assert f"revoked {kid}" in run("rotate_signing_keys", *args)
    assert SigningKey.objects.get(kid=kid).state == "revoked"


def test_revoke_of_an_unknown_kid_is_a_command_error():
    keys.active_signing_key()
    with pytest.raises(CommandError, match="no signing key"):
        run("rotate_signing_keys", "--revoke", "nope")


def test_if_due_is_silent_when_nothing_is_due():
    keys.active_signing_key()
    assert run("rotate_signing_keys", "--if-due") == ""


def test_if_due_creates_the_first_key_on_an_empty_store():
    assert "activated" in run("rotate_signing_keys", "--if-due")
    assert SigningKey.objects.filter(state="active").count() == 1


def test_check_and_reencrypt():
    assert run("rotate_signing_keys", "--check").startswith("signing keys: ok")
    assert run("rotate_signing_keys", "--reencrypt") == "re-encrypted 0 key(s)\n"


def test_modes_are_exclusive():
    with pytest.raises(CommandError):
        run("rotate_signing_keys", "--list", "--check")


def test_issue_access_token_prints_only_a_valid_token():
    token = run(
        "issue_access_token",
        "--sub",
        "user-1",
        "--aud",
        "https://api.example.com",
        "--scope",
        "a b",
    ).strip()
    claims = access_token_verify(token, audience="https://api.example.com")
    assert claims["sub"] == "user-1" and claims["scope"] == "a b"
    assert claims["client_id"] == "authserver-cli"
    default = run("issue_access_token", "--sub", "x", "--lifetime", "60").strip()
    assert access_token_verify(default)["aud"] == "http://testserver/api"
    assert (
        jwt.decode(default, options={"verify_signature": False})["exp"]
        - jwt.decode(default, options={"verify_signature": False})["iat"]
        == 60
    )


def test_issue_access_token_rejects_bad_arguments():
    with pytest.raises(CommandError, match="lifetime"):
        run("issue_access_token", "--sub", "x", "--lifetime", "0")
