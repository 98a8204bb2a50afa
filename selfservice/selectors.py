"""Read side of the account pages (/account/): what a signed-in person sees about themselves.

Every query here is scoped to one user: a selector takes the user and never returns another
user's rows, whatever id it is given (the views turn "not found" into 404).
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.core.paginator import Page, Paginator
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from accounts.login_flow import auth_time
from audit.events import EventType, FailureReason
from audit.models import AuthEvent
from authserver.conf import get_config
from oauth.models import Client, Consent
from oauth.scopes import scope_describe
from sessions.models import Session
from sessions.services import session_app_names, session_list_live

SECURITY_LOG_PAGE_SIZE = 20


# --- Recent sign-in ----------------------------------------------------------------------------


def sign_in_age(*, request, now: float | None = None) -> int | None:
    """Seconds since this browser's user last typed their password, or None if unknown."""
    when = auth_time(request)
    if when is None:
        return None
    return max(0, int((time.time() if now is None else now) - when))


def sign_in_is_recent(*, request, now: float | None = None) -> bool:
    """Whether the password was typed within AUTHSERVER_REAUTH_MAX_AGE seconds."""
    age = sign_in_age(request=request, now=now)
    return age is not None and age <= get_config().reauth_max_age


# --- Devices -----------------------------------------------------------------------------------

_BROWSERS = (
    ("Edge", re.compile(r"\bEdg(?:e|A|iOS)?/")),
    ("Opera", re.compile(r"\bOPR/")),
    ("Firefox", re.compile(r"\b(?:Firefox|FxiOS)/")),
    ("Chrome", re.compile(r"\b(?:HeadlessChrome|Chrome|Chromium|CriOS)/")),
    ("Safari", re.compile(r"\bVersion/[\d.]+.*Safari/")),
    ("curl", re.compile(r"^curl/")),
    ("Python", re.compile(r"^(?:python-requests|python-httpx|Python-urllib)/")),
    ("Node.js", re.compile(r"^(?:node|undici|node-fetch)\b", re.IGNORECASE)),
)
_SYSTEMS = (
    ("Android", re.compile(r"\bAndroid\b")),
    ("iPhone", re.compile(r"\biPhone\b")),
    ("iPad", re.compile(r"\biPad\b")),
    ("Windows", re.compile(r"\bWindows\b")),
    ("macOS", re.compile(r"\bMac OS X\b|\bMacintosh\b")),
    ("ChromeOS", re.compile(r"\bCrOS\b")),
    ("Linux", re.compile(r"\bLinux\b")),
)


def device_summary(user_agent: str) -> str:
    """A short name for the device of a User-Agent ("Firefox on Windows"), never the raw header
    at length: "Unknown device" when there is none, the first 40 characters when unrecognised."""
    agent = (user_agent or "").strip()
    if not agent:
        return gettext("Unknown device")
    browser = next((name for name, pattern in _BROWSERS if pattern.search(agent)), None)
    system = next((name for name, pattern in _SYSTEMS if pattern.search(agent)), None)
    if browser and system:
        return gettext("%(browser)s on %(system)s") % {"browser": browser, "system": system}
    if browser or system:
        return browser or system
    return agent if len(agent) <= 40 else agent[:39] + "\u2026"


# --- Sessions ----------------------------------------------------------------------------------


# What the pages call each kind of session.
KIND_NAMES = {
    Session.Kind.BROWSER: _("Browser sign-in"),
    Session.Kind.FIRST_PARTY: _("First-party app"),
    Session.Kind.OAUTH: _("App sign-in"),
}


@dataclass(frozen=True)
class SessionRow:
    id: str
    kind: str
    is_browser: bool
    is_app: bool
    app: str
    device: str
    ip: str  # for an app's sign-in: the app server's address
    created_at: datetime
    last_used_at: datetime
    current: bool
    in_this_browser: bool


