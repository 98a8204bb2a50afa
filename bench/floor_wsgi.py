"""The bare WSGI floor of `make bench` (scenario `wsgi_floor`): gunicorn and nothing else.

The same JSON body as /healthz, for any path, from one callable: what serving a request costs
under authserver's gunicorn settings (worker class, threads, JSON access log) before any
framework runs. `gunicorn bench.floor_wsgi` with deploy/gunicorn.conf.py (bench/run.py).
"""

BODY = b'{"status": "ok"}'
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def application(environ, start_response):
    start_response("200 OK", list(HEADERS))
    return [BODY]
