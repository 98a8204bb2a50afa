"""When a request's credentials were presented, for telling a refresh race from a replay.

A refresh token travels in the request body (or a cookie). The moment that counts is when the
whole request, body included, had arrived: a client can send the headers, wait, and send the
body later. A stamp taken before the body is read (as a middleware would, since WSGI servers call
the application once the headers are in) lets a thief open a request, wait for the rightful
client to spend the token, then send the spent token in the body: presented "before" the spend,
it passed as a lost race instead of reuse (issue 13.10).
"""

from __future__ import annotations

from datetime import datetime

from django.http import HttpRequest
from django.utils import timezone


def body_received_at(request: HttpRequest) -> datetime:
    """Now, once the request body has been read to its end (read here if nobody has yet)."""
    if not getattr(request, "_read_started", False) and not hasattr(request, "_body"):
        request.body  # noqa: B018 - reads the whole body (bounded by DATA_UPLOAD_MAX_MEMORY_SIZE)
    return timezone.now()
