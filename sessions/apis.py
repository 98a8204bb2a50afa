"""First-party JSON API: /api/v1/auth/{login,refresh,logout,logout-all}, /api/v1/me, sessions.

Each API parses input, calls one service and shapes the output. Errors use the
{"error", "error_description"} shape (authserver/errors.py). Token responses carry
Cache-Control: no-store (RFC 6749 §5.1).

Browser mode (AUTHSERVER_REFRESH_TOKEN_TRANSPORT=cookie): the refresh token travels in an
HttpOnly; Secure; SameSite=Strict cookie scoped to /api/v1/auth/ instead of the JSON body, and
login/refresh/logout require Django's CSRF token (header X-CSRFToken, from GET /api/v1/auth/csrf).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime

from django.http import HttpResponse
from django.middleware.csrf import CsrfViewMiddleware, get_token
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.network import client_ip
from accounts.services import (
    LoginBusy,
    LoginFailed,
    LoginThrottled,
    LoginUnavailable,
    user_authenticate,
)
from audit.events import EventType as events
from audit.services import audit_event_record
from authserver.conf import get_config
from authserver.counters import CacheUnavailable
from authserver.errors import NO_STORE, ApiError
from authserver.parsers import BoundedJSONParser, json_request_data
from authserver.request_time import body_received_at
from mfa.challenge import (
    MAX_MFA_TOKEN_LENGTH,
    MfaTokenInvalid,
    mfa_token_claim,
    mfa_token_issue,
    mfa_token_read,
    mfa_token_release,
    mfa_token_used,
)
from mfa.policy import amr_with, user_must_enrol
from mfa.selectors import PASSKEY, user_methods
from mfa.services import (
    MAX_CODE_LENGTH,
    SecondFactorFailed,
    mfa_token_refused,
    passkey_response,
    second_factor_verify,
)
from passkeys.ceremony import MAX_CREDENTIAL_JSON, SECOND_FACTOR, authentication_options
from passkeys.services import passkey_options_retry_after
from sessions.models import FIRST_PARTY_CLIENT_ID, Session
from sessions.services import (
    REFRESH_REFUSED_DESCRIPTION,
    RefreshError,
    TokenPair,
    refresh_token_rotate,
    session_app_names,
    session_find_by_refresh_token,
    session_get_live,
    session_list_live,
    session_revoke,
    session_start,
    user_sessions_revoke,
)
from tokens.authentication import AccessTokenAuthentication
from tokens.verification import TokenInvalid

REFRESH_COOKIE_NAME = "__Secure-authserver-refresh"
REFRESH_COOKIE_PATH = "/api/v1/auth/"
_MAX_LOGIN = 254
_MAX_PASSWORD = 1024
_MAX_REFRESH = 512


class SessionAccessTokenAuthentication(AccessTokenAuthentication):
    """The first-party API accepts first-party access tokens only (issue 13.1, confused
    deputy): `client_id` must be FIRST_PARTY_CLIENT_ID and `aud` AUTHSERVER_DEFAULT_AUDIENCE
    (the default of AccessTokenAuthentication), so no OAuth client's token, whatever its scope
    or audience, can read /api/v1/me or end the user's sessions. Our own endpoints also refuse
    access tokens whose session has ended (revoked, expired, password changed, user
    deactivated); downstream APIs rely on the short token lifetime.

    A subclass serving OAuth clients' tokens (userinfo) overrides `client_is_accepted`."""

    def client_is_accepted(self, claims) -> bool:
        return claims.get("client_id") == FIRST_PARTY_CLIENT_ID

    def session_is_live(self, claims) -> bool:
        if not self.client_is_accepted(claims):
            raise TokenInvalid("token not issued for this API")
        sid = claims.get("sid")
        if not sid:
            # Tokens without a session (client_credentials, operator-issued) are never accepted
            # here, so the deny-list of revoked session-less tokens (tokens/revocation.py) needs
            # no lookup on this path: a revoked session-bound token has its session ended.
            return False
        session = session_get_live(sid=sid)
        # The session must be the token's client's own (tokens are signed, so this only fails
        # for a token minted by hand with a wrong sid; cheap, the session is loaded anyway).
        return session is not None and session.client_id == claims.get("client_id")


