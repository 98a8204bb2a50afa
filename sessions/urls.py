"""URLs of the first-party JSON API (mounted under /api/v1/ by authserver/urls.py)."""

from django.urls import path

from sessions import apis

urlpatterns = [
    path("auth/login", apis.AuthLoginApi.as_view(), name="auth-login"),
    path("auth/mfa", apis.AuthMfaApi.as_view(), name="auth-mfa"),
    path(
        "auth/mfa/passkey-options",
        apis.AuthMfaPasskeyOptionsApi.as_view(),
        name="auth-mfa-passkey-options",
    ),
    path("auth/refresh", apis.AuthRefreshApi.as_view(), name="auth-refresh"),
    path("auth/logout", apis.AuthLogoutApi.as_view(), name="auth-logout"),
    path("auth/logout-all", apis.AuthLogoutAllApi.as_view(), name="auth-logout-all"),
    path("auth/csrf", apis.AuthCsrfApi.as_view(), name="auth-csrf"),
    path("me", apis.UserMeApi.as_view(), name="me"),
    path("sessions", apis.SessionListApi.as_view(), name="sessions"),
    path("sessions/<str:session_id>", apis.SessionDeleteApi.as_view(), name="session-delete"),
]
