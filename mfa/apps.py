from django.apps import AppConfig


class MfaConfig(AppConfig):
    """Second factors: TOTP, recovery codes, and the second step of a sign-in (README "MFA")."""

    name = "mfa"
    verbose_name = "Second factors"
