"""Login tickets: proof that the password was typed for *this* authorization request, in *this*
browser (OpenID Connect Core §3.1.2.1 `prompt=login`, `max_age=0`, a mismatched `id_token_hint`).

When the authorization endpoint sends a browser to the login page it issues a ticket: a random
id, carried in the URL the login page returns to, and kept in that browser's session together
with a digest of the request and the id of the sign-in seen at that moment
(accounts.login_flow.sign_in_id). Back at the endpoint, the ticket counts only if this browser's
session holds it, for this very request, and a different sign-in id is current: a sign-in
happened since, here. A ticket copied into another browser is unknown there; a ticket is spent
when the request it was issued for gets its answer (a code, a denial), so a reload or a replayed
URL asks for the password again.

The tickets sit under accounts.login_flow.PENDING_SESSION_KEY, which the login page carries
through login() even when a different user signs in (login() flushes the session then).
"""

from __future__ import annotations

import re
import secrets

from django.http import HttpRequest

from accounts.login_flow import PENDING_SESSION_KEY, sign_in_id

TICKET_MAX_AGE = 900  # seconds from issue to return from the login page
MAX_PENDING = 8  # per browser; the oldest are dropped (a visitor with many tabs open)
_TICKET_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")  # secrets.token_urlsafe(16)


def _pending(request: HttpRequest, now: int) -> dict[str, list]:
    raw = request.session.get(PENDING_SESSION_KEY)
    if not isinstance(raw, dict):
        return {}
    return {
        ticket_id: entry
        for ticket_id, entry in raw.items()
        if isinstance(entry, list)
        and len(entry) == 3
        and isinstance(entry[2], int)
        and 0 <= now - entry[2] <= TICKET_MAX_AGE
    }


def login_ticket_issue(*, request: HttpRequest, request_digest: str, now: int) -> str:
    """A new ticket for this request in this browser; its id goes into the return URL."""
    tickets = _pending(request, now)
    ticket_id = secrets.token_urlsafe(16)
    tickets[ticket_id] = [request_digest, sign_in_id(request) or "", now]
    if len(tickets) > MAX_PENDING:
        newest = sorted(tickets.items(), key=lambda item: item[1][2])[-MAX_PENDING:]
        tickets = dict(newest)
    request.session[PENDING_SESSION_KEY] = tickets
    return ticket_id


def login_ticket_fresh(
    *, request: HttpRequest, ticket_id: str | None, request_digest: str, now: int
) -> bool:
    """True when this browser holds the ticket for this request and its user has signed in
    (typed the password) since the ticket was issued."""
    if not isinstance(ticket_id, str) or not _TICKET_ID.match(ticket_id):
        return False
    entry = _pending(request, now).get(ticket_id)
    current = sign_in_id(request)
    if entry is None or current is None:
        return False
    digest, seen, _issued_at = entry
    return secrets.compare_digest(str(digest), request_digest) and current != seen


def login_ticket_spend(*, request: HttpRequest, ticket_id: str | None) -> None:
    """The request got its answer: the ticket cannot serve again."""
    raw = request.session.get(PENDING_SESSION_KEY)
    if isinstance(raw, dict) and isinstance(ticket_id, str) and ticket_id in raw:
        remaining = {key: value for key, value in raw.items() if key != ticket_id}
        request.session[PENDING_SESSION_KEY] = remaining
