"""The account pages, mounted at /account/ by authserver/urls.py."""

from django.urls import path

from mfa import views as mfa_views
from passkeys import views as passkey_views
from selfservice import email_views, views

app_name = "account"

urlpatterns = [
    path("", views.profile, name="profile"),
    path("email", email_views.email_change, name="email"),
    path("language", views.language, name="language"),
    path("password", views.password_change, name="password"),
    path("mfa", mfa_views.overview, name="mfa"),
    path("mfa/totp", mfa_views.totp_enrol, name="mfa-totp"),
    path("mfa/recovery-codes", mfa_views.recovery_codes, name="mfa-recovery"),
    path("mfa/remove", mfa_views.remove, name="mfa-remove"),
    path("mfa/passkeys/add", passkey_views.add, name="passkey-add"),
    path("mfa/passkeys/options", passkey_views.register_options, name="passkey-options"),
    path("mfa/passkeys/<uuid:passkey_id>/rename", passkey_views.rename, name="passkey-rename"),
    path("mfa/passkeys/<uuid:passkey_id>/remove", passkey_views.remove, name="passkey-remove"),
    path("sessions", views.sessions, name="sessions"),
    path("sessions/end-others", views.sessions_end_others, name="sessions-end-others"),
    path("sessions/<str:session_id>/end", views.session_end, name="session-end"),
    path("apps", views.apps, name="apps"),
    path("apps/<str:client_id>/withdraw", views.app_withdraw, name="app-withdraw"),
    path("activity", views.activity, name="activity"),
    path("delete", views.delete, name="delete"),
    path("deleted", views.deleted, name="deleted"),
]
