"""Private key material appears nowhere: JWKS, admin, logs, errors, command output, the
database column and a pg_dump of it hold only ciphertext."""

from __future__ import annotations

import logging
import secrets
import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from django.db import connection
from django.urls import reverse

from tests.live import manage
from tests.tokens.conftest import AUDIENCE
from tokens import keys
from tokens.issuance import access_token_issue
from tokens.jwk import b64url, private_key_to_der
from tokens.models import SigningKey
from tokens.rotation import signing_key_revoke, signing_key_rotate


def secret_forms(settings, ciphertext: bool = True) -> list[str]:
    """Every text form a private key or the KEK could leak in (and, outside the database, the
    ciphertext: no page or log has any business showing it either)."""
    forms: list[str] = [
        "PRIVATE KEY",
        b64url(settings.AUTHSERVER_KEY_ENCRYPTION_KEY),
        settings.AUTHSERVER_KEY_ENCRYPTION_KEY.hex(),
    ]
    for row in SigningKey.objects.all() if ciphertext else ():
        sealed = bytes(row.private_key_ciphertext)
        if sealed:
            forms += [sealed.hex()[26:90], b64url(sealed)[20:80]]
    for private in keys._private_keys.values():
        numbers = private.private_numbers()
        for value in (numbers.d, numbers.p, numbers.q, numbers.dmp1, numbers.dmq1, numbers.iqmp):
            raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
            forms += [b64url(raw)[:40], raw.hex()[:40], str(value)[:40]]
        der = private_key_to_der(private)
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        forms += [der.hex()[-80:], pem.splitlines()[5]]
    return forms


def assert_clean(text: str, forms: list[str]) -> None:
    for form in forms:
        assert form not in text, f"secret material found: {form[:12]}..."


@pytest.fixture
def keys_in_every_state(db):
    keys.active_signing_key()
    signing_key_rotate(immediate=True)  # active + retired
    signing_key_rotate()  # + next
    retired = SigningKey.objects.get(state="retired")
    assert keys.active_signing_key()  # load private keys of active and next
    return retired


@pytest.mark.django_db
def test_jwks_carries_no_private_member_or_number(client, settings, keys_in_every_state):
    body = client.get("/.well-known/jwks.json").content.decode()
    for member in ('"d"', '"p"', '"q"', '"dp"', '"dq"', '"qi"'):
        assert member not in body
    assert_clean(body, secret_forms(settings))


@pytest.mark.django_db
def test_admin_pages_show_no_private_material(client, settings, keys_in_every_state):
    from accounts.models import User

    admin = User.objects.create_superuser("root", "root@example.com", "pw-for-tests-only-9")
    client.force_login(admin)
    forms = secret_forms(settings)
    changelist = client.get(reverse("admin:tokens_signingkey_changelist"))
    assert changelist.status_code == 200
    pages = [changelist.content.decode()]
    for row in SigningKey.objects.all():
        page = client.get(reverse("admin:tokens_signingkey_change", args=[row.pk]))
        assert page.status_code == 200
        assert row.kid in page.content.decode()
        pages.append(page.content.decode())
        pages.append(
            client.get(reverse("admin:tokens_signingkey_history", args=[row.pk])).content.decode()
        )
    pages.append(client.get(reverse("admin:tokens_signingkey_rotate")).content.decode())
    confirm = client.post(
        reverse("admin:tokens_signingkey_changelist"),
        {"action": "revoke_selected", "_selected_action": [r.pk for r in SigningKey.objects.all()]},
    )
    assert confirm.status_code == 200 and "Revoke" in confirm.content.decode()
    pages.append(confirm.content.decode())
    for page in pages:
        assert "ciphertext" not in page.lower()
        assert_clean(page, forms)


@pytest.mark.django_db
def test_admin_cannot_add_edit_or_delete_keys(client, keys_in_every_state):
    from accounts.models import User

    client.force_login(User.objects.create_superuser("root", "r@example.com", "pw-tests-only-9"))
    row = SigningKey.objects.get(state="active")
    assert client.get(reverse("admin:tokens_signingkey_add")).status_code == 403
    assert client.get(reverse("admin:tokens_signingkey_delete", args=[row.pk])).status_code == 403
    page = client.post(
        reverse("admin:tokens_signingkey_change", args=[row.pk]), {"state": "revoked"}
    )
    assert page.status_code == 403
    row.refresh_from_db()
    assert row.state == "active"


