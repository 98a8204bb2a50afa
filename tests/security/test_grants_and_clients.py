"""Issue 13 (grants and clients), findings 1, 4, 7 and 12, over HTTP against authserver under
gunicorn on PostgreSQL. Clients, consents and admin actions are changed in this process (the
admin views through Django's test client, the services directly), as an operator would; every
token is then judged by the running server through its public endpoints."""

from __future__ import annotations

import time
from datetime import timedelta
from io import StringIO

import jwt
import pytest
from django.core.management import CommandError, call_command
from django.test import Client as BrowserClient
from django.utils import timezone

from accounts.services import user_create
from audit.models import AuthEvent
from authserver import settings as app_settings
from oauth.clients import ClientError, client_create, client_deactivate, client_update
from oauth.consents import consent_withdraw
from oauth.models import Client, Consent
from sessions.models import Session
from tests.conftest import PASSWORD
from tests.security.live_oauth import (
    bearer_get,
    bearer_post,
    eventually,
    first_party_login,
    first_party_refresh,
    introspect,
    machine_token,
    refresh,
    revoke,
    start_server,
    user_tokens,
)
from tokens.models import RevokedAccessToken

pytestmark = pytest.mark.slow

SCOPE = "openid profile email offline_access"


@pytest.fixture
def server(child_env, settings):
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS  # the child's hasher list
    user_create(username="alice", email="alice@example.com", password=PASSWORD)
    user_create(username="bob", email="bob@example.com", password=PASSWORD)
    with start_server(child_env, settings) as running:
        yield running


@pytest.fixture
def admin_browser(server):
    admin = user_create(username="root", email="root@example.com", password=PASSWORD)
    admin.is_staff = admin.is_superuser = True
    admin.save()
    browser = BrowserClient()
    browser.force_login(admin)
    return browser


def web_app(name: str = "Web App", **extra) -> tuple[str, str]:
    created = client_create(
        name=name,
        client_type="confidential",
        grant_types=["authorization_code", "refresh_token"],
        redirect_uris=["http://127.0.0.1:9/callback"],
        scopes=SCOPE.split(),
        **extra,
    )
    return created.client.client_id, created.secret


def machine(name: str = "Machine") -> tuple[str, str]:
    created = client_create(
        name=name,
        client_type="confidential",
        grant_types=["client_credentials"],
        scopes=["orders:read"],
    )
    return created.client.client_id, created.secret


def resource_server() -> tuple[str, str]:
    created = client_create(
        name="Orders API",
        client_type="confidential",
        grant_types=["client_credentials"],
        scopes=["introspect"],
        is_resource_server=True,
    )
    return created.client.client_id, created.secret


def active(server, rs, token: str) -> bool:
    return introspect(server, rs, token)["active"]


def admin_change_form(client: Client, **changes) -> dict:
    """The client admin's change form as submitted, with `changes` applied."""
    form = {
        "name": client.name,
        "redirect_uris": client.redirect_uris,
        "post_logout_redirect_uris": client.post_logout_redirect_uris,
        "grant_types": client.grant_type_list,
        "scopes": client.scopes,
        "audiences": client.audiences,
        "access_token_lifetime": client.access_token_lifetime or "",
    }
    if client.is_active:
        form["is_active"] = "on"
    form.update(changes)
    return {k: v for k, v in form.items() if v is not None}


# --- 13.1 Confused deputy -----------------------------------------------------------------------


def test_oauth_client_tokens_are_refused_by_the_first_party_api(server, settings):
    """Issue 13.1 (confused deputy): an OAuth client's access token, even one with only the
    openid scope, is not accepted by /api/v1/me, /api/v1/sessions or logout-all; a client
    without a configured audience gets its own client_id as audience, never the first-party
    one; userinfo still accepts it."""
    client_id, secret = web_app()
    first_party = first_party_login(server)
    tokens = user_tokens(server, client_id, secret, scope="openid")
    access = tokens["access_token"]
    assert jwt.decode(access, options={"verify_signature": False})["aud"] == client_id

    for path in ("/api/v1/me", "/api/v1/sessions"):
        response = bearer_get(server, path, access)
        assert response.status_code == 401, (path, response.text)
        assert response.json()["error"] == "invalid_token"
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert bearer_post(server, "/api/v1/auth/logout-all", access).status_code == 401
    # logout-all did nothing: the first-party session and the client's grant both live.
    assert Session.objects.filter(revoked_at__isnull=False).count() == 0
    assert first_party_refresh(server, first_party["refresh_token"]).status_code == 200
    # A machine token (client_credentials) is refused there as well.
    m_id, m_secret = machine()
    assert (
        bearer_get(server, "/api/v1/me", machine_token(server, m_id, m_secret)).status_code == 401
    )

    # Userinfo keeps accepting the client's token (it checks the openid scope).
    info = bearer_get(server, "/oauth/userinfo", access)
    assert info.status_code == 200, info.text
    # First-party tokens still work on the first-party API.
    assert bearer_get(server, "/api/v1/me", first_party["access_token"]).status_code == 200


