"""OAuth clients, authorization codes and remembered consent.

Secrets never reach the database: a client secret is stored as its SHA-256 digest, an
authorization code likewise. Client rows are cached (oauth/clients.py); change them only through
the services there, which drop the cached copy.
"""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models

from oauth.scopes import OFFLINE_ACCESS, scope_split


def secret_digest(value: str) -> str:
    """SHA-256 of a 256-bit random secret: nothing to gain from salt or a slow hash."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


# What an unknown or public client's "secret" is compared with: the digest of a random value no
# one knows, so the comparison does the work of a real one and never matches.
_DUMMY_DIGEST = secret_digest(secrets.token_urlsafe(32))


def client_secret_verify(client: Client | None, secret: str) -> bool:
    """True if `secret` is the confidential `client`'s secret.

    Every call hashes the presented secret once and compares it in constant time, with the
    client's digest or, for an unknown or public client, a dummy one: a wrong client_id costs
    what a wrong secret costs (issue 14.10), as Django's ModelBackend does for unknown users."""
    presented = secret if isinstance(secret, str) else ""
    usable = client is not None and not client.is_public and bool(client.secret_hash)
    expected = client.secret_hash if usable else _DUMMY_DIGEST
    matches = secrets.compare_digest(secret_digest(presented), expected)
    return usable and matches


def _lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


class GrantType(models.TextChoices):
    AUTHORIZATION_CODE = "authorization_code", "Authorization code (with PKCE)"
    REFRESH_TOKEN = "refresh_token", "Refresh token"
    CLIENT_CREDENTIALS = "client_credentials", "Client credentials (confidential clients only)"