@pytest.mark.django_db
def test_admin_rotate_and_revoke_actions(client, keys_in_every_state):
    from accounts.models import User

    client.force_login(User.objects.create_superuser("root", "r@example.com", "pw-tests-only-9"))
    active = SigningKey.objects.get(state="active")
    response = client.post(
        reverse("admin:tokens_signingkey_changelist"),
        {"action": "revoke_selected", "_selected_action": [active.pk], "confirm": "yes"},
    )
    assert response.status_code == 302
    active.refresh_from_db()
    assert active.state == "revoked"
    assert SigningKey.objects.filter(state="active").count() == 1
    response = client.post(reverse("admin:tokens_signingkey_rotate"), {"immediate": "1"})
    assert response.status_code == 302
    staff = User.objects.create_user("staff", "s@example.com", "pw-tests-only-9", is_staff=True)
    client.force_login(staff)
    assert client.post(reverse("admin:tokens_signingkey_rotate")).status_code == 403


@pytest.mark.django_db
def test_logs_hold_no_private_material_or_token(caplog, client, settings):
    caplog.set_level(logging.DEBUG)
    issued = access_token_issue(subject="s", audience=AUDIENCE, client_id="c")
    signing_key_rotate()
    signing_key_rotate(immediate=True)
    signing_key_revoke(kid=issued.kid)
    client.get("/.well-known/jwks.json")
    client.get("/readyz")
    # A failure path too: the wrong KEK.
    forms = secret_forms(settings)
    good_kek = settings.AUTHSERVER_KEY_ENCRYPTION_KEY
    settings.AUTHSERVER_KEY_ENCRYPTION_KEY = secrets.token_bytes(32)
    keys.keyring_reset()
    client.get("/readyz")
    settings.AUTHSERVER_KEY_ENCRYPTION_KEY = good_kek
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "key.revoked" in text
    assert issued.token not in text
    assert_clean(text, forms)


@pytest.mark.django_db
def test_error_responses_hold_no_private_material(client, settings):
    keys.active_signing_key()
    forms = secret_forms(settings)
    settings.AUTHSERVER_KEY_ENCRYPTION_KEY = secrets.token_bytes(32)
    keys.keyring_reset()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert_clean(response.content.decode(), forms)
    SigningKey.objects.update(public_jwk={"kty": "RSA", "n": "AQAB", "e": "AQAB"})
    keys.keyring_reset()
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 503
    assert_clean(response.content.decode(), forms)


@pytest.mark.django_db
def test_model_str_and_repr_hold_no_private_material(settings, keys_in_every_state):
    forms = secret_forms(settings)
    for row in SigningKey.objects.all():
        assert_clean(str(row) + repr(row), forms)
    assert_clean(repr(keys.active_signing_key()) + repr(keys.keyring()), forms)
    from authserver.conf import get_config

    assert_clean(repr(get_config()), forms)


@pytest.mark.django_db
def test_database_column_holds_only_ciphertext(settings, keys_in_every_state):
    forms = secret_forms(settings)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT kid, private_key_ciphertext, public_jwk::text FROM tokens_signingkey"
        )
        rows = cursor.fetchall()
    assert len(rows) == 3
    for _kid, stored, public in rows:
        ciphertext = bytes(stored)
        assert ciphertext[:1] == b"\x01" and len(ciphertext) > 1000
        assert b"PRIVATE" not in ciphertext and b"\x30\x82" not in ciphertext[:16]
        for private in keys._private_keys.values():
            der = private_key_to_der(private)
            assert der[-64:] not in ciphertext
            d = private.private_numbers().d
            assert d.to_bytes((d.bit_length() + 7) // 8, "big")[:32] not in ciphertext
        assert_clean(public, [f for f in forms if "PRIVATE" in f or len(f) == 40])


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("pg_dump") is None, reason="pg_dump is not installed")
def test_pg_dump_shows_private_keys_only_as_ciphertext(settings, child_env):
    keys.active_signing_key()
    signing_key_rotate()
    keys.keyring_reset()
    keys.active_signing_key()  # decrypts active and next into this process
    params = connection.settings_dict
    dump = subprocess.run(
        [
            "pg_dump",
            "--data-only",
            "--table=tokens_signingkey",
            "-h",
            params.get("HOST") or "127.0.0.1",
            "-p",
            str(params.get("PORT") or 5432),
            "-U",
            params["USER"],
            params["NAME"],
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**child_env, "PGPASSWORD": params.get("PASSWORD") or ""},
    ).stdout
    assert SigningKey.objects.count() == 2
    for row in SigningKey.objects.all():
        assert row.kid in dump
    assert "\\x01" in dump  # the ciphertexts, in bytea hex
    assert_clean(dump, secret_forms(settings, ciphertext=False))
    listing = manage("rotate_signing_keys", "--list", env=child_env)
    assert listing.returncode == 0
    assert_clean(listing.stdout + listing.stderr, secret_forms(settings))
