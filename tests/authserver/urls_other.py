"""A URLconf for tests/authserver/test_performance_settings.py: other views on two of the
paths the middleware resolves itself, none on /readyz."""

from django.http import HttpResponse
from django.urls import path

urlpatterns = [
    path("healthz", lambda request: HttpResponse(b"other healthz"), name="healthz"),
    path(".well-known/jwks.json", lambda request: HttpResponse(b"other jwks"), name="jwks"),
]
