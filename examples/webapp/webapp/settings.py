"""Settings of the example relying party: everything comes from the environment (README.md).

A site with no database: the signed-in user lives in a signed session cookie.
"""

import os
import secrets
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent


def _required(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        sys.stderr.write(f"webapp: {name} is required (see examples/webapp/README.md)\n")
        raise SystemExit(2)
    return value


# The OpenID provider: discovery is read from <issuer>/.well-known/openid-configuration.
AUTHSERVER_ISSUER = _required("WEBAPP_AUTHSERVER_ISSUER").rstrip("/")
OIDC_CLIENT_ID = _required("WEBAPP_CLIENT_ID")
# Empty: a public client (PKCE only). Set: a confidential client (client_secret_basic + PKCE).
OIDC_CLIENT_SECRET = os.environ.get("WEBAPP_CLIENT_SECRET", "")
OIDC_SCOPE = os.environ.get("WEBAPP_SCOPE", "openid profile email")
# Must equal a redirect URI registered for the client, character for character. Empty: this
# site's own /callback, as the browser addressed it.
OIDC_REDIRECT_URI = os.environ.get("WEBAPP_REDIRECT_URI", "")

# A per-process key logs everyone out on restart and breaks with several workers: set
# WEBAPP_SECRET_KEY for anything but a one-process demo.
SECRET_KEY = os.environ.get("WEBAPP_SECRET_KEY") or secrets.token_urlsafe(50)
DEBUG = os.environ.get("WEBAPP_DEBUG", "") == "1"
ALLOWED_HOSTS = os.environ.get("WEBAPP_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

INSTALLED_APPS = ["webapp"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
DATABASES = {}

# Sessions in a signed cookie; its own cookie names, since browsers share cookies between ports
# of one host and authserver may run on the same host.
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
SESSION_COOKIE_NAME = "webapp-session"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"  # the OAuth callback is a top-level GET from authserver's site
CSRF_COOKIE_NAME = "webapp-csrf"
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = os.environ.get("WEBAPP_SECURE_COOKIES", "") == "1"
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"

USE_TZ = True
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "INFO"},
}
