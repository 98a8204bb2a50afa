"""CVE-2024-22513 (djangorestframework-simplejwt, GHSA-5vcc-86wm-547q): an access token of a user
who has since been deactivated kept authenticating, because the stateless path never looked at
`is_active`. authserver builds its DRF authentication on simplejwt, so the same class of bug is
checked on every path that accepts authserver's tokens, over HTTP against gunicorn: the
first-party API, UserInfo, introspection, and both refresh grants.

Deactivation is done two ways: through `user_deactivate` (what the admin's "active" checkbox and
action call, which also ends the sessions) and by a bare `UPDATE ... is_active = false` that
bypasses every service (a script, a SQL console), which only the per-request checks can catch.
"""

from __future__ import annotations

import pytest

from accounts.models import User
from accounts.services import user_deactivate
from tests.security.battery import register, register_resource_server, serve

pytestmark = pytest.mark.slow


@pytest.fixture
def server(child_env, settings):
    with serve(child_env, settings) as live:
        yield live


def _everything(server):
    """alice's credentials on every path: a first-party pair, an OAuth pair with openid, and a
    resource server able to introspect them."""
    app = register()
    inspector = register_resource_server()
    first_party = server.tokens()
    oauth = server.oauth_tokens(server.browser(), app)
    # Before: every credential works, so the refusals after are caused by the deactivation.
    assert server.me(first_party["access_token"]).status_code == 200
    assert server.userinfo(oauth["access_token"]).status_code == 200
    for token in (first_party["access_token"], oauth["access_token"], oauth["refresh_token"]):
        assert server.introspect(inspector, token)["active"] is True
    return app, inspector, first_party, oauth


def _all_refused(server, app, inspector, first_party, oauth) -> None:
    me = server.me(first_party["access_token"])
    assert me.status_code == 401 and me.json()["error"] == "invalid_token", me.text
    info = server.userinfo(oauth["access_token"])
    assert info.status_code == 401, info.text
    for token in (
        first_party["access_token"],
        first_party["refresh_token"],
        oauth["access_token"],
        oauth["refresh_token"],
    ):
        assert server.introspect(inspector, token) == {"active": False}
    refreshed = server.refresh(first_party["refresh_token"])
    assert refreshed.status_code == 401 and refreshed.json()["error"] == "invalid_grant"
    refreshed = server.oauth_refresh(app, oauth["refresh_token"])
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    # And no new sign-in: the same answer as a wrong password (no account enumeration).
    login = server.login()
    assert login.status_code == 401 and login.json()["error"] == "invalid_grant", login.text


def test_deactivated_through_the_service_nothing_authenticates(server):
    """CVE-2024-22513: after `user_deactivate`, none of the user's access or refresh tokens
    authenticates anywhere (first-party API, UserInfo, introspection, refresh)."""
    app, inspector, first_party, oauth = _everything(server)
    user_deactivate(user=User.objects.get(username="alice"))
    _all_refused(server, app, inspector, first_party, oauth)


def test_deactivated_behind_the_services_back_nothing_authenticates(server):
    """CVE-2024-22513, the stateless variant: `is_active` flipped by a bare UPDATE (sessions
    untouched) still stops every token at once, because each request checks the user."""
    app, inspector, first_party, oauth = _everything(server)
    assert User.objects.filter(username="alice").update(is_active=False) == 1
    _all_refused(server, app, inspector, first_party, oauth)


def test_sessionless_user_token_of_a_deactivated_user_is_inactive(server, child_env):
    """CVE-2024-22513 on introspection: an access token without `sid` (the operators' command
    `issue_access_token --sub <user>`) whose subject is a deactivated user is not active."""
    from tests.live import manage

    inspector = register_resource_server()
    alice = User.objects.get(username="alice")
    printed = manage("issue_access_token", "--sub", alice.sub, env=child_env)
    assert printed.returncode == 0, printed.stderr
    token = printed.stdout.strip()
    assert server.introspect(inspector, token)["active"] is True
    User.objects.filter(pk=alice.pk).update(is_active=False)
    assert server.introspect(inspector, token) == {"active": False}
