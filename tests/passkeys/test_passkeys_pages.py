"""Passkeys on the account pages and in the admin, in-process: rename, removal behind a recent
sign-in, another person's passkey is a 404, the admin lists passkeys without key material and
"Reset second factors" removes them, turning two-step verification off removes them too."""

from __future__ import annotations

import json
import time

import pytest
from django.urls import reverse

from accounts.login_flow import AUTH_TIME_SESSION_KEY
from audit.events import EventType
from audit.models import AuthEvent
from mfa import selectors, services
from passkeys.models import Passkey
from tests.passkeys.softkey import SoftKey, b64u

CREDENTIAL_ID = "Y3JlZGVudGlhbC1pZC1vZi1hbGljZQ"
PUBLIC_KEY = b"\xa5\x01\x02\x03\x26 not a real cose key"


def _passkey(user, name="Laptop", credential_id=CREDENTIAL_ID, **extra) -> Passkey:
    return Passkey.objects.create(
        user=user, name=name, credential_id=credential_id, public_key=PUBLIC_KEY, **extra
    )


def _sign_in(client, user, *, recent: bool) -> None:
    client.force_login(user)
    session = client.session
    session[AUTH_TIME_SESSION_KEY] = int(time.time()) - (0 if recent else 86_400)
    session.save()


@pytest.mark.django_db
def test_passkeys_are_a_second_factor_method_unless_flagged(make_user):
    alice = make_user(username="alice")
    assert selectors.user_methods(user=alice) == []
    passkey = _passkey(alice)
    assert selectors.user_methods(user=alice) == [selectors.PASSKEY]
    assert selectors.user_has_second_factor(user=alice)
    Passkey.objects.filter(pk=passkey.pk).update(flagged_at=passkey.created_at)
    assert selectors.user_methods(user=alice) == []


@pytest.mark.django_db
def test_overview_lists_passkeys_and_rename_works(client, make_user):
    alice = make_user(username="alice")
    passkey = _passkey(alice)
    _sign_in(client, alice, recent=False)
    page = client.get(reverse("account:mfa")).content.decode()
    assert "Laptop" in page and CREDENTIAL_ID not in page
    url = reverse("account:passkey-rename", args=[passkey.pk])
    assert client.get(url).status_code == 200
    response = client.post(url, {"name": "  Work   laptop "})
    assert response.status_code == 303
    passkey.refresh_from_db()
    assert passkey.name == "Work laptop"


@pytest.mark.django_db
def test_removal_needs_a_recent_sign_in(client, make_user):
    alice = make_user(username="alice")
    passkey = _passkey(alice)
    _sign_in(client, alice, recent=False)
    url = reverse("account:passkey-remove", args=[passkey.pk])
    response = client.post(url)
    assert response.status_code == 303 and "prompt=login" in response["Location"]
    assert Passkey.objects.filter(pk=passkey.pk).exists()
    # Adding one needs it too, and its options are refused in JSON.
    assert "prompt=login" in client.get(reverse("account:passkey-add"))["Location"]
    options = client.post(reverse("account:passkey-options"))
    assert options.status_code == 403 and options.json()["error"] == "reauthentication_required"

    _sign_in(client, alice, recent=True)
    assert client.get(url).status_code == 200
    response = client.post(url)
    assert response.status_code == 303 and response["Location"] == reverse("account:mfa")
    assert not Passkey.objects.filter(pk=passkey.pk).exists()
    event = AuthEvent.objects.get(event_type=EventType.MFA_REMOVED)
    assert event.details["method"] == "passkey" and event.user == alice


@pytest.mark.django_db
def test_someone_elses_passkey_is_not_found(client, make_user):
    alice, mallory = make_user(username="alice"), make_user(username="mallory")
    passkey = _passkey(alice)
    _sign_in(client, mallory, recent=True)
    for name in ("account:passkey-rename", "account:passkey-remove"):
        assert client.post(reverse(name, args=[passkey.pk]), {"name": "x"}).status_code == 404
    assert Passkey.objects.get(pk=passkey.pk).name == "Laptop"


