"""Issue 14, items 2 and 8: who may change the signing-key store, and what a corrupt key row may
take down.

Item 2: a process started with another AUTHSERVER_KEY_ENCRYPTION_KEY than the one that sealed the
store's keys never creates, activates, retires, removes or revokes a key, whatever triggers it
(the automatic check on request, `rotate_signing_keys`, the admin). Otherwise it would seal a new
key with its own KEK, make it sign, and every correctly configured instance would stop signing.

Item 8: a retired or next key whose ciphertext or public JWK is corrupt is left out of the JWKS
and the signing keys and reported (/readyz, the log); the rest keeps serving. A corrupt active
key stops signing, but the JWKS still serves the healthy keys.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from datetime import timedelta

import jwt
import pytest
import requests
from django.utils import timezone

from accounts.services import user_create
from authserver import settings as app_settings
from tests.conftest import PASSWORD
from tests.live import Gunicorn, manage
from tests.scale.client import admin_rotate, admin_session, jwks_kids, jwt_part, login
from tokens import keys
from tokens.models import SigningKey
from tokens.rotation import (
    SigningKeyError,
    signing_key_create_first,
    signing_key_revoke,
    signing_key_rotate,
    signing_keys_maintain,
    signing_keys_reencrypt,
)

State = SigningKey.State
REFUSAL = "will not create, rotate or remove signing keys"
WRONG_KEK = "different key-encryption key"


def key_table() -> list[tuple]:
    """Every stored fact about every key, ciphertext included: equal means nothing was written."""
    return sorted(
        (
            row.kid,
            row.state,
            row.kek_id,
            row.created_at,
            row.activate_at,
            row.activated_at,
            row.retired_at,
            row.remove_after,
            row.removed_at,
            row.revoked_at,
            repr(row.public_jwk),
            bytes(row.private_key_ciphertext),
        )
        for row in SigningKey.objects.all()
    )


def rotation_due_by_age(days: int = 100) -> str:
    """Backdate the active key so that AUTHSERVER_KEY_ROTATION_DAYS (90 by default) has passed."""
    active = SigningKey.objects.get(state=State.ACTIVE)
    SigningKey.objects.filter(pk=active.pk).update(
        created_at=active.created_at - timedelta(days=days),
        activate_at=active.created_at - timedelta(days=days),
        activated_at=active.created_at - timedelta(days=days),
    )
    return active.kid


@pytest.fixture
def account(child_env, settings):
    """A user the child processes can sign in (hashed with the production hasher list)."""
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS

    def make(username: str, **extra):
        return user_create(
            username=username, email=f"{username}@example.com", password=PASSWORD, **extra
        )

    return make


# --- Item 2: a wrong-KEK process only reads ------------------------------------------------------


@pytest.mark.django_db
def test_services_refuse_every_change_to_a_store_sealed_with_another_kek(settings):
    """Issue 14.2: create, activate, retire, remove, revoke and re-encrypt are refused, before
    any write, by a process that does not hold the KEK of the active key."""
    now = timezone.now()
    signing_key_create_first(now=now - timedelta(days=100))
    signing_key_rotate(now=now - timedelta(days=100), immediate=True)  # a retired key...
    retired = SigningKey.objects.get(state=State.RETIRED)
    SigningKey.objects.filter(pk=retired.pk).update(remove_after=now - timedelta(days=1))
    signing_key_rotate(now=now - timedelta(days=100))  # ...and a next key, both due now
    before = key_table()
    right_kek = settings.AUTHSERVER_KEY_ENCRYPTION_KEY

    settings.AUTHSERVER_KEY_ENCRYPTION_KEY = secrets.token_bytes(32)
    keys.keyring_reset()
    for change in (
        lambda: signing_keys_maintain(now=now),
        lambda: signing_key_rotate(now=now),
        lambda: signing_key_rotate(now=now, immediate=True),
        lambda: signing_key_revoke(kid=retired.kid, now=now),
        signing_keys_reencrypt,
    ):
        with pytest.raises(SigningKeyError, match=REFUSAL) as refused:
            change()
        assert WRONG_KEK in str(refused.value)
    assert signing_key_create_first(now=now) is None  # the store is not empty: no first key
    # The automatic check on request performs nothing either; signing stays unavailable here.
    with pytest.raises(keys.KeyStoreUnavailable):
        keys.active_signing_key(now)
    ready, reason = keys.keystore_state(now)
    assert not ready and REFUSAL in reason and WRONG_KEK in reason
    assert key_table() == before

    # Holding the store's KEK (here as a fallback, as during a KEK rotation) is what it takes.
    settings.AUTHSERVER_KEY_ENCRYPTION_KEY_FALLBACKS = [right_kek]
    keys.keyring_reset()
    change = signing_keys_maintain(now=now)
    assert change.activated and change.removed == [retired.kid]


@pytest.mark.django_db
def test_first_key_is_created_by_whoever_finds_the_store_empty(settings):
    """Issue 14.2: with no key at all, first-key creation stays allowed (under the store's
    lock, which re-checks that the store is still empty)."""
    settings.AUTHSERVER_KEY_ENCRYPTION_KEY = secrets.token_bytes(32)
    first = keys.active_signing_key()
    assert SigningKey.objects.get().kid == first.kid


def test_rotate_command_with_a_wrong_kek_exits_1_with_one_line_and_writes_nothing(child_env):
    """Issue 14.2: `rotate_signing_keys` in every writing mode, run with a wrong KEK while a
    rotation is due, exits 1 with one line naming the cause and leaves the table as it was."""
    first = manage("rotate_signing_keys", "--check", env=child_env)
    assert first.returncode == 0, first.stderr
    kid = rotation_due_by_age()
    before = key_table()
    wrong = {**child_env, "AUTHSERVER_KEY_ENCRYPTION_KEY": secrets.token_urlsafe(32)}
    for mode in (["--if-due"], ["--activate-now"], [], ["--revoke", kid], ["--reencrypt"]):
        result = manage("rotate_signing_keys", *mode, env=wrong)
        assert result.returncode == 1, (mode, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (mode, result.stderr)
        assert REFUSAL in lines[0] and WRONG_KEK in lines[0] and kid in lines[0]
        assert result.stdout == ""
    assert key_table() == before
    # The rotation was due: the right KEK performs it.
    done = manage("rotate_signing_keys", "--if-due", env=child_env)
    assert done.returncode == 0 and "published" in done.stdout, done.stderr
    assert SigningKey.objects.filter(state=State.NEXT).count() == 1


@contextlib.contextmanager
def instances(*envs, tmp_path):
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(
                Gunicorn({**env, "AUTHSERVER_METRICS_DIR": str(tmp_path / f"metrics-{n}")}, 1)
            )
            for n, env in enumerate(envs)
        ]


@pytest.mark.slow
def test_wrong_kek_instance_never_takes_signing_from_the_right_one(child_env, account, tmp_path):
    """Issue 14.2: two gunicorn instances on one database, A with the store's KEK, B with
    another one and a rotation schedule that says a rotation is due. Requests, the admin and
    the management command on B change nothing; A keeps signing with the same key."""
    account("alice")
    account("root", is_staff=True, is_superuser=True)
    assert manage("rotate_signing_keys", "--check", env=child_env).returncode == 0
    kid = rotation_due_by_age(days=2)  # due for B (1 day), not for A (90 days)
    before = key_table()
    wrong = {
        **child_env,
        "AUTHSERVER_KEY_ENCRYPTION_KEY": secrets.token_urlsafe(32),
        "AUTHSERVER_KEY_ROTATION_DAYS": "1",
    }
    with instances(child_env, wrong, tmp_path=tmp_path) as (a, b):
        # B: readiness says why; JWKS, sign-in, the admin's "activate now", twice over the
        # one-second check interval, then the cron command.
        for _ in range(2):
            ready = requests.get(b.url + "/readyz", timeout=20)
            assert ready.status_code == 503
            assert REFUSAL in ready.json()["reason"] and WRONG_KEK in ready.json()["reason"]
            assert jwks_kids(b.url) == [kid]
            refused = login(b.url, "alice")
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"] == "temporarily_unavailable"
            time.sleep(1.1)
        admin_rotate(admin_session(b.url, "root"), b.url, immediate=True)
        cron = manage("rotate_signing_keys", "--if-due", env=wrong)
        assert cron.returncode == 1 and REFUSAL in cron.stderr

        assert key_table() == before
        # A: still ready, still signing with the store's key, and its JWKS verifies the token.
        assert requests.get(a.url + "/readyz", timeout=20).status_code == 200
        issued = login(a.url, "alice")
        assert issued.status_code == 200, issued.text
        token = issued.json()["access_token"]
        assert jwt_part(token, 0)["kid"] == kid
        jwks = jwt.PyJWKSet.from_dict(requests.get(a.url + "/.well-known/jwks.json").json())
        assert jwt.decode(
            token,
            jwks[kid].key,
            algorithms=["RS256"],
            audience=child_env["AUTHSERVER_ISSUER"] + "/api",
            issuer=child_env["AUTHSERVER_ISSUER"],
        )["sub"]
    log = b.output()
    assert REFUSAL in log
    assert log.count(REFUSAL) <= 2, "logged per request, not once"
    assert "Traceback" not in log + a.output()
    assert key_table() == before


# --- Item 8: a corrupt key row is left out, the rest keeps serving -------------------------------


def corrupt(kid: str, **fields) -> None:
    SigningKey.objects.filter(kid=kid).update(**fields)


GARBAGE = b"not a sealed key " * 8
MALFORMED_JWK = {"kty": "RSA", "n": "not*base64url", "e": "AQAB"}


@pytest.mark.slow
def test_corrupt_retired_and_next_keys_are_left_out_and_signing_goes_on(child_env, account):
    """Issue 14.8: a retired key with garbage ciphertext, a retired key with a malformed public
    JWK and a next key with garbage ciphertext: the active key signs, the JWKS serves the sound
    keys, /readyz stays ready and lists the three kids, the log names each once."""
    account("alice")
    signing_key_create_first()
    for _ in range(3):
        signing_key_rotate(immediate=True)
    signing_key_rotate()
    ordered = SigningKey.objects.order_by("created_at").values_list("kid", flat=True)
    bad_cipher, bad_jwk, sound_retired, active, bad_next = ordered
    corrupt(bad_cipher, private_key_ciphertext=GARBAGE)
    corrupt(bad_jwk, public_jwk=MALFORMED_JWK)
    corrupt(bad_next, private_key_ciphertext=b"\x01" + secrets.token_bytes(64))

    with Gunicorn(child_env, workers=1) as server:
        for _ in range(3):
            assert jwks_kids(server.url) == [active, sound_retired]
        issued = login(server.url, "alice")
        assert issued.status_code == 200, issued.text
        assert jwt_part(issued.json()["access_token"], 0)["kid"] == active
        for _ in range(2):
            ready = requests.get(server.url + "/readyz", timeout=20)
            assert ready.status_code == 200, ready.text
            body = ready.json()
            assert body["status"] == "ready"
            unusable = body["unusable_signing_keys"]
            assert set(unusable) == {bad_cipher, bad_jwk, bad_next}
            assert "corrupt" in unusable[bad_cipher] and "corrupt" in unusable[bad_next]
            assert unusable[bad_jwk].startswith(f"retired signing key {bad_jwk} is corrupt")
            assert f"active kid {active}" in body["checks"]["signing_keys"]
    log = server.output()
    for kid in (bad_cipher, bad_jwk, bad_next):
        assert log.count(unusable[kid]) == 1, kid  # once per process, not per request
    assert "Traceback" not in log
    assert bytes(GARBAGE).hex() not in log


@pytest.mark.slow
def test_corrupt_active_key_stops_signing_but_the_jwks_serves_the_sound_keys(child_env, account):
    """Issue 14.8: a corrupt active key is fatal for signing (503 temporarily_unavailable),
    not for the JWKS, which keeps serving the other published keys."""
    account("alice")
    signing_key_create_first()
    signing_key_rotate(immediate=True)
    retired = SigningKey.objects.get(state=State.RETIRED).kid
    active = SigningKey.objects.get(state=State.ACTIVE).kid
    corrupt(active, private_key_ciphertext=GARBAGE)

    with Gunicorn(child_env, workers=1) as server:
        refused = login(server.url, "alice")
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "temporarily_unavailable"
        assert jwks_kids(server.url) == [retired]
        ready = requests.get(server.url + "/readyz", timeout=20)
        assert ready.status_code == 503
        assert f"active signing key {active} cannot be decrypted" in ready.json()["reason"]
        assert set(ready.json()["unusable_signing_keys"]) == {active}
        # A malformed public JWK on the active key: the same.
        corrupt(active, public_jwk=MALFORMED_JWK)
    with Gunicorn(child_env, workers=1) as server:
        assert login(server.url, "alice").status_code == 503
        assert jwks_kids(server.url) == [retired]
    assert "Traceback" not in server.output()


@pytest.mark.django_db
def test_a_due_next_key_that_is_not_sound_is_never_activated():
    """Issue 14.8: maintenance checks the public JWK too before a next key signs (it used to
    check only the ciphertext, and would have made a key with a corrupt public part active)."""
    now = timezone.now()
    old = keys.active_signing_key(now).kid
    (waiting,) = signing_key_rotate(now=now).published
    row = SigningKey.objects.get(kid=waiting)
    corrupt(waiting, public_jwk={**row.public_jwk, "e": "AAE"})
    keys.keyring_reset()
    due = row.activate_at + timedelta(seconds=1)
    assert keys.active_signing_key(due).kid == old
    assert waiting in keys.unusable_keys()
    assert not signing_keys_maintain(now=due).activated
    assert SigningKey.objects.get(kid=waiting).state == State.NEXT
    assert SigningKey.objects.get(kid=old).state == State.ACTIVE


@pytest.mark.django_db
def test_a_corrupt_active_key_is_replaced_by_an_operator_holding_the_kek():
    """Issue 14.2/14.8: the refusal is about the KEK, not any decryption failure: with the
    store's KEK, `--activate-now` replaces a corrupt active key (the recovery path), and the
    corrupt row stays out of the JWKS while it is retired."""
    now = timezone.now()
    broken = keys.active_signing_key(now).kid
    corrupt(broken, private_key_ciphertext=GARBAGE)
    keys.keyring_reset()
    with pytest.raises(keys.KeyStoreUnavailable):
        keys.active_signing_key(now)
    change = signing_key_rotate(now=now, immediate=True)
    assert change.retired == [broken]
    (fresh,) = change.activated
    assert keys.active_signing_key(now).kid == fresh
    assert [key.kid for key in keys.published_keys(now)] == [fresh]
    assert broken in keys.unusable_keys()