class Client(models.Model):
    """An application registered to use authserver. Implements authlib's ClientMixin."""

    class Type(models.TextChoices):
        CONFIDENTIAL = "confidential", "confidential (server-side, holds a secret)"
        PUBLIC = "public", "public (browser or native app, no secret, PKCE required)"

    client_id = models.CharField("client ID", max_length=64, unique=True, editable=False)
    name = models.CharField(max_length=100, help_text="Shown to people on the consent page.")
    client_type = models.CharField("type", max_length=12, choices=Type.choices)
    # SHA-256 hex digest of the secret; empty for public clients.
    secret_hash = models.CharField(max_length=64, blank=True, default="", editable=False)
    secret_updated_at = models.DateTimeField(null=True, blank=True, editable=False)
    redirect_uris = models.TextField(
        "redirect URIs", blank=True, default="", help_text="One per line; matched exactly."
    )
    post_logout_redirect_uris = models.TextField(
        "post-logout redirect URIs", blank=True, default="", help_text="One per line."
    )
    grant_types = models.CharField(max_length=200, help_text="Space-separated grant types.")
    scopes = models.CharField(
        "allowed scopes",
        max_length=1000,
        blank=True,
        default="",
        help_text="Space-separated: openid profile email offline_access and any API scopes.",
    )
    audiences = models.CharField(
        max_length=1000,
        blank=True,
        default="",
        help_text="Space-separated `aud` of its access tokens; empty: the client's own client ID. "
        "Never AUTHSERVER_DEFAULT_AUDIENCE (the first-party API's).",
    )
    access_token_lifetime = models.PositiveIntegerField(
        null=True, blank=True, help_text="Seconds; empty: AUTHSERVER_ACCESS_TOKEN_TTL."
    )
    pkce_required = models.BooleanField(
        "require PKCE",
        default=True,
        # A database default: rows written by the previous release (rolling upgrade) and the
        # rows that existed before this column get True too.
        db_default=True,
        help_text="Authorization requests must carry an S256 code_challenge (RFC 9700 §2.1.1). "
        "Turn this off only for a legacy confidential client that cannot send one; public "
        "clients always need PKCE.",
    )
    require_mfa = models.BooleanField(
        "require MFA",
        default=False,
        db_default=False,
        help_text="Users must have presented a second factor in this sign-in to get a code "
        "for this client (they set one up first if they have none).",
    )
    skip_consent = models.BooleanField(
        "first-party (skip consent)",
        default=False,
        help_text="Users are not asked to approve this client's requests.",
    )
    is_resource_server = models.BooleanField(
        "resource server",
        default=False,
        help_text="May introspect tokens issued to other clients.",
    )
    refresh_without_offline_access = models.BooleanField(
        default=False,
        help_text="Issue refresh tokens even when the user did not grant offline_access.",
    )
    # Claim mappings (oauth/claims.py): one `claim = attribute` per line. A database default so
    # rows of the previous release (rolling upgrade) read as "no mapping".
    id_token_claims = models.TextField(
        "ID token claims",
        blank=True,
        default="",
        db_default="",
        help_text="One per line: claim = attribute, e.g. 'roles = groups'. Attributes: "
        "username, first_name, last_name, full_name, email, groups; each needs its scope "
        "(profile, email, groups) among the allowed scopes and is released only when granted.",
    )
    userinfo_claims = models.TextField(
        "userinfo claims",
        blank=True,
        default="",
        db_default="",
        help_text="As for the ID token, in the userinfo response.",
    )
    access_token_claims = models.TextField(
        "access token claims",
        blank=True,
        default="",
        db_default="",
        help_text="As for the ID token, in access tokens (for your APIs to authorize on).",
    )
    is_active = models.BooleanField(
        "active", default=True, help_text="Inactive clients can neither authorize nor get tokens."
    )
    # Tokens issued to the client before this instant are dead (set when it is registered and
    # each time it is deactivated), so reactivating a client does not revive its old tokens.
    tokens_valid_after = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "client"
        verbose_name_plural = "clients"
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.client_id})"

    # --- Parsed fields -------------------------------------------------------------------
    @property
    def is_public(self) -> bool:
        return self.client_type == self.Type.PUBLIC

    @property
    def redirect_uri_list(self) -> list[str]:
        return _lines(self.redirect_uris)

    @property
    def post_logout_redirect_uri_list(self) -> list[str]:
        return _lines(self.post_logout_redirect_uris)

    @property
    def grant_type_list(self) -> list[str]:
        return self.grant_types.split()

    @property
    def scope_list(self) -> list[str]:
        return scope_split(self.scopes) or []

    @property
    def audience_list(self) -> list[str]:
        return self.audiences.split()

    def issues_refresh_token(self, granted_scopes: list[str]) -> bool:
        """A refresh token only for a client allowed the refresh_token grant, and only when the
        user granted offline_access (or the client is configured to get one regardless)."""
        return GrantType.REFRESH_TOKEN in self.grant_type_list and (
            OFFLINE_ACCESS in granted_scopes or self.refresh_without_offline_access
        )

    def token_is_current(self, issued_at: float) -> bool:
        """Whether a token issued at `issued_at` (seconds since the epoch, the `iat` claim) is
        younger than the client's cutoff."""
        cutoff = self.tokens_valid_after
        return cutoff is None or issued_at >= cutoff.timestamp()

    # --- authlib ClientMixin ---------------------------------------------------------------
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        # redirect_uri is required on every authorization request: no guessing.
        return None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """The requested scope, normalised; None (invalid_scope) if any is not allowed."""
        requested = scope_split(scope)
        if requested is None:
            return None
        allowed = set(self.scope_list)
        if any(item not in allowed for item in requested):
            return None
        return " ".join(requested)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return isinstance(redirect_uri, str) and redirect_uri in self.redirect_uri_list

    def check_client_secret(self, client_secret: str) -> bool:
        return client_secret_verify(self, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.is_public:
            # A public client identifies itself by client_id alone; it may not introspect.
            return method == "none" and endpoint != "introspection"
        return method in {"client_secret_basic", "client_secret_post"}

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and GrantType.AUTHORIZATION_CODE in self.grant_type_list

    def check_grant_type(self, grant_type: str) -> bool:
        if grant_type == GrantType.CLIENT_CREDENTIALS and self.is_public:
            return False
        return grant_type in self.grant_type_list


class AuthorizationCode(models.Model):
    """An authorization code (RFC 6749 §4.1.2): single use, short-lived, known by its digest.

    Bound to the client, the redirect URI and the PKCE challenge. `session` is the session its
    exchange started: a replayed code revokes it (RFC 6749 §4.1.2, RFC 9700 §4.2.4).
    """

    code_hash = models.CharField(max_length=64, unique=True, editable=False)
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="codes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    redirect_uri = models.TextField()
    scope = models.CharField(max_length=1000, blank=True, default="")
    nonce = models.CharField(max_length=512, blank=True, default="")
    code_challenge = models.CharField(max_length=128, blank=True, default="")
    code_challenge_method = models.CharField(max_length=10, blank=True, default="")
    # RFC 8176 methods of the sign-in that approved the code (space-separated).
    amr = models.CharField(max_length=64, blank=True, default="", db_default="")
    auth_time = models.DateTimeField()
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    consumed_at = models.DateTimeField(null=True, blank=True)
    # No database constraint on a reference to a session (why: sessions/models.py, above
    # SessionQuerySet): the purge clears these in its own statement.
    session = models.ForeignKey(
        "authsessions.Session",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )
    # The browser sign-in that approved the request: the session the exchange starts hangs
    # from it, and the exchange fails once it has ended.
    browser_session = models.ForeignKey(
        "authsessions.Session",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )

    class Meta:
        indexes = [models.Index(fields=["expires_at"], name="oauth_code_expires")]

    def __str__(self) -> str:
        # Never the code or its digest.
        return f"authorization code #{self.pk}"

    # authlib AuthorizationCodeMixin
    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


class Consent(models.Model):
    """What a user has approved for a client; asked again only for scopes not yet approved."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oauth_consents"
    )
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="consents")
    scope = models.CharField(max_length=1000, blank=True, default="")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "client"], name="oauth_consent_user_client")
        ]

    def __str__(self) -> str:
        return f"consent #{self.pk} (user #{self.user_id}, client #{self.client_id})"

    def covers(self, scopes: list[str]) -> bool:
        return set(scopes) <= set(self.scope.split())
