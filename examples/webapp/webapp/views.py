"""A relying party that signs people in with authserver.

Everything protocol-related is done by authlib's Django client, configured from authserver's
discovery document: the authorization request with `state`, `nonce` and a PKCE S256 challenge,
the code exchange at the token endpoint, ID token validation against the JWKS (signature,
`iss`, `aud`, `exp`, `nonce`, `at_hash`), the userinfo call, and RP-initiated logout.
"""

from __future__ import annotations

import logging

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.django_client import OAuth
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from joserfc.errors import JoseError

log = logging.getLogger("webapp")

# Claims kept in the session (a signed cookie, so keep it small).
SHOWN_CLAIMS = ("sub", "preferred_username", "name", "email", "email_verified")
SIGN_IN_ERRORS = (AuthlibBaseError, JoseError, requests.RequestException, ValueError)

oauth = OAuth()
oauth.register(
    name="authserver",
    client_id=settings.OIDC_CLIENT_ID,
    client_secret=settings.OIDC_CLIENT_SECRET or None,
    server_metadata_url=settings.AUTHSERVER_ISSUER + "/.well-known/openid-configuration",
    client_kwargs={
        "scope": settings.OIDC_SCOPE,
        "code_challenge_method": "S256",
        "token_endpoint_auth_method": (
            "client_secret_basic" if settings.OIDC_CLIENT_SECRET else "none"
        ),
        "timeout": 10,
    },
)


def _provider_metadata() -> dict:
    metadata = oauth.authserver.load_server_metadata()
    # OpenID Connect Discovery §4.3: the document must name the issuer we asked.
    if metadata.get("issuer") != settings.AUTHSERVER_ISSUER:
        raise ValueError(f"discovery names issuer {metadata.get('issuer')!r}")
    return metadata


def _sign_in_failed(
    request: HttpRequest, error: str, description: str = "", status: int = 400
) -> HttpResponse:
    context = {"error": error, "description": description}
    return render(request, "webapp/error.html", context, status=status)


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "webapp/home.html", {"user": request.session.get("user")})


@require_GET
def login(request: HttpRequest) -> HttpResponse:
    redirect_uri = settings.OIDC_REDIRECT_URI or request.build_absolute_uri(reverse("callback"))
    try:
        _provider_metadata()
        return oauth.authserver.authorize_redirect(request, redirect_uri)
    except SIGN_IN_ERRORS as exc:
        log.warning("cannot start sign-in: %s", exc)
        return _sign_in_failed(
            request, "provider_unavailable", "authserver did not answer.", status=502
        )


@require_GET
def callback(request: HttpRequest) -> HttpResponse:
    try:
        token = oauth.authserver.authorize_access_token(request)
        claims = token.get("userinfo")  # the validated ID token's claims
        if not claims:
            raise ValueError("the token response has no ID token")
        profile = oauth.authserver.userinfo(token=token)  # GET userinfo with the access token
    except SIGN_IN_ERRORS as exc:
        error = getattr(exc, "error", None) or exc.__class__.__name__
        description = getattr(exc, "description", None) or ""
        log.warning("sign-in failed: %s %s", error, description)
        return _sign_in_failed(request, error, description)
    if profile.get("sub") != claims["sub"]:
        return _sign_in_failed(request, "sub_mismatch", "userinfo is about someone else.")

    request.session.cycle_key()
    request.session["user"] = {
        key: profile.get(key, claims.get(key))
        for key in SHOWN_CLAIMS
        if profile.get(key, claims.get(key)) is not None
    }
    request.session["user"]["scope"] = token.get("scope", "")
    request.session["id_token"] = token["id_token"]
    return HttpResponseRedirect(reverse("home"))


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    """Sign out here, then at authserver too when it offers RP-initiated logout."""
    id_token = request.session.get("id_token")
    request.session.flush()
    try:
        end_session = _provider_metadata().get("end_session_endpoint")
    except SIGN_IN_ERRORS:
        end_session = None
    if not (id_token and end_session):
        return HttpResponseRedirect(reverse("home"))
    return oauth.authserver.logout_redirect(
        request,
        post_logout_redirect_uri=request.build_absolute_uri(reverse("home")),
        id_token_hint=id_token,
    )