@pytest.mark.django_db
def test_registration_options_follow_the_issuer(client, make_user, settings):
    settings.AUTHSERVER_ISSUER = "https://id.example.com:8443"
    alice = make_user(username="alice")
    _passkey(alice)
    _sign_in(client, alice, recent=True)
    options = client.post(reverse("account:passkey-options"))
    assert options.status_code == 200 and "no-store" in options["Cache-Control"]
    data = options.json()
    assert data["rp"]["id"] == "id.example.com"
    assert [c["id"] for c in data["excludeCredentials"]] == [CREDENTIAL_ID]
    assert data["extensions"] == {"credProps": True}
    assert client.post(reverse("account:passkey-options")).json()["challenge"] != data["challenge"]


@pytest.mark.django_db
def test_admin_lists_passkeys_without_key_material_and_reset_removes_them(client, make_user):
    client.force_login(make_user(username="root", is_staff=True, is_superuser=True))
    alice = make_user(username="alice")
    _passkey(alice, name="Blue key")
    page = client.get(reverse("admin:accounts_user_change", args=[alice.pk])).content.decode()
    assert "passkey Blue key" in page and CREDENTIAL_ID not in page
    response = client.post(
        reverse("admin:accounts_user_changelist"),
        {"action": "reset_second_factors", "_selected_action": [alice.pk]},
    )
    assert response.status_code == 302
    assert not Passkey.objects.filter(user=alice).exists()
    assert AuthEvent.objects.get(event_type=EventType.MFA_RESET).details["count"] == 1


@pytest.mark.django_db
def test_turning_two_step_verification_off_removes_passkeys(make_user):
    alice = make_user(username="alice")
    _passkey(alice)
    assert services.second_factors_remove(user=alice) == 1
    assert not Passkey.objects.filter(user=alice).exists()


@pytest.mark.django_db
def test_security_log_says_which_events_were_a_passkey(client, make_user):
    alice = make_user(username="alice")
    passkey = _passkey(alice)
    _sign_in(client, alice, recent=True)
    client.post(reverse("account:passkey-remove", args=[passkey.pk]))
    page = client.get(reverse("account:activity")).content.decode()
    assert "passkey" in page and CREDENTIAL_ID not in page


@pytest.mark.django_db
def test_bad_registrations_are_refused_with_a_readable_error(client, make_user, settings):
    settings.AUTHSERVER_ISSUER = "https://id.example.com"
    alice = make_user(username="alice")
    _sign_in(client, alice, recent=True)
    url = reverse("account:passkey-add")

    def attempt(bend) -> str:
        options = client.post(reverse("account:passkey-options")).json()
        key = SoftKey(rp_id="id.example.com", origin="https://id.example.com")
        credential = json.loads(key.register(options))
        bend(credential, key, options)
        response = client.post(url, {"name": "x", "credential": json.dumps(credential)})
        assert response.status_code == 400
        assert "The passkey was not added." in response.content.decode()
        return (
            AuthEvent.objects.filter(event_type=EventType.MFA_FAILED).latest("id").details["reason"]
        )

    def other_origin(credential, key, options):
        key.origin = "https://evil.example"
        credential.update(json.loads(key.register(options)))

    def other_rp(credential, key, options):
        key.rp_id = "evil.example"
        credential.update(json.loads(key.register(options)))

    def garbage(credential, key, options):
        credential["response"]["attestationObject"] = b64u(b"\xa3garbage")

    def stale(credential, key, options):
        key.register(options)  # the challenge of these options ...
        client.post(url, {"name": "x", "credential": json.dumps(credential)})  # ... used once

    assert attempt(other_origin) == "origin_mismatch"
    assert attempt(other_rp) == "rp_id_mismatch"
    assert attempt(garbage) == "malformed"
    assert attempt(stale) == "challenge_mismatch"
    # Only the one registration that was accepted (the stale case's first use) is stored.
    assert Passkey.objects.filter(user=alice).count() == 1