def test_first_party_api_checks_the_client_id_not_only_the_audience(server, settings):
    """Issue 13.1: a token issued before the fix to an OAuth client with the default audience
    (as every client without audiences got) is still refused by the first-party API: it checks
    `client_id`, not only `aud`."""
    from tokens.issuance import access_token_issue

    client_id, secret = web_app()
    user_tokens(server, client_id, secret, scope="openid")
    session = Session.objects.get(client_id=client_id)
    settings.AUTHSERVER_ISSUER = server.url  # mint as the running server does
    legacy = access_token_issue(
        subject=session.user.sub,
        audience=[server.url + "/api"],  # the child's AUTHSERVER_DEFAULT_AUDIENCE
        client_id=client_id,
        scope="openid",
        session_id=str(session.id),
    ).token
    assert bearer_get(server, "/oauth/userinfo", legacy).status_code == 200  # a valid token
    response = bearer_get(server, "/api/v1/me", legacy)
    assert response.status_code == 401
    assert response.json()["error_description"] == "Token not issued for this API."


def test_client_audience_may_not_be_the_first_party_audience(admin_browser, settings):
    """Issue 13.1: registering or changing a client with AUTHSERVER_DEFAULT_AUDIENCE as an
    audience is a validation error (service, create_client command, admin form)."""
    default = settings.AUTHSERVER_DEFAULT_AUDIENCE
    with pytest.raises(ClientError, match="AUTHSERVER_DEFAULT_AUDIENCE"):
        web_app(audiences=["https://orders.example.com", default])
    with pytest.raises(CommandError, match="AUTHSERVER_DEFAULT_AUDIENCE"):
        call_command(
            "create_client",
            "--name",
            "CLI",
            "--type",
            "confidential",
            "--grant",
            "client_credentials",
            "--audience",
            default,
            stdout=StringIO(),
        )
    client_id, _ = web_app()
    client = Client.objects.get(client_id=client_id)
    response = admin_browser.post(
        f"/admin/oauth/client/{client.pk}/change/", admin_change_form(client, audiences=default)
    )
    assert response.status_code == 200
    assert b"reserved for authserver" in response.content
    client.refresh_from_db()
    assert client.audiences == ""
    client.audiences = default
    with pytest.raises(ClientError):
        client_update(client=client)


# --- 13.4 Client lifecycle ----------------------------------------------------------------------


