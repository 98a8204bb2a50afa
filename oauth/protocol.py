"""HTTP rules shared by the back-channel endpoints (token, revocation, introspection).

- Bodies are application/x-www-form-urlencoded only (RFC 6749 §3.2, RFC 7009 §2.1, RFC 7662
  §2.1): JSON or multipart bodies are refused with invalid_request.
- Parameters may appear once (RFC 6749 §3.2) and may not carry control characters.
- Responses are JSON with Cache-Control: no-store (RFC 6749 §5.1), errors included.
- Nothing a client sends produces a 500: an oversized body is a 413, a database or key-store
  outage a 503, and anything unexpected a generic server_error with details in the log only.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable

from django.core.exceptions import BadRequest as DjangoBadRequest
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, QueryDict

from tokens.keys import KeyStoreUnavailable

logger = logging.getLogger("oauth")

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class BadRequest(Exception):
    def __init__(self, description: str, status: int = 400):
        super().__init__(description)
        self.description = description
        self.status = status


def json_response(body: dict, status: int = 200, headers: dict | None = None) -> HttpResponse:
    response = HttpResponse(
        json.dumps(body, separators=(",", ":")), status=status, content_type="application/json"
    )
    for name, value in {**NO_STORE, **(headers or {})}.items():
        response[name] = value
    return response


def error_response(
    error: str, description: str, status: int = 400, headers: dict | None = None
) -> HttpResponse:
    return json_response({"error": error, "error_description": description}, status, headers)


# C0 controls and DEL. One regex search instead of a Python loop over every character: the loop
# was a tenth of an introspection's CPU, whose token parameter is a JWT of ~800 characters.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def form_parameters(request: HttpRequest) -> QueryDict:
    """The form body of a POST, checked; raises BadRequest (invalid_request)."""
    media_type = request.content_type.split(";")[0].strip().lower()
    if media_type != FORM_MEDIA_TYPE:
        raise BadRequest(f"The request body must be {FORM_MEDIA_TYPE}.")
    try:
        form = request.POST
    except RequestDataTooBig:
        raise BadRequest("The request body is too large.", 413) from None
    except (TooManyFieldsSent, SuspiciousOperation):
        raise BadRequest("The request has too many parameters.") from None
    except DjangoBadRequest:
        raise BadRequest("The request body must be UTF-8 form data.") from None
    if request.GET:
        # Credentials and codes never travel in the URL (RFC 6749 §3.2, RFC 6750 §5.3).
        raise BadRequest("Parameters must be sent in the request body, not the URL.")
    for key in form:
        values = form.getlist(key)
        if len(values) > 1:
            raise BadRequest(f"The {key[:40]} parameter must not be repeated.")
        if _CONTROL_CHARACTER.search(key) or _CONTROL_CHARACTER.search(values[0]):
            raise BadRequest("Parameters must not contain control characters.")
    return form


def protocol_endpoint(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """POST only; BadRequest and outages become RFC 6749 §5.2-shaped JSON."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method != "POST":
            return error_response("invalid_request", "Use POST.", 405, {"Allow": "POST"})
        try:
            return view(request, *args, **kwargs)
        except BadRequest as exc:
            return error_response("invalid_request", exc.description, exc.status)
        except KeyStoreUnavailable as exc:
            logger.error("signing keys unavailable: %s", exc.reason)
            return _unavailable()
        except (OperationalError, InterfaceError) as exc:
            logger.error("database unavailable: %s", exc.__class__.__name__)
            return _unavailable()
        except DatabaseError:
            logger.exception("database error in %s", view.__name__)
            return error_response("server_error", "The server could not complete the request.", 500)
        except Exception:
            logger.exception("unexpected error in %s", view.__name__)
            return error_response("server_error", "The server could not complete the request.", 500)

    return wrapped


def _unavailable() -> HttpResponse:
    return error_response(
        "temporarily_unavailable",
        "The service is temporarily unavailable.",
        503,
        {"Retry-After": "5"},
    )
