"""Authentication backend for the Django admin's login form.

Django's ModelBackend would let /admin/login/ bypass the login throttle and lockout. This backend
sends every username/password check through `user_authenticate`, so the admin login page has the
same brute-force protection, timing equalisation and audit trail as every other login.
"""

from __future__ import annotations

from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

from accounts.network import client_ip
from accounts.services import LoginFailed, LoginThrottled, LoginUnavailable, user_authenticate

ADMIN_CLIENT_ID = "admin"


class ProtectedModelBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None or password is None:
            return None
        if request is None:
            # No request, no client IP to throttle on: refuse rather than skip the protection.
            return None
        try:
            return user_authenticate(
                login=username,
                password=password,
                ip=client_ip(request),
                user_agent=request.META.get("HTTP_USER_AGENT", ""),
                client_id=ADMIN_CLIENT_ID,
            )
        except LoginFailed:
            return None
        except (LoginThrottled, LoginUnavailable):
            # Stop here: no other backend may try this attempt.
            raise PermissionDenied from None