def test_deactivating_a_client_ends_its_tokens_and_reactivation_revives_none(server, admin_browser):
    """Issue 13.4 (client lifecycle, CVE-2025-64521 class): after the admin deactivates a
    client (change form and the list action), its access and refresh tokens, client_credentials
    ones included, are inactive at introspection and refused by userinfo; reactivating it does
    not revive them; tokens issued after reactivation work."""
    rs = resource_server()
    client_id, secret = web_app()
    m_id, m_secret = machine()
    tokens = user_tokens(server, client_id, secret)
    m_token = machine_token(server, m_id, m_secret)
    for token in (tokens["access_token"], tokens["refresh_token"], m_token):
        assert active(server, rs, token)
    assert bearer_get(server, "/oauth/userinfo", tokens["access_token"]).status_code == 200

    web = Client.objects.get(client_id=client_id)
    response = admin_browser.post(
        f"/admin/oauth/client/{web.pk}/change/", admin_change_form(web, is_active=None)
    )
    assert response.status_code == 302, response.content[:500]
    m = Client.objects.get(client_id=m_id)
    response = admin_browser.post(
        "/admin/oauth/client/", {"action": "deactivate", "_selected_action": [m.pk]}
    )
    assert response.status_code == 302
    assert not Client.objects.filter(is_active=True, client_id__in=[client_id, m_id]).exists()

    dead = (tokens["access_token"], tokens["refresh_token"], m_token)
    assert eventually(lambda: not any(active(server, rs, t) for t in dead))
    assert bearer_get(server, "/oauth/userinfo", tokens["access_token"]).status_code == 401
    assert Session.objects.get(client_id=client_id).revoked_at is not None

    # Reactivate both: the old tokens stay dead.
    for client in (Client.objects.get(client_id=client_id), Client.objects.get(client_id=m_id)):
        response = admin_browser.post(
            f"/admin/oauth/client/{client.pk}/change/", admin_change_form(client, is_active="on")
        )
        assert response.status_code == 302, response.content[:500]
    time.sleep(1.2)  # workers see the reactivation; the cutoff second has passed
    assert eventually(lambda: machine_token(server, m_id, m_secret) is not None)
    for token in dead:
        assert not active(server, rs, token)
    assert bearer_get(server, "/oauth/userinfo", tokens["access_token"]).status_code == 401
    old = refresh(server, client_id, secret, tokens["refresh_token"])
    assert old.status_code == 400 and old.json()["error"] == "invalid_grant"
    # New tokens work.
    fresh = machine_token(server, m_id, m_secret)
    assert active(server, rs, fresh)
    again = user_tokens(server, client_id, secret)
    assert bearer_get(server, "/oauth/userinfo", again["access_token"]).status_code == 200
    assert refresh(server, client_id, secret, again["refresh_token"]).status_code == 200


def test_reactivation_does_not_revive_a_token_a_stale_worker_issued(server, settings):
    """Issue 13.4 (CVE-2025-64521 class): a worker still holding the client's cached record
    may issue a token in the second after the deactivation; reactivating the client moves the
    cutoff again, so that token is not revived either."""
    from oauth.issuance import client_tokens_issue

    rs = resource_server()
    m_id, m_secret = machine()
    client = Client.objects.get(client_id=m_id)
    client_deactivate(client=client)
    time.sleep(1.1)  # past the deactivation's cutoff second
    settings.AUTHSERVER_ISSUER = server.url  # mint as the running server does
    stale = client_tokens_issue(client=client, scopes=["orders:read"])["access_token"]
    client = Client.objects.get(client_id=m_id)
    client.is_active = True
    client_update(client=client)
    time.sleep(1.1)  # past the reactivation's cutoff second; workers see the change
    fresh = machine_token(server, m_id, m_secret)
    assert active(server, rs, fresh)
    assert not active(server, rs, stale)