def account_sessions(*, user, current: Session | None) -> list[SessionRow]:
    """Every live session of `user`, most recently used first, the current browser sign-in
    (and the app sign-ins it approved) marked."""
    sessions = session_list_live(user=user)
    names = session_app_names(sessions)
    current_id = current.pk if current is not None else None
    # An app's sign-in is made by the app's server (its user agent and IP are the server's):
    # the device is that of the browser sign-in it came from, when that is still known.
    parents = {s.pk: s for s in sessions if s.kind == Session.Kind.BROWSER}
    missing = {s.parent_id for s in sessions if s.parent_id and s.parent_id not in parents}
    if missing:
        parents.update({s.pk: s for s in Session.objects.filter(pk__in=missing, user=user)})

    def device(session: Session) -> str:
        parent = parents.get(session.parent_id) if session.parent_id else None
        if parent is not None:
            return device_summary(parent.user_agent)
        return device_summary(session.user_agent)

    rows = [
        SessionRow(
            id=str(session.pk),
            kind=str(KIND_NAMES[session.kind]),
            is_browser=session.kind == Session.Kind.BROWSER,
            is_app=session.kind == Session.Kind.OAUTH,
            app=names.get(session.client_id, gettext("Unknown app")),
            device=device(session),
            ip=session.ip or "",
            created_at=session.created_at,
            last_used_at=session.last_used_at,
            current=session.pk == current_id,
            in_this_browser=current_id is not None and session.parent_id == current_id,
        )
        for session in sessions
    ]
    rows.sort(key=lambda row: not row.current)  # stable: the rest stay by last use
    return rows


def account_session_get(*, user, session_id: str) -> Session | None:
    """The live session `session_id` if it belongs to `user`; None otherwise (another user's
    session and a malformed id alike)."""
    try:
        pk = uuid.UUID(str(session_id))
    except ValueError:
        return None
    return Session.objects.live(now=timezone.now()).filter(user=user, pk=pk).first()


# --- Connected apps ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectedApp:
    client_id: str
    name: str
    scopes: list[tuple[str, str, str]]
    allowed_at: datetime | None
    updated_at: datetime | None
    live_sessions: int
    last_used_at: datetime | None


def account_connected_apps(*, user) -> list[ConnectedApp]:
    """Each client `user` allowed (a remembered consent), and each client that holds a live
    grant without one (a client that skips the consent page): what it may do, since when, and
    how many live sign-ins it has."""
    now = timezone.now()
    consents = {
        c.client.client_id: c for c in Consent.objects.filter(user=user).select_related("client")
    }
    grants: dict[str, list[Session]] = {}
    for session in (
        Session.objects.live(now=now).filter(user=user).exclude(client_id__in=["", "authserver"])
    ):
        grants.setdefault(session.client_id, []).append(session)
    clients = {
        c.client_id: c for c in Client.objects.filter(client_id__in=set(grants) - set(consents))
    }
    apps = []
    for client_id in {*consents, *clients}:
        consent = consents.get(client_id)
        client = consent.client if consent else clients[client_id]
        live = grants.get(client_id, [])
        scope = (
            consent.scope.split() if consent else sorted({s for g in live for s in g.scope.split()})
        )
        apps.append(
            ConnectedApp(
                client_id=client_id,
                name=client.name,
                scopes=scope_describe(scope),
                allowed_at=consent.created_at if consent else None,
                updated_at=consent.updated_at if consent else None,
                live_sessions=len(live),
                last_used_at=max((g.last_used_at for g in live), default=None),
            )
        )
    apps.sort(key=lambda app: app.name.lower())
    return apps


def account_connected_app_get(*, user, client_id: str) -> ConnectedApp | None:
    return next((a for a in account_connected_apps(user=user) if a.client_id == client_id), None)


# --- Security log ------------------------------------------------------------------------------