def _cookie_mode() -> bool:
    return get_config().refresh_token_transport == "cookie"  # noqa: S105 - a mode name


def _enforce_csrf(request: Request) -> None:
    """Cookie-carried credentials need CSRF protection; DRF views are csrf_exempt by default."""
    django_request = request._request
    check = CsrfViewMiddleware(lambda req: None)
    check.process_request(django_request)
    failure = check.process_view(django_request, None, (), {})
    if failure is not None:
        raise ApiError("invalid_request", "CSRF verification failed.", 403)


def _request_meta(request: Request) -> dict:
    return {
        "ip": client_ip(request._request),
        "user_agent": request.META.get("HTTP_USER_AGENT", "")[:512],
    }


# One encoder for every token answer: json.dumps with `separators` builds a new one per call.
_TOKEN_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _token_response(pair: TokenPair, status: int = 200) -> HttpResponse:
    """The token pair as JSON, no-store. Encoded here rather than by DRF's Response and
    JSONRenderer (a template response rendered later, headers set one by one): the same bytes
    (compact separators, UTF-8) and headers for less of a refresh's CPU (bench/README.md)."""
    body = {
        "access_token": pair.access_token,
        "token_type": pair.token_type,
        "expires_in": pair.expires_in,
    }
    cookie = _cookie_mode()
    if pair.refresh_token and not cookie:
        body["refresh_token"] = pair.refresh_token
    response = HttpResponse(
        _TOKEN_JSON.encode(body).encode(),
        content_type="application/json",
        status=status,
        headers=NO_STORE,
    )
    if pair.refresh_token and cookie:
        max_age = int((pair.session.expires_at - timezone.now()).total_seconds())
        response.set_cookie(
            REFRESH_COOKIE_NAME,
            pair.refresh_token,
            max_age=max(max_age, 0),
            path=REFRESH_COOKIE_PATH,
            secure=True,
            httponly=True,
            samesite="Strict",
        )
    return response


def _session_ended_response() -> Response:
    """204 after a logout; in browser mode the refresh cookie is cleared as well."""
    response = Response(status=204, headers=NO_STORE)
    if _cookie_mode():
        response.delete_cookie(REFRESH_COOKIE_NAME, path=REFRESH_COOKIE_PATH, samesite="Strict")
    return response


def _presented_refresh_token(request: Request, data: dict | None) -> str:
    if _cookie_mode():
        _enforce_csrf(request)
        value = request.COOKIES.get(REFRESH_COOKIE_NAME, "")
        if not value:
            raise ApiError("invalid_request", "The refresh token cookie is missing.", 400)
        return value
    return _refresh_token_in(data)


def _refresh_token_in(data) -> str:
    """The body's `refresh_token`, checked as RefreshInput describes it (the schema's source).

    By hand rather than through the serializer: building a serializer copies its fields, a
    measurable share of a refresh's CPU (bench/README.md), for one string.
    """
    if not isinstance(data, Mapping):
        raise ApiError("invalid_request", "The request body must be a JSON object.", 400)
    value = data.get("refresh_token")
    if value is None:
        problem = "This field is required."
    elif not isinstance(value, str):
        problem = "Not a valid string."
    elif not value:
        problem = "This field may not be blank."
    elif len(value) > _MAX_REFRESH:
        problem = f"Ensure this field has no more than {_MAX_REFRESH} characters."
    else:
        return value
    raise ApiError("invalid_request", f"refresh_token: {problem}", 400)


