"""ASGI entry point (authserver is deployed under gunicorn/WSGI; this is here for completeness)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "authserver.settings")

application = get_asgi_application()
