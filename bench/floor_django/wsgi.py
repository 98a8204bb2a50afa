"""`gunicorn bench.floor_django.wsgi` (bench/run.py, with deploy/gunicorn.conf.py).

The settings module is set, not defaulted: deploy/gunicorn.conf.py reads its values from
DJANGO_SETTINGS_MODULE=authserver.settings (imported as a plain module, which does not
configure Django), and this app must run under its own.
"""

import os

os.environ["DJANGO_SETTINGS_MODULE"] = "bench.floor_django.settings"

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
