"""The hosted pages, mounted at the site root: /login, /logout, / (signed-in landing) and the
password reset pages (accounts/reset_views.py), sign-up, address confirmation, and invitations
(accounts/signup_views.py). The change of address is an account page (selfservice/)."""

from django.urls import path

from accounts import reset_views, signup_views, views
from mfa import views as mfa_views
from passkeys import views as passkey_views

urlpatterns = [
    path("", views.home_page, name="home"),
    path("login", views.login_page, name="login"),
    path("login/mfa", mfa_views.login_second_factor, name="login-mfa"),
    path("login/passkey", passkey_views.sign_in, name="login-passkey"),
    path("login/passkey/options", passkey_views.sign_in_options, name="login-passkey-options"),
    path("login/mfa/passkey", passkey_views.second_factor, name="login-mfa-passkey"),
    path(
        "login/mfa/passkey/options",
        passkey_views.second_factor_options,
        name="login-mfa-passkey-options",
    ),
    path("logout", views.logout_page, name="logout"),
    path("password/forgot", reset_views.password_forgot_page, name="password-forgot"),
    # The mailed link is /password/reset?token=...: the token never enters a path (logged).
    path("password/reset", reset_views.password_reset_page, name="password-reset"),
    # Sign-up, address confirmation and invitations (accounts/signup_views.py)
    path("signup", signup_views.signup_page, name="signup"),
    path("signup/sent", signup_views.signup_sent_page, name="signup_sent"),
    path("email/confirm", signup_views.email_confirm_page, name="email_confirm"),
    path("invite", signup_views.invite_accept_page, name="invite_accept"),
]
