"""authserver under gunicorn in production mode, reached the way nginx reaches it.

Production settings (HTTPS redirect, ALLOWED_HOSTS, JSON logs) are on; the test process plays
the proxy: it connects from 127.0.0.1, which is listed in AUTHSERVER_TRUSTED_PROXIES, and sends
`Host: id.example.com` and `X-Forwarded-Proto: https`, as deploy/nginx.conf does.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tests.live import Gunicorn

HOST = "id.example.com"
ISSUER = f"https://{HOST}"
PROXY_HEADERS = {"Host": HOST, "X-Forwarded-Proto": "https"}


def production_env(child_env: Mapping[str, str], tmp_path: Path, **overrides: str) -> dict:
    return {
        **child_env,
        "AUTHSERVER_MODE": "production",
        "ALLOWED_HOSTS": HOST,
        "AUTHSERVER_ISSUER": ISSUER,
        "AUTHSERVER_TRUSTED_PROXIES": "127.0.0.1",
        "AUTHSERVER_METRICS_DIR": str(tmp_path / "metrics"),
        **overrides,
    }


def production_gunicorn(
    child_env: Mapping[str, str], tmp_path: Path, workers: int = 1, **overrides: str
) -> Gunicorn:
    return Gunicorn(production_env(child_env, tmp_path, **overrides), workers=workers)
