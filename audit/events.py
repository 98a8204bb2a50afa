"""The names of audit events: the `event_type` of every AuthEvent row and audit log line.

Names are stable strings (`<subject>.<what happened>`); dashboards and alerts key on them, so add
new ones instead of renaming. `audit_event_record` refuses a name that is not listed here.
"""

from __future__ import annotations

from django.db import models


class EventType(models.TextChoices):
    LOGIN_SUCCEEDED = "login.succeeded", "Login succeeded"
    LOGIN_FAILED = "login.failed", "Login failed"
    LOGIN_THROTTLED = "login.throttled", "Login throttled"
    ACCOUNT_LOCKED = "account.locked", "Account locked"
    ACCOUNT_UNLOCKED = "account.unlocked", "Account unlocked"
    TOKEN_REFRESHED = "token.refreshed", "Token refreshed"
    REFRESH_REUSE_DETECTED = "token.reuse_detected", "Refresh token reuse detected"
    SESSION_REVOKED = "session.revoked", "Session revoked"
    LOGOUT = "logout", "Logout"
    LOGOUT_ALL = "logout_all", "Logout from all sessions"
    PASSWORD_CHANGED = "password.changed", "Password changed"
    PASSWORD_RESET_REQUESTED = "password.reset_requested", "Password reset requested"
    PASSWORD_RESET_THROTTLED = "password.reset_throttled", "Password reset requests throttled"
    PASSWORD_RESET = "password.reset", "Password reset with an emailed link"
    ADMIN_PASSWORD_RESET_SENT = "admin.password_reset_sent", "Admin sent a password reset link"
    KEY_ROTATED = "key.rotated", "Signing key rotated"
    KEY_REVOKED = "key.revoked", "Signing key revoked"
    ADMIN_USER_CREATED = "admin.user_created", "Admin created a user"
    ADMIN_USER_CHANGED = "admin.user_changed", "Admin changed a user"
    ADMIN_USER_DEACTIVATED = "admin.user_deactivated", "Admin deactivated a user"
    ADMIN_USER_DELETED = "admin.user_deleted", "Admin deleted a user"
    # The account pages (/account/, accounts/account_services.py)
    ACCOUNT_PROFILE_CHANGED = "account.profile_changed", "Profile changed by its owner"
    ACCOUNT_DELETED = "account.deleted", "Account deleted by its owner"
    # Second factors (mfa/)
    MFA_ENROLLED = "mfa.enrolled", "Second factor enrolled"
    MFA_REMOVED = "mfa.removed", "Second factor removed by its owner"
    MFA_RESET = "mfa.reset", "Second factors reset by an administrator"
    MFA_SUCCEEDED = "mfa.succeeded", "Second factor accepted"
    MFA_FAILED = "mfa.failed", "Second factor refused"
    MFA_RECOVERY_CODE_USED = "mfa.recovery_code_used", "Recovery code used"
    MFA_RECOVERY_CODES_GENERATED = "mfa.recovery_codes_generated", "Recovery codes generated"
    # OAuth 2.0 / OpenID Connect (oauth/)
    CLIENT_CREATED = "client.created", "OAuth client created"
    CLIENT_CHANGED = "client.changed", "OAuth client changed"
    CLIENT_DELETED = "client.deleted", "OAuth client deleted"
    CLIENT_SECRET_ROTATED = "client.secret_rotated", "OAuth client secret regenerated"
    CLIENT_AUTH_FAILED = "client.auth_failed", "OAuth client authentication failed"
    CONSENT_GRANTED = "consent.granted", "Consent granted to a client"
    CONSENT_DENIED = "consent.denied", "Consent denied to a client"
    CONSENT_WITHDRAWN = "consent.withdrawn", "Consent withdrawn (the user's grants ended)"
    OAUTH_CODE_ISSUED = "oauth.code_issued", "Authorization code issued"
    OAUTH_TOKEN_ISSUED = "oauth.token_issued", "Tokens issued for an authorization code"
    OAUTH_CODE_REPLAYED = "oauth.code_replayed", "Authorization code replayed"
    OAUTH_TOKEN_REVOKED = "oauth.token_revoked", "Token revoked by its client (RFC 7009)"
    OIDC_LOGOUT = "oidc.logout", "RP-initiated logout"
    # Email verification, sign-up and invitations (accounts/verification.py, registration.py)
    EMAIL_VERIFICATION_SENT = "email.verification_sent", "Email confirmation link sent"
    EMAIL_VERIFIED = "email.verified", "Email address confirmed"
    EMAIL_CHANGE_REQUESTED = "email.change_requested", "Email address change requested"
    EMAIL_CHANGED = "email.changed", "Email address changed (new address confirmed)"
    EMAIL_VERIFIED_SET = "email.verified_set", "Admin set the email verified state"
    SIGNUP_SUBMITTED = "signup.submitted", "Sign-up form submitted"
    SIGNUP_THROTTLED = "signup.throttled", "Sign-up throttled"
    USER_SIGNED_UP = "user.signed_up", "Account created by sign-up"
    INVITE_SENT = "invite.sent", "Invitation sent"
    INVITE_ACCEPTED = "invite.accepted", "Invitation accepted (account created)"
    # The trail itself (audit/)
    AUDIT_PURGED = "audit.purged", "Audit events past the retention deleted"


class FailureReason(models.TextChoices):
    """`details["reason"]` of login.failed: for admins only, never sent to the client."""

    BAD_CREDENTIALS = "bad_credentials", "Wrong password"
    UNKNOWN_USER = "unknown_user", "No such account"
    INACTIVE = "inactive", "Account inactive"
    LOCKED = "locked", "Account locked"
