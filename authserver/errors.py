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


def description_sentence(text: str) -> str:
    """The one style of every error_description: a sentence, capital first, full stop last
    ("token expired" -> "Token expired."). Field problems read "field: Sentence."."""
    text = str(text).strip()
    if not text:
        return text
    if text[0].islower() and ":" not in text.split(" ", 1)[0]:
        text = text[0].upper() + text[1:]
    return text if text.endswith((".", "?", "!")) else text + "."


def method_not_allowed_description(method: str, allowed: str) -> str:
    method = "".join(c for c in str(method)[:20] if c.isalnum() or c == "-") or "This"
    return f"The {method} method is not allowed here; use {allowed}."


def _messages(detail) -> list[str]:
    """Every message of a DRF error detail, each a sentence; a field's prefixed with its name."""
    if isinstance(detail, Mapping):
        found: list[str] = []
        for field, value in detail.items():
            for message in _messages(value):
                found.append(message if field == "non_field_errors" else f"{field}: {message}")
        return found
    if isinstance(detail, list | tuple):
        return [m for item in detail for m in _messages(item)]
    return [description_sentence(str(detail))]


def _all_messages(detail) -> str:
    """All problems at once (an empty body names every missing field, not only the first)."""
    return " ".join(_messages(detail)) or "The request is invalid."


def _first_message(detail) -> str:
    messages = _messages(detail)
    return messages[0] if messages else "The request is invalid."


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
        return error_response("invalid_request", _all_messages(exc.detail), 400)
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        response = drf_exception_handler(exc, context)
        description = description_sentence(
            str(getattr(exc, "detail", "")) or "A valid access token is required."
        )
        headers = {}
        if response is not None and response.get("WWW-Authenticate"):
            headers["WWW-Authenticate"] = response["WWW-Authenticate"]
        else:
            headers["WWW-Authenticate"] = 'Bearer realm="authserver", error="invalid_token"'
        return error_response("invalid_token", description, 401, headers)
    if isinstance(exc, exceptions.Throttled):
        headers = {"Retry-After": str(int(exc.wait or 1))}
        return error_response("too_many_requests", "Too many requests.", 429, headers)
    if isinstance(exc, exceptions.MethodNotAllowed):
        view = context.get("view")
        allowed = ", ".join(getattr(view, "allowed_methods", ()) or ())
        request = context.get("request")
        description = method_not_allowed_description(getattr(request, "method", ""), allowed)
        return error_response("method_not_allowed", description, 405, {"Allow": allowed})
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
