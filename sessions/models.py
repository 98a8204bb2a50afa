"""Sessions and their refresh tokens: one model for every kind of sign-in.

A Session is what a sign-in creates and what a logout ends:

- a browser sign-in at the hosted login page (`client_id` ""), which holds no token itself but
  lets the browser obtain authorization codes;
- a first-party API sign-in (`client_id` "authserver", POST /api/v1/auth/login);
- an OAuth grant (`client_id` of the client), started by a code exchange. Its `parent` is the
  browser sign-in that approved the code.

Together they form one tree per browser: browser sign-in -> OAuth grants.
Ending a node ends everything under it (sessions/services.py `_revoke_rows`).

A session's refresh tokens live in its own row (issue 15.1): the SHA-256 digest of the current
token, its generation (`rotations`) and when the one before it was spent. Each token names its
session and generation and carries a MAC (sessions/refresh_tokens.py), so an earlier token is
recognised, and its reuse detected, without a row of its own: a session is one row however often
it refreshes, and a refresh updates no indexed column (a HOT update in PostgreSQL, which needs no
new index entry and whose old version is pruned on the page). The value of a token exists only in
the response that carried it to the client. `RefreshToken` holds tokens issued before this
format; new sessions write none, and rows leave with their sessions (purge_expired_sessions).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

# Why references to a session have no constraint: a grant's parent, an authorization code's
# sessions and old-format token rows carry no FOREIGN KEY constraint in the database. The purge
# deletes millions of ended sessions, and PostgreSQL checks each constraint on a deleted row with
# one query per row at commit: with the four constraints the purge spent 30 microseconds of
# database CPU per session instead of 2.5, and deleted 11 thousand sessions a second instead of
# 112 thousand (bench/purge_cost.py, bench/README.md "Purge"). The references
# are kept whole by the only two ways a session is deleted: the ORM (which applies on_delete) and
# the purge, whose one statement per batch applies each relation's on_delete, read from these
# models (sessions/services.py `_purge_sql`). Nothing creates a reference to an ended session: a
# grant or a code needs a live browser sign-in, and the purge deletes only sessions long ended.


class SessionQuerySet(models.QuerySet):
    def live(self, *, now) -> SessionQuerySet:
        return self.filter(revoked_at__isnull=True, expires_at__gt=now, idle_expires_at__gt=now)


# The client id of first-party API sessions and their access tokens (OAuth clients have
# generated ids), and of browser sign-ins (no client at all).
FIRST_PARTY_CLIENT_ID = "authserver"
BROWSER_CLIENT_ID = ""


class Session(models.Model):
    """One sign-in: the family of refresh tokens rotated from it. Its id is the `sid` claim."""

    class Kind(models.TextChoices):
        BROWSER = "browser", "browser sign-in"
        FIRST_PARTY = "first_party", "first-party app"
        OAUTH = "oauth", "OAuth client"

    class RevokeReason(models.TextChoices):
        LOGOUT = "logout", "logout"
        LOGOUT_ALL = "logout_all", "logout from every session"
        USER_ENDED = "user_ended", "ended by the user from the session list"
        REUSE_DETECTED = "reuse_detected", "a spent refresh token was presented again"
        ADMIN = "admin", "revoked by an administrator"
        PASSWORD_CHANGED = "password_changed", "the user's password changed"
        USER_INACTIVE = "user_inactive", "the user was deactivated"
        TOKEN_REVOKED = "token_revoked", "a token of the session was revoked (RFC 7009)"
        CODE_REPLAYED = "code_replayed", "the authorization code was replayed"
        SIGN_IN_ENDED = "sign_in_ended", "the browser sign-in it came from ended"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="auth_sessions"
    )
    # BROWSER_CLIENT_ID for a browser sign-in, FIRST_PARTY_CLIENT_ID for the first-party API, an
    # OAuth client id otherwise (see `kind`).
    client_id = models.CharField(max_length=100, blank=True, default="")
    # The browser sign-in an OAuth grant came from; ending it ends the grant. SET_NULL: an ended
    # parent may be purged before its children.
    # No database constraint on any reference to a session (see above SessionQuerySet).
    parent = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="children",
        db_index=False,  # the partial index below: most sessions have no parent
        db_constraint=False,
    )
    scope = models.CharField(max_length=1000, blank=True, default="")
    # Space-separated audiences of the access tokens issued in this session.
    audience = models.CharField(max_length=1000, blank=True, default="")
    user_agent = models.CharField(max_length=512, blank=True, default="")
    ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField()
    last_used_at = models.DateTimeField()
    # Absolute end of the session, and the end of its idle period (moved by every refresh).
    expires_at = models.DateTimeField()
    idle_expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoke_reason = models.CharField(
        max_length=32, choices=RevokeReason.choices, blank=True, default=""
    )
    # The generation of the current refresh token: how many times the session rotated.
    rotations = models.PositiveIntegerField(default=0)
    # SHA-256 of the current refresh token; NULL for a session without one (a browser sign-in,
    # a grant without offline_access) and for sessions still on a token of the old format.
    refresh_digest = models.BinaryField(max_length=32, null=True, blank=True, editable=False)
    # When the token before the current one was spent: a request that presented it earlier lost
    # a race and is no replay, and the opt-in grace window counts from here. NULL after a
    # grace-window reissue (its predecessor was revoked, not spent) and before the first rotation.
    refresh_spent_at = models.DateTimeField(null=True, blank=True)
    # A time no later than the session's end by time, for purge_expired_sessions to find ended
    # sessions by index. It is NOT moved by a refresh (idle_expires_at is, and so is not
    # indexed: a refresh then changes no indexed column); the purge moves it forward when it
    # finds the session still live. NULL (rows written before it existed): the purge checks it.
    ends_not_before = models.DateTimeField(null=True, blank=True)

    # RFC 8176 methods of the sign-in this session came from ("pwd otp mfa"), copied into every
    # access token it issues (with the acr they imply, mfa/policy.py), so a refresh reads them
    # from the row it loads anyway. Set once at the start, never updated (refresh stays HOT).
    amr = models.CharField(max_length=64, blank=True, default="", db_default="")

    objects = SessionQuerySet.as_manager()

    class Meta:
        # The tables kept the names they had when these models lived in the tokens app.
        db_table = "tokens_session"
        indexes = [
            # The user's session list and logout-all.
            models.Index(
                fields=["user", "created_at"],
                name="tokens_session_user_live",
                condition=models.Q(revoked_at__isnull=True),
            ),
            # purge_expired_sessions: the candidates for having ended by time (see
            # ends_not_before), or were revoked (below).
            models.Index(fields=["ends_not_before"], name="tokens_session_ends_nb"),
            # The grants a browser sign-in approved, ended with it (sessions/services.py).
            models.Index(
                fields=["parent"],
                name="tokens_session_parent",
                condition=models.Q(parent__isnull=False),
            ),
            models.Index(
                fields=["revoked_at"],
                name="tokens_session_revoked",
                condition=models.Q(revoked_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"session {self.id}"

    @property
    def kind(self) -> str:
        if self.client_id == BROWSER_CLIENT_ID:
            return self.Kind.BROWSER
        if self.client_id == FIRST_PARTY_CLIENT_ID:
            return self.Kind.FIRST_PARTY
        return self.Kind.OAUTH

    def is_live(self, now) -> bool:
        return self.revoked_at is None and self.expires_at > now and self.idle_expires_at > now


class RefreshToken(models.Model):
    """A refresh token of the old format (before issue 15.1), known only by its SHA-256 digest.

    Read when such a token is presented (it is then rotated into the session row) and deleted
    with its session; nothing new is written here. A later release drops the table once every
    session that had rows has been purged (AUTHSERVER_SESSION_MAX_AGE plus the retention)."""

    session = models.ForeignKey(
        Session, on_delete=models.CASCADE, related_name="refresh_tokens", db_constraint=False
    )
    # One-to-one: a token is rotated at most once, so the database itself refuses a second child
    # (a double spend) even if the row lock were ever bypassed. A grace-window reissue hangs the
    # new token under the successor it replaces, keeping the chain linear.
    # DO_NOTHING: token rows are only ever deleted a whole session at a time (purge), in one
    # statement, so no row-by-row cascade is needed (the constraint is still checked at commit).
    parent = models.OneToOneField(
        "self", on_delete=models.DO_NOTHING, null=True, blank=True, related_name="child"
    )
    # SHA-256 digest (32 bytes). bytea rather than hex text: half the size, and PostgreSQL needs
    # no second (LIKE) index beside the unique one, so every rotation writes one index less.
    token_hash = models.BinaryField(max_length=32, unique=True, editable=False)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    consumed_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "tokens_refreshtoken"
        indexes = [
            # Live tokens of a session (the one to revoke in grace mode, the count in tests).
            models.Index(
                fields=["session"],
                name="tokens_refresh_live",
                condition=models.Q(consumed_at__isnull=True, revoked_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        # Never the token or its digest: this string reaches admin pages and logs.
        return f"refresh token #{self.pk} of session {self.session_id}"
