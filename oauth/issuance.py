"""Token responses of the token endpoint (RFC 6749 §5.1), built from the one session engine
(sessions.services) and the one issuance service (tokens.issuance)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from audit.events import EventType
from audit.services import audit_event_record
from authserver.conf import get_config
from oauth.claims import ACCESS_TOKEN, ID_TOKEN, claims_for
from oauth.models import Client
from oauth.oidc import id_token_issue, is_openid_request
from sessions.models import Session
from sessions.services import TokenPair, session_start
from tokens.issuance import access_token_issue


def client_audiences(client: Client) -> list[str]:
    """The `aud` of the client's access tokens: its configured audiences, else its own client
    ID. Never AUTHSERVER_DEFAULT_AUDIENCE, the first-party API's audience (issue 13.1): an
    OAuth client's token presented there would make authserver a confused deputy.
    `client_validate` refuses that audience; this drops it from a row saved before the rule."""
    default = get_config().default_audience
    return [a for a in client.audience_list if a != default] or [client.client_id]


def _pair_body(pair: TokenPair) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": pair.access_token,
        "token_type": pair.token_type,
        "expires_in": pair.expires_in,
        "scope": pair.scope,
    }
    if pair.refresh_token:
        body["refresh_token"] = pair.refresh_token
    return body


def user_tokens_issue(
    *,
    client: Client,
    user,
    scopes: list[str],
    auth_time: int,
    amr: list[str] | None = None,
    nonce: str = "",
    parent: Session | None = None,
    ip: str | None = None,
    user_agent: str = "",
    now: datetime | None = None,
) -> tuple[dict[str, Any], Session]:
    """Start a session for an exchanged authorization code: access token, a refresh token when
    the client may have one, and an ID token for OpenID requests. The client's mapped claims
    and the groups claim go into each (oauth/claims.py); neither costs anything without them."""
    access_claims, source = claims_for(client, None, user, scopes, ACCESS_TOKEN)
    pair = session_start(
        user=user,
        client_id=client.client_id,
        audience=client_audiences(client),
        scope=" ".join(scopes),
        issue_refresh_token=client.issues_refresh_token(scopes),
        access_token_lifetime=client.access_token_lifetime,
        extra_claims=access_claims or None,
        amr=amr,
        ip=ip,
        user_agent=user_agent,
        parent=parent,
        now=now,
    )
    body = _pair_body(pair)
    if is_openid_request(scopes):
        id_claims, source = claims_for(client, source, user, scopes, ID_TOKEN)
        body["id_token"] = id_token_issue(
            user=user,
            client_id=client.client_id,
            scopes=scopes,
            auth_time=auth_time,
            amr=amr,
            nonce=nonce,
            access_token=pair.access_token,
            session_id=str(pair.session.id),
            extra_claims=id_claims,
            source=source,
            now=now,
        )
    audit_event_record(
        event=EventType.OAUTH_TOKEN_ISSUED,
        user=user,
        client_id=client.client_id,
        session_id=pair.session.id,
        ip=ip,
        user_agent=user_agent,
        details={"scope": pair.scope, "refresh": pair.refresh_token is not None},
    )
    return body, pair.session


def refreshed_tokens_body(pair: TokenPair) -> dict[str, Any]:
    return _pair_body(pair)


def refresh_access_claims(client: Client):
    """For refresh_token_rotate: a function giving the access token's extra claims for a
    session, read afresh at each refresh (group changes show up at the next refresh); None when
    the client has no access token mapping, so a refresh without the groups scope pays nothing
    (the session's scope is tested in the function, on the rotation's session)."""

    def claims(session: Session) -> dict[str, Any]:
        scopes = session.scope.split()
        return claims_for(client, None, session.user, scopes, ACCESS_TOKEN)[0]

    return claims


def client_tokens_issue(*, client: Client, scopes: list[str]) -> dict[str, Any]:
    """client_credentials (RFC 6749 §4.4): an access token whose subject is the client itself;
    no session and no refresh token (§4.4.3)."""
    issued = access_token_issue(
        subject=client.client_id,
        audience=client_audiences(client),
        client_id=client.client_id,
        scope=" ".join(scopes),
        lifetime=client.access_token_lifetime,
    )
    return {
        "access_token": issued.token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": " ".join(scopes),
    }
