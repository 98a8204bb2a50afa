"""Root URLconf: mounts every app and the well-known endpoints in one place."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from authserver import health, metrics
from oauth.endpoints import discovery as oauth_discovery
from tokens import views as token_views

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
    path("admin/", admin.site.urls),
    path("api/v1/", include("sessions.urls")),
    # OAuth 2.0 / OpenID Connect: authorize, token, userinfo, revoke, introspect, end-session.
    path("oauth/", include("oauth.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    # Hosted pages for people: / (signed-in landing), /login, /logout.
    path("", include("accounts.urls")),
]
