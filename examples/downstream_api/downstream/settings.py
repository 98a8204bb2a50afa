"""A minimal API that trusts authserver's access tokens.

It holds no key material: stock simplejwt fetches the public keys from authserver's JWKS URL and
checks the issuer and the audience. Three variables configure it:

    AUTHSERVER_JWKS_URL   e.g. https://id.example.com/.well-known/jwks.json
    AUTHSERVER_ISSUER     e.g. https://id.example.com
    DOWNSTREAM_AUDIENCE   this API's identifier, the `aud` authserver puts in its tokens
"""

import os
import secrets

# No sessions, no cookies, no database: this key only satisfies Django.
SECRET_KEY = os.environ.get("DOWNSTREAM_SECRET_KEY") or secrets.token_urlsafe(50)
DEBUG = False
ALLOWED_HOSTS = os.environ.get("DOWNSTREAM_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "rest_framework"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "downstream.urls"
WSGI_APPLICATION = "downstream.wsgi.application"
DATABASES = {}
USE_TZ = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Stock simplejwt, no database lookup: request.user is a TokenUser built from the token.
        "rest_framework_simplejwt.authentication.JWTStatelessUserAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,
}

SIMPLE_JWT = {
    "ALGORITHM": "RS256",  # pinned: a token naming any other alg is rejected
    "JWK_URL": os.environ["AUTHSERVER_JWKS_URL"],
    "ISSUER": os.environ["AUTHSERVER_ISSUER"],
    "AUDIENCE": os.environ["DOWNSTREAM_AUDIENCE"],
    "SIGNING_KEY": None,  # this service never signs
    "USER_ID_CLAIM": "sub",
    # RFC 9068 access tokens carry their type in the JWS header (typ: at+jwt), not in a claim.
    "TOKEN_TYPE_CLAIM": None,
    "LEEWAY": 30,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
