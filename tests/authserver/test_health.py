"""/healthz and /readyz, in-process and under gunicorn."""

from __future__ import annotations

import time

import pytest
import requests
from django.http import HttpResponse, JsonResponse
from django.test import RequestFactory
from django.utils.http import parse_http_date
from django.views.decorators.cache import never_cache

from tests.live import Gunicorn, base_env, manage


@pytest.mark.django_db
def test_healthz_touches_no_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_carry_exactly_the_headers_never_cache_sets(client, path):
    """The probes set never_cache's headers themselves (cheaper, bench/README.md): the same
    Cache-Control, an Expires of now, and still GET only."""
    reference = never_cache(lambda request: HttpResponse())(RequestFactory().get(path))
    before = time.time()
    response = client.get(path)
    assert response["Cache-Control"] == reference["Cache-Control"]
    expires = parse_http_date(response["Expires"])
    assert int(before) - 1 <= expires <= time.time() + 1
    assert client.post(path).status_code == 405
    assert client.head(path).status_code == 405


def test_healthz_body_is_the_json_response_it_replaced(client):
    assert client.get("/healthz").content == JsonResponse({"status": "ok"}).content


@pytest.mark.django_db
def test_readyz_is_ready_with_migrated_database(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"


def test_readyz_is_503_with_json_reason_when_database_is_unreachable():
    env = base_env(DATABASE_URL="postgres://nobody@127.0.0.1:1/nothing")
    with Gunicorn(env, workers=1) as server:
        assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
        response = requests.get(server.url + "/readyz", timeout=10)
        assert response.status_code == 503
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["reason"] == "database: database unreachable"


def test_sqlite_default_serves_health_admin_and_readiness_after_migrate(tmp_path):
    """What `make run` relies on: the embedded SQLite default, migrated, serving admin pages."""
    env = base_env(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    env.pop("REDIS_URL")
    with Gunicorn(env, workers=1) as server:
        response = requests.get(server.url + "/readyz", timeout=10)
        assert response.status_code == 503
        assert "not applied" in response.json()["reason"]
    migrated = manage("migrate", "--noinput", env=env, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    with Gunicorn(env, workers=2) as server:
        assert requests.get(server.url + "/readyz", timeout=10).status_code == 200
        login = requests.get(server.url + "/admin/login/", timeout=10)
        assert login.status_code == 200
        assert 'name="password"' in login.text
        css = requests.get(server.url + "/static/admin/css/base.css", timeout=10)
        assert css.status_code == 200
