"""One error shape for the JSON APIs: {"error": "...", "error_description": "..."}.

DRF's exceptions are mapped onto RFC 6749 §5.2-style codes; `ApiError` carries our own. Anything
unexpected becomes a generic `server_error` with the details in the log only, and a database
outage becomes 503 `temporarily_unavailable` (the client may retry).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class ApiError(Exception):
    """An error with its protocol code, status and optional headers."""

    def __init__(
        self,
        error: str,
        description: str,
        status: int = 400,
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.headers = dict(headers or {})


def error_response(
    error: str, description: str, status: int, headers: Mapping[str, str] | None = None
) -> Response:
    response = Response({"error": error, "error_description": description}, status=status)
    for name, value in {**NO_STORE, **(headers or {})}.items():
        response[name] = value
    return response


def _first_message(detail) -> str:
    if isinstance(detail, Mapping):
        for field, value in detail.items():
            message = _first_message(value)
            return message if field == "non_field_errors" else f"{field}: {message}"
    if isinstance(detail, list | tuple) and detail:
        return _first_message(detail[0])
    return str(detail)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, ApiError):
        return error_response(exc.error, exc.description, exc.status, exc.headers)
    if isinstance(exc, OperationalError | InterfaceError):
        logger.error("database unavailable: %s", exc.__class__.__name__)
        return error_response(
            "temporarily_unavailable",
            "The service is temporarily unavailable.",
            503,
            {"Retry-After": "5"},
        )
    if isinstance(exc, DatabaseError):
        logger.exception("database error")
        return error_response("server_error", "The server could not complete the request.", 500)
    if isinstance(exc, RequestDataTooBig):
        return error_response("invalid_request", "The request body is too large.", 413)
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return error_response("invalid_request", "The request body must be application/json.", 415)
    if isinstance(exc, exceptions.ParseError):
        return error_response("invalid_request", "The request body is not valid JSON.", 400)
    if isinstance(exc, exceptions.ValidationError):
        return error_response("invalid_request", _first_message(exc.detail), 400)
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        response = drf_exception_handler(exc, context)
        description = str(getattr(exc, "detail", "")) or "A valid access token is required."
        headers = {}
        if response is not None and response.get("WWW-Authenticate"):
            headers["WWW-Authenticate"] = response["WWW-Authenticate"]
        else:
            headers["WWW-Authenticate"] = 'Bearer realm="authserver", error="invalid_token"'
        return error_response("invalid_token", description, 401, headers)
    if isinstance(exc, exceptions.Throttled):
        headers = {"Retry-After": str(int(exc.wait or 1))}
        return error_response("too_many_requests", "Too many requests.", 429, headers)
    if isinstance(exc, exceptions.APIException):
        code = {
            404: "not_found",
            405: "method_not_allowed",
            403: "access_denied",
            503: "temporarily_unavailable",
        }.get(exc.status_code, "invalid_request")
        return error_response(code, _first_message(exc.detail), exc.status_code)
    logger.exception("unhandled error in %s", context.get("view").__class__.__name__)
    return error_response("server_error", "The server could not complete the request.", 500)