class TokenPairOutput(serializers.Serializer):
    access_token = serializers.CharField()
    refresh_token = serializers.CharField(help_text="Absent in browser (cookie) mode.")
    token_type = serializers.CharField(default="Bearer")
    expires_in = serializers.IntegerField()


ERROR_SCHEMA = inline_serializer(
    "Error",
    {"error": serializers.CharField(), "error_description": serializers.CharField()},
)


MFA_REQUIRED_SCHEMA = inline_serializer(
    "LoginRefused",
    {
        "error": serializers.CharField(
            help_text="invalid_grant (wrong credentials, the same for unknown users), or "
            "mfa_required: the password was right and a second factor must follow at "
            "POST /api/v1/auth/mfa with the mfa_token."
        ),
        "error_description": serializers.CharField(),
        "mfa_token": serializers.CharField(
            required=False, help_text="With mfa_required: single-use, valid for 5 minutes."
        ),
        "methods": serializers.ListField(
            child=serializers.CharField(),
            required=False,
            help_text='With mfa_required: the second factors the user has ("totp", '
            '"recovery_code", "passkey"). This endpoint takes codes; a passkey is presented on '
            "the hosted sign-in pages.",
        ),
    },
)


def _api_login_refusal(exc: Exception) -> ApiError:
    """The API's answer to a refused sign-in step (throttled, busy, cache down)."""
    if isinstance(exc, LoginThrottled):
        return ApiError(
            "too_many_requests",
            "Too many sign-in attempts. Try again later.",
            429,
            {"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, LoginBusy):
        return ApiError(
            "temporarily_unavailable",
            "Sign-in is busy; try again in a few seconds.",
            503,
            {"Retry-After": str(exc.retry_after)},
        )
    return ApiError(
        "temporarily_unavailable",
        "Sign-in is temporarily unavailable.",
        503,
        {"Retry-After": "5"},
    )


class RefreshInput(serializers.Serializer):
    refresh_token = serializers.CharField(max_length=_MAX_REFRESH, trim_whitespace=False)


class JsonOnlyNegotiation(DefaultContentNegotiation):
    """These APIs answer JSON whatever the Accept header says (RFC 9110 §12.5.1 lets a server
    send its default instead of 406): parsing Accept was a measurable share of a refresh."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class JsonApi(APIView):
    parser_classes = [BoundedJSONParser]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JsonOnlyNegotiation
    authentication_classes: list = []
    permission_classes: list = []

    def perform_authentication(self, request: Request) -> None:
        """Only where the view authenticates: without authentication classes request.user
        is None anyway, and DRF still works it out lazily if anything reads it."""
        if self.authentication_classes:
            super().perform_authentication(request)

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        has_body = request.META.get("CONTENT_LENGTH") not in (None, "", "0")
        media_type = request.content_type.split(";")[0].strip().lower()
        if has_body and media_type != "application/json":
            raise ApiError("invalid_request", "The request body must be application/json.", 415)


class StrictCharField(serializers.CharField):
    """A JSON string and nothing else: DRF's CharField turns 123 into "123", so a password sent
    as a number would be tried (and fail as a wrong password, 401) instead of being refused as
    malformed (400)."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


@method_decorator(sensitive_post_parameters("password"), name="dispatch")
class AuthLoginApi(JsonApi):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "LoginRequest"  # a named schema in the OpenAPI document

        username = StrictCharField(max_length=_MAX_LOGIN, help_text="Username or email address.")
        password = StrictCharField(max_length=_MAX_PASSWORD, trim_whitespace=False)

    @extend_schema(
        request=InputSerializer,
        responses={
            200: TokenPairOutput,
            400: ERROR_SCHEMA,
            401: OpenApiResponse(
                MFA_REQUIRED_SCHEMA,
                "Wrong credentials (same for unknown users), or mfa_required: the password "
                "was right and the user has a second factor (complete at /api/v1/auth/mfa).",
            ),
            403: OpenApiResponse(
                ERROR_SCHEMA,
                "mfa_enrollment_required: AUTHSERVER_MFA requires a second factor this user "
                "has not set up yet (on the account pages).",
            ),
            429: OpenApiResponse(ERROR_SCHEMA, "Throttled; see Retry-After."),
            503: OpenApiResponse(
                ERROR_SCHEMA,
                "temporarily_unavailable: the cache is down, or sign-in is busy (a flood); "
                "see Retry-After.",
            ),
        },
        summary="Sign in with a username (or email) and password",
    )
    def post(self, request: Request) -> Response:
        if _cookie_mode():
            _enforce_csrf(request)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        meta = _request_meta(request)
        try:
            user = user_authenticate(
                login=serializer.validated_data["username"],
                password=serializer.validated_data["password"],
                client_id=FIRST_PARTY_CLIENT_ID,
                **meta,
            )
        except LoginThrottled as exc:
            raise ApiError(
                "too_many_requests",
                "Too many sign-in attempts. Try again later.",
                429,
                {"Retry-After": str(exc.retry_after)},
            ) from None
        except LoginBusy as exc:
            raise ApiError(
                "temporarily_unavailable",
                "Sign-in is busy; try again in a few seconds.",
                503,
                {"Retry-After": str(exc.retry_after)},
            ) from None
        except LoginUnavailable:
            raise ApiError(
                "temporarily_unavailable",
                "Sign-in is temporarily unavailable.",
                503,
                {"Retry-After": "5"},
            ) from None
        except LoginFailed:
            raise ApiError("invalid_grant", "The username or password is incorrect.", 401) from None
        methods = user_methods(user=user)
        if methods:
            body = {
                "error": "mfa_required",
                "error_description": "A second factor is required: POST it with the mfa_token "
                "to /api/v1/auth/mfa.",
                "mfa_token": mfa_token_issue(user=user),
                "methods": methods,
            }
            return Response(body, status=401, headers=NO_STORE)
        if user_must_enrol(user):
            raise ApiError(
                "mfa_enrollment_required",
                "Set up two-step verification on the account pages, then sign in again.",
                403,
            )
        pair = session_start(
            user=user,
            client_id=FIRST_PARTY_CLIENT_ID,
            audience=[get_config().default_audience],
            amr=["pwd"],
            **meta,
        )
        return _token_response(pair)


def _mfa_token_accept(value: str, meta: dict, *, claim: bool) -> tuple[object, str]:
    """(user, token id) of a valid mfa_token that is not spent: claimed for this attempt if
    `claim`, else only checked. A refused token is audited and answered 401 invalid_grant;
    CacheUnavailable goes to the caller."""
    try:
        user, jti = mfa_token_read(value)
        spent = (not mfa_token_claim(jti)) if claim else mfa_token_used(jti)
        if spent:
            raise MfaTokenInvalid("token_used", user)
    except MfaTokenInvalid as exc:
        mfa_token_refused(user=exc.user, reason=exc.reason, **meta)
        raise ApiError(
            "invalid_grant",
            "The mfa_token is invalid, expired or already used; sign in again.",
            401,
        ) from None
    return user, jti


@method_decorator(sensitive_post_parameters("code", "mfa_token"), name="dispatch")
class AuthMfaApi(JsonApi):
    # Its own schema component (ref_name): two components named "Input" are drf_spectacular.W001,
    # which fails `check --deploy`, which the host install runs.
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "MfaRequest"  # a named schema in the OpenAPI document

        mfa_token = serializers.CharField(
            max_length=MAX_MFA_TOKEN_LENGTH, help_text="From the mfa_required answer of login."
        )
        code = serializers.CharField(
            max_length=MAX_CODE_LENGTH,
            required=False,
            help_text="The 6-digit code of the authenticator app, or a recovery code.",
        )
        credential = serializers.JSONField(
            required=False,
            help_text="Instead of a code: the passkey's answer to the options of "
            "/api/v1/auth/mfa/passkey-options (navigator.credentials.get()'s PublicKeyCredential "
            "as JSON, an object or its JSON text).",
        )

        def validate(self, attrs):
            if ("code" in attrs) == ("credential" in attrs):
                raise serializers.ValidationError(
                    "Send either code (an authenticator app or recovery code) or credential "
                    "(a passkey's answer), not both and not neither."
                )
            if "credential" in attrs:
                credential = attrs["credential"]
                text = json.dumps(credential) if isinstance(credential, dict) else credential
                if not isinstance(text, str) or not 0 < len(text) <= MAX_CREDENTIAL_JSON:
                    raise serializers.ValidationError(
                        {"credential": "Must be a passkey's answer: a JSON object."}
                    )
                attrs["credential"] = text
            return attrs

    @extend_schema(
        request=InputSerializer,
        responses={
            200: TokenPairOutput,
            400: ERROR_SCHEMA,
            401: OpenApiResponse(
                ERROR_SCHEMA,
                "invalid_grant: the code is wrong or was already used, or the mfa_token is "
                "invalid, expired or already used (sign in again).",
            ),
            429: OpenApiResponse(ERROR_SCHEMA, "Throttled; see Retry-After."),
            503: OpenApiResponse(ERROR_SCHEMA, "temporarily_unavailable; see Retry-After."),
        },
        summary="Complete a sign-in with a second factor (TOTP, recovery code or passkey)",
    )
    def post(self, request: Request) -> Response:
        if _cookie_mode():
            _enforce_csrf(request)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        meta = _request_meta(request)
        try:
            user, jti = _mfa_token_accept(serializer.validated_data["mfa_token"], meta, claim=True)
            data = serializer.validated_data
            if "credential" in data:
                # The challenge was issued for this very token (its id is the binding) and
                # this user; the token is claimed above, so one answer spends it.
                method = PASSKEY
                response = passkey_response(
                    credential_json=data["credential"], binding=_passkey_binding(jti)
                )
            else:
                method, response = None, data["code"]
            try:
                verified = second_factor_verify(
                    user=user,
                    response=response,
                    method=method,
                    client_id=FIRST_PARTY_CLIENT_ID,
                    via="api",
                    **meta,
                )
            except BaseException:
                mfa_token_release(jti)  # a wrong code: the token may be tried again
                raise
        except (LoginThrottled, LoginUnavailable, CacheUnavailable) as exc:
            raise _api_login_refusal(exc) from None
        except SecondFactorFailed:
            raise ApiError(
                "invalid_grant",
                "The passkey was not accepted."
                if "credential" in serializer.validated_data
                else "The code is incorrect or was already used.",
                401,
            ) from None
        pair = session_start(
            user=user,
            client_id=FIRST_PARTY_CLIENT_ID,
            audience=[get_config().default_audience],
            amr=amr_with(["pwd"], verified.amr),
            **meta,
        )
        return _token_response(pair)


def _passkey_binding(jti: str) -> str:
    """The passkey challenge of a first-party sign-in is bound to its mfa_token's random id
    (passkeys.ceremony: a challenge serves one purpose, one binding and one user)."""
    return f"api-mfa:{jti}"


@method_decorator(sensitive_post_parameters("mfa_token"), name="dispatch")
class AuthMfaPasskeyOptionsApi(JsonApi):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "MfaPasskeyOptionsRequest"

        mfa_token = serializers.CharField(
            max_length=MAX_MFA_TOKEN_LENGTH, help_text="From the mfa_required answer of login."
        )

    @extend_schema(
        request=InputSerializer,
        responses={
            200: OpenApiResponse(
                OpenApiTypes.OBJECT,
                "PublicKeyCredentialRequestOptions (WebAuthn, JSON) for "
                "navigator.credentials.get(): a fresh challenge for this mfa_token and the "
                "user's passkeys. POST the answer to /api/v1/auth/mfa as credential.",
            ),
            400: OpenApiResponse(ERROR_SCHEMA, "invalid_request: the account has no passkey."),
            401: OpenApiResponse(
                ERROR_SCHEMA, "invalid_grant: the mfa_token is invalid, expired or already used."
            ),
            429: OpenApiResponse(ERROR_SCHEMA, "slow_down: too many options; see Retry-After."),
            503: OpenApiResponse(ERROR_SCHEMA, "temporarily_unavailable; see Retry-After."),
        },
        summary="Passkey options for the second step of a first-party sign-in",
    )
    def post(self, request: Request) -> Response:
        if _cookie_mode():
            _enforce_csrf(request)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        meta = _request_meta(request)
        try:
            user, jti = _mfa_token_accept(serializer.validated_data["mfa_token"], meta, claim=False)
        except CacheUnavailable:
            raise _api_login_refusal(LoginUnavailable()) from None
        if PASSKEY not in user_methods(user=user):
            raise ApiError(
                "invalid_request", "This account has no passkey; send a code instead.", 400
            )
        try:
            retry_after = passkey_options_retry_after(ip=meta["ip"])
            if retry_after is not None:
                raise ApiError(
                    "slow_down",
                    "Too many passkey requests; wait a minute.",
                    429,
                    {"Retry-After": str(retry_after)},
                )
            options = authentication_options(
                purpose=SECOND_FACTOR, binding=_passkey_binding(jti), user=user
            )
        except CacheUnavailable:
            raise _api_login_refusal(LoginUnavailable()) from None
        return Response(options, headers=NO_STORE)


class AuthRefreshApi(JsonApi):
    @extend_schema(
        request=RefreshInput,
        responses={200: TokenPairOutput, 400: ERROR_SCHEMA, 401: ERROR_SCHEMA},
        summary="Exchange a refresh token for a new pair (the presented token is spent)",
    )
    def post(self, request: Request) -> Response:
        value = _presented_refresh_token(request, json_request_data(request._request))
        try:
            pair = refresh_token_rotate(
                value=value,
                client_id=FIRST_PARTY_CLIENT_ID,
                # After the body was read: a slow body must not date the token back (13.10).
                presented_at=body_received_at(request._request),
                **_request_meta(request),
            )
        except RefreshError as exc:
            raise ApiError("invalid_grant", exc.description, 401) from None
        return _token_response(pair)


class AuthLogoutApi(JsonApi):
    @extend_schema(
        request=RefreshInput,
        responses={204: None, 400: ERROR_SCHEMA, 401: ERROR_SCHEMA},
        summary="End the session a refresh token belongs to",
    )
    def post(self, request: Request) -> Response:
        value = _presented_refresh_token(request, json_request_data(request._request))
        session = session_find_by_refresh_token(value=value)
        if session is None or session.client_id != FIRST_PARTY_CLIENT_ID:
            raise ApiError("invalid_grant", REFRESH_REFUSED_DESCRIPTION, 401)
        if session_revoke(session=session, reason=session.RevokeReason.LOGOUT):
            audit_event_record(
                event=events.LOGOUT,
                user=session.user,
                client_id=session.client_id,
                session_id=session.id,
                **_request_meta(request),
            )
        return _session_ended_response()


class BearerApi(JsonApi):
    authentication_classes = [SessionAccessTokenAuthentication]
    permission_classes = [IsAuthenticated]


class AuthLogoutAllApi(BearerApi):
    @extend_schema(request=None, responses={204: None, 401: ERROR_SCHEMA})
    def post(self, request: Request) -> Response:
        count = user_sessions_revoke(user=request.user, reason="logout_all")
        audit_event_record(
            event=events.LOGOUT_ALL,
            user=request.user,
            client_id=FIRST_PARTY_CLIENT_ID,
            details={"sessions": count},
            **_request_meta(request),
        )
        return _session_ended_response()


class AuthCsrfApi(JsonApi):
    """Browser mode: hands out the CSRF token (also set as a cookie) the auth POSTs need."""

    @extend_schema(
        responses={200: inline_serializer("CsrfToken", {"csrf_token": serializers.CharField()})}
    )
    def get(self, request: Request) -> Response:
        return Response({"csrf_token": get_token(request._request)}, headers=NO_STORE)


class UserMeApi(BearerApi):
    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "User"  # a named schema in the OpenAPI document

        sub = serializers.CharField()
        username = serializers.CharField()
        email = serializers.EmailField()

    @extend_schema(responses={200: OutputSerializer, 401: ERROR_SCHEMA})
    def get(self, request: Request) -> Response:
        user = request.user
        return Response(
            self.OutputSerializer(
                {"sub": user.sub, "username": user.username, "email": user.email}
            ).data,
            headers={"Cache-Control": "no-store"},
        )


class SessionOutput(serializers.Serializer):
    id = serializers.UUIDField()
    kind = serializers.ChoiceField(
        choices=["browser", "first_party", "oauth"],
        help_text="browser: a sign-in at the hosted pages; first_party: this API's login; "
        "oauth: a grant to an OAuth client (ended with the browser sign-in in parent_id).",
    )
    client_id = serializers.CharField()
    app_name = serializers.CharField(help_text="The OAuth client's name, or the kind's.")
    parent_id = serializers.UUIDField(allow_null=True)
    user_agent = serializers.CharField(help_text="The device, as its browser or app named it.")
    ip = serializers.IPAddressField(allow_null=True)
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    current = serializers.BooleanField()


def _datetime_output(value: datetime) -> str:
    """What DRF's DateTimeField renders: ISO 8601 in the current time zone, UTC as `Z`."""
    text = timezone.localtime(value).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def session_output(session: Session, names: dict[str, str], current: str | None) -> dict:
    """One session as SessionOutput describes it (the schema's source), built directly: DRF's
    serializer cost about 0.1 ms per session, most of a long list's time. A test holds the two
    to the same output."""
    return {
        "id": str(session.id),
        "kind": str(session.kind),
        "client_id": session.client_id,
        "app_name": names.get(session.client_id, session.client_id),
        "parent_id": None if session.parent_id is None else str(session.parent_id),
        "user_agent": session.user_agent,
        "ip": session.ip,
        "created_at": _datetime_output(session.created_at),
        "last_used_at": _datetime_output(session.last_used_at),
        "expires_at": _datetime_output(min(session.expires_at, session.idle_expires_at)),
        "current": str(session.id) == current,
    }


class SessionListApi(BearerApi):
    @extend_schema(responses={200: SessionOutput(many=True), 401: ERROR_SCHEMA})
    def get(self, request: Request) -> Response:
        current = request.auth.get("sid") if isinstance(request.auth, dict) else None
        sessions = session_list_live(user=request.user)
        names = session_app_names(sessions)
        rows = [session_output(s, names, current) for s in sessions]
        return Response(rows, headers={"Cache-Control": "no-store"})


class SessionDeleteApi(BearerApi):
    @extend_schema(
        # The path takes any segment, so that a malformed id gets this API's JSON 404 rather
        # than the HTML page of an unmatched URL; the schema still says what a valid one is.
        parameters=[OpenApiParameter("session_id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        responses={204: None, 401: ERROR_SCHEMA, 404: ERROR_SCHEMA},
    )
    def delete(self, request: Request, session_id) -> Response:
        session = session_get_live(sid=str(session_id), user=request.user)
        if session is None:
            raise ApiError("not_found", "No such session.", 404)
        if session_revoke(session=session, reason=session.RevokeReason.USER_ENDED):
            audit_event_record(
                event=events.SESSION_REVOKED,
                user=request.user,
                client_id=session.client_id,
                session_id=session.id,
                details={"reason": "user_ended"},
                **_request_meta(request),
            )
        return Response(status=204)
