"""Request-wide middleware."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils import timezone


class RequestStartMiddleware:
    """Stamp when the request reached the application (`request.received_at`).

    The session engine compares it with the moment a refresh token was spent: a token presented
    before it was spent lost a race to a concurrent request; one presented after is a replay.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.received_at = timezone.now()
        return self.get_response(request)
