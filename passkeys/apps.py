from django.apps import AppConfig


class PasskeysConfig(AppConfig):
    """Passkeys and security keys (WebAuthn Level 2): a second-factor method beside TOTP, and
    passwordless sign-in with a discoverable credential (README "Passkeys")."""

    name = "passkeys"
    verbose_name = "Passkeys"
