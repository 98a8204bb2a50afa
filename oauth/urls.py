"""OAuth 2.0 / OpenID Connect endpoints, mounted under /oauth/ by authserver/urls.py.

/.well-known/openid-configuration (oauth.endpoints.discovery) is mounted there too.
"""

from django.urls import path

from oauth.endpoints import authorize, end_session, introspect, revoke, token, userinfo

app_name = "oauth"

urlpatterns = [
    path("authorize", authorize.authorization_endpoint, name="authorize"),
    path("authorize/decision", authorize.consent_decision, name="consent"),
    path("token", token.token_endpoint, name="token"),
    path("userinfo", userinfo.UserinfoEndpoint.as_view(), name="userinfo"),
    path("revoke", revoke.revocation_endpoint, name="revoke"),
    path("introspect", introspect.introspection_endpoint, name="introspect"),
    path("end-session", end_session.end_session_endpoint, name="end-session"),
    path("end-session/confirm", end_session.end_session_confirm, name="end-session-confirm"),
]
