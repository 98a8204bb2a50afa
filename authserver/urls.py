"""Root URLconf: mounts every app and the well-known endpoints in one place."""

from django.contrib import admin
from django.urls import include, path

from authserver import api_docs, health, metrics
from branding import views as branding_views
from oauth.endpoints import discovery as oauth_discovery
from tokens import views as token_views

# The admin's header and title name the brand (templates/admin/base_site.html); these are the
# fallbacks for a template that reads them directly.
admin.site.site_header = "authserver administration"
admin.site.site_title = "authserver admin"
admin.site.index_title = "Users, clients, keys and sessions"

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path(".well-known/jwks.json", token_views.jwks, name="jwks"),
    path(
        ".well-known/openid-configuration",
        oauth_discovery.openid_configuration,
        name="openid-configuration",
    ),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    # The brand colours as CSS custom properties (branding/stylesheet.py).
    path("brand.css", branding_views.brand_css, name="brand-css"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("sessions.urls")),
    # OAuth 2.0 / OpenID Connect: authorize, token, userinfo, revoke, introspect, end-session.
    path("oauth/", include("oauth.urls")),
    # Off in production unless AUTHSERVER_API_DOCS says otherwise (authserver/api_docs.py).
    path("api/schema/", api_docs.api_schema, name="schema"),
    path("api/docs/", api_docs.api_docs, name="api-docs"),
    # The account pages: profile, password, sessions, connected apps, security log, deletion.
    path("account/", include("selfservice.urls")),
    # Hosted pages for people: / (signed-in landing), /login, /logout.
    path("", include("accounts.urls")),
]

# Django's error pages, with the hosted pages' Content-Security-Policy (authserver/pages.py).
handler400 = "authserver.pages.bad_request"
handler403 = "authserver.pages.permission_denied"
handler404 = "authserver.pages.page_not_found"
handler500 = "authserver.pages.server_error"