# What the page says about each event the user can see; events not listed are shown by label.
_EVENT_TEXT = {
    EventType.LOGIN_SUCCEEDED: _("Signed in"),
    EventType.LOGIN_FAILED: _("Failed sign-in attempt"),
    EventType.ACCOUNT_LOCKED: _("Sign-in paused after failed attempts"),
    EventType.ACCOUNT_UNLOCKED: _("Sign-in pause lifted by an administrator"),
    EventType.LOGOUT: _("Signed out"),
    EventType.LOGOUT_ALL: _("Signed out of other sessions"),
    EventType.SESSION_REVOKED: _("Session ended"),
    EventType.PASSWORD_CHANGED: _("Password changed"),
    EventType.CONSENT_GRANTED: _("App allowed"),
    EventType.CONSENT_DENIED: _("App refused"),
    EventType.CONSENT_WITHDRAWN: _("App access withdrawn"),
    EventType.REFRESH_REUSE_DETECTED: _("An app's old token was reused; its session was ended"),
    EventType.OIDC_LOGOUT: _("Signed out of an app"),
    EventType.ACCOUNT_PROFILE_CHANGED: _("Profile changed"),
    EventType.ADMIN_USER_CHANGED: _("Account changed by an administrator"),
    EventType.ADMIN_USER_CREATED: _("Account created by an administrator"),
    EventType.ADMIN_USER_DEACTIVATED: _("Account deactivated by an administrator"),
    EventType.MFA_ENROLLED: _("Two-step verification turned on"),
    EventType.MFA_REMOVED: _("Two-step verification turned off"),
    EventType.MFA_RESET: _("Two-step verification reset by an administrator"),
    EventType.MFA_SUCCEEDED: _("Second sign-in step passed"),
    EventType.MFA_FAILED: _("Wrong or reused sign-in code"),
    EventType.MFA_RECOVERY_CODE_USED: _("Recovery code used"),
    EventType.MFA_RECOVERY_CODES_GENERATED: _("New recovery codes made"),
    EventType.LOGIN_THROTTLED: _("Sign-in attempts paused"),
    EventType.PASSWORD_RESET_REQUESTED: _("Password reset link requested"),
    EventType.PASSWORD_RESET: _("Password reset with an emailed link"),
    EventType.ADMIN_PASSWORD_RESET_SENT: _("Password reset link sent by an administrator"),
    EventType.EMAIL_VERIFICATION_SENT: _("Email confirmation link sent"),
    EventType.EMAIL_VERIFIED: _("Email address confirmed"),
    EventType.EMAIL_CHANGE_REQUESTED: _("Email address change requested"),
    EventType.EMAIL_CHANGED: _("Email address changed"),
    EventType.EMAIL_VERIFIED_SET: _("Email confirmation set by an administrator"),
    EventType.USER_SIGNED_UP: _("Account created"),
    EventType.INVITE_ACCEPTED: _("Invitation accepted"),
    EventType.OAUTH_TOKEN_REVOKED: _("An app ended its access"),
    EventType.OAUTH_CODE_REPLAYED: _("An app’s sign-in code was used twice; its access was ended"),
}
# Routine, high-volume machine events that say nothing a person would act on.
_HIDDEN = {
    EventType.TOKEN_REFRESHED,
    EventType.OAUTH_CODE_ISSUED,
    EventType.OAUTH_TOKEN_ISSUED,
}
_FAILURE_TEXT = {
    FailureReason.BAD_CREDENTIALS: _("wrong password"),
    FailureReason.LOCKED: _("sign-in was paused"),
    FailureReason.INACTIVE: _("account inactive"),
}


@dataclass(frozen=True)
class SecurityEvent:
    what: str
    note: str
    occurred_at: datetime
    ip: str
    device: str
    app: str


def _event_text(event_type: str) -> str:
    if event_type in _EVENT_TEXT:
        return str(_EVENT_TEXT[event_type])
    if event_type in EventType.values:
        return EventType(event_type).label
    return event_type


def _note(event: AuthEvent) -> str:
    # Only fixed, known values from `details`: never free text, ids or anything secret.
    details = event.details if isinstance(event.details, dict) else {}
    if details.get("method") == "passkey":  # added, removed, used or refused: which kind
        return gettext("passkey")
    if event.event_type == EventType.LOGIN_FAILED:
        reason = details.get("reason")
        return str(_FAILURE_TEXT.get(reason, "")) if isinstance(reason, str) else ""
    if event.event_type == EventType.PASSWORD_CHANGED:
        actor = details.get("actor_sub")
        return (
            gettext("by an administrator") if actor and actor != str(event.user_public_id) else ""
        )
    if details.get("actor") or details.get("actor_username"):
        return gettext("by an administrator")
    return ""


def account_security_log(*, user, page_number) -> Page:
    """One page of `user`'s own audit events, newest first, as SecurityEvent rows."""
    events = (
        AuthEvent.objects.filter(user=user)
        .exclude(event_type__in=_HIDDEN)
        .order_by("-occurred_at", "-id")
    )
    page = Paginator(events, SECURITY_LOG_PAGE_SIZE).get_page(page_number)
    client_ids = {e.client_id for e in page.object_list if e.client_id}
    names = dict(Client.objects.filter(client_id__in=client_ids).values_list("client_id", "name"))
    page.object_list = [
        SecurityEvent(
            what=_event_text(event.event_type),
            note=_note(event),
            occurred_at=event.occurred_at,
            ip=event.ip or "",
            device=device_summary(event.user_agent),
            app=names.get(event.client_id, "") if event.client_id else "",
        )
        for event in page.object_list
    ]
    return page