def test_deleting_a_client_ends_its_tokens(server, admin_browser):
    """Issue 13.4 (CVE-2025-64521 class): deleting a client (the admin's delete view and its
    delete_selected action) revokes its sessions; its access tokens, client_credentials ones
    included, are inactive at introspection and refused by userinfo."""
    rs = resource_server()
    client_id, secret = web_app()
    m_id, m_secret = machine()
    tokens = user_tokens(server, client_id, secret)
    m_token = machine_token(server, m_id, m_secret)
    assert active(server, rs, m_token) and active(server, rs, tokens["access_token"])

    web = Client.objects.get(client_id=client_id)
    response = admin_browser.post(f"/admin/oauth/client/{web.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    m = Client.objects.get(client_id=m_id)
    response = admin_browser.post(
        "/admin/oauth/client/",
        {"action": "delete_selected", "_selected_action": [m.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert not Client.objects.filter(client_id__in=[client_id, m_id]).exists()

    dead = (tokens["access_token"], tokens["refresh_token"], m_token)
    assert eventually(lambda: not any(active(server, rs, t) for t in dead))
    assert bearer_get(server, "/oauth/userinfo", tokens["access_token"]).status_code == 401
    session = Session.objects.get(client_id=client_id)
    assert session.revoked_at is not None
    assert AuthEvent.objects.filter(event_type="client.deleted").count() == 2


# --- 13.7 Consent withdrawal --------------------------------------------------------------------


def test_withdrawing_consent_ends_the_users_grant(server, admin_browser):
    """Issue 13.7 (consent withdrawal does not revoke the grant): deleting a Consent in the
    admin (delete view, delete_selected) or calling consent_withdraw ends that user's sessions
    with that client: refresh refused, access token refused by userinfo and inactive at
    introspection. Other users' grants to the client and the user's other grants live on."""
    rs = resource_server()
    one_id, one_secret = web_app("One")
    two_id, two_secret = web_app("Two")
    alice_one = user_tokens(server, one_id, one_secret)
    alice_two = user_tokens(server, two_id, two_secret)
    bob_one = user_tokens(server, one_id, one_secret, username="bob")

    consent = Consent.objects.get(user__username="alice", client__client_id=one_id)
    response = admin_browser.post(f"/admin/oauth/consent/{consent.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302, response.content[:500]

    assert bearer_get(server, "/oauth/userinfo", alice_one["access_token"]).status_code == 401
    assert not active(server, rs, alice_one["access_token"])
    assert not active(server, rs, alice_one["refresh_token"])
    refused = refresh(server, one_id, one_secret, alice_one["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    # Bob's grant to One and Alice's grant to Two are untouched.
    assert bearer_get(server, "/oauth/userinfo", bob_one["access_token"]).status_code == 200
    assert bearer_get(server, "/oauth/userinfo", alice_two["access_token"]).status_code == 200

    # Bulk deletion, then the service the account page will call.
    bob_consent = Consent.objects.get(user__username="bob", client__client_id=one_id)
    response = admin_browser.post(
        "/admin/oauth/consent/",
        {"action": "delete_selected", "_selected_action": [bob_consent.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert bearer_get(server, "/oauth/userinfo", bob_one["access_token"]).status_code == 401
    consent = Consent.objects.get(user__username="alice", client__client_id=two_id)
    assert consent_withdraw(consent=consent, actor=consent.user) == 1
    assert bearer_get(server, "/oauth/userinfo", alice_two["access_token"]).status_code == 401
    assert not Consent.objects.exists()
    assert AuthEvent.objects.filter(event_type="consent.withdrawn").count() == 3


# --- 13.12 Revoking an access token -------------------------------------------------------------


def test_revoked_access_tokens_are_refused_until_they_expire(server):
    """Issue 13.12 (revoking an access token has no effect): after RFC 7009 revocation an
    access token is inactive at introspection and refused by userinfo and the first-party API:
    a client_credentials token (no session) through the jti deny-list, a session-bound one by
    ending its session. Another token of the same client is unaffected."""
    rs = resource_server()
    m_id, m_secret = machine()
    revoked, kept = machine_token(server, m_id, m_secret), machine_token(server, m_id, m_secret)
    assert active(server, rs, revoked)
    revoke(server, (m_id, m_secret), revoked, hint="access_token")
    assert not active(server, rs, revoked)
    assert active(server, rs, kept)
    assert bearer_get(server, "/api/v1/me", revoked).status_code == 401
    row = RevokedAccessToken.objects.get()
    claims = jwt.decode(revoked, options={"verify_signature": False})
    assert row.jti == claims["jti"]
    assert int(row.expires_at.timestamp()) == claims["exp"]
    revoke(server, (m_id, m_secret), revoked)  # again: still 200, one row
    assert RevokedAccessToken.objects.count() == 1

    client_id, secret = web_app()
    tokens = user_tokens(server, client_id, secret)
    assert bearer_get(server, "/oauth/userinfo", tokens["access_token"]).status_code == 200
    revoke(server, (client_id, secret), tokens["access_token"])
    assert not active(server, rs, tokens["access_token"])
    assert bearer_get(server, "/oauth/userinfo", tokens["access_token"]).status_code == 401
    assert bearer_get(server, "/api/v1/me", tokens["access_token"]).status_code == 401


def test_purge_drops_deny_list_rows_of_expired_tokens(db):
    """Issue 13.12: the deny-list holds a row only until its token would have expired;
    purge_expired_sessions deletes the rest."""
    now = timezone.now()
    RevokedAccessToken.objects.create(jti="expired", expires_at=now - timedelta(seconds=1))
    RevokedAccessToken.objects.create(jti="live", expires_at=now + timedelta(minutes=5))
    out = StringIO()
    call_command("purge_expired_sessions", stdout=out)
    assert "deleted 1 expired revoked access token(s)" in out.getvalue()
    assert list(RevokedAccessToken.objects.values_list("jti", flat=True)) == ["live"]
