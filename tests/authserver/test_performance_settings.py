"""Settings and middleware that exist for speed keep their guarantees (bench/README.md)."""

from __future__ import annotations

import pytest
from django.test import override_settings

from authserver.conf import get_config
from tests.live import base_env, manage


def test_get_config_is_built_once_and_follows_setting_changes(settings):
    first = get_config()
    assert get_config() is first
    settings.AUTHSERVER_ACCESS_TOKEN_TTL = 123
    assert get_config().access_token_ttl == 123
    with override_settings(AUTHSERVER_ISSUER="https://other.example"):
        assert get_config().issuer == "https://other.example"
    assert get_config().issuer == first.issuer


def test_postgres_uses_prepared_statements_by_default(settings):
    options = settings.DATABASES["default"]["OPTIONS"]
    assert options["server_side_binding"] is True
    assert options["prepare_threshold"] == 5


def test_prepared_statements_can_be_turned_off_for_old_pgbouncer():
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings as s; o = s.DATABASES['default']['OPTIONS'];"
        "print(o.get('server_side_binding'), o.get('prepare_threshold'))",
        env=base_env(DATABASE_PREPARED_STATEMENTS="false"),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["None", "None"]


def test_prepared_statements_setting_refuses_a_non_boolean():
    result = manage("check", env=base_env(DATABASE_PREPARED_STATEMENTS="maybe"))
    assert result.returncode != 0
    assert "DATABASE_PREPARED_STATEMENTS" in result.stderr


@pytest.mark.django_db
class TestMachinePaths:
    """Token endpoints and the JWKS skip the browser middleware, nothing else."""

    def test_machine_paths_set_no_cookies_and_keep_security_headers(self, client):
        response = client.get("/.well-known/jwks.json")
        assert response.status_code == 200
        assert response.cookies == {}
        assert response["X-Content-Type-Options"] == "nosniff"
        assert "X-Request-ID" in response
        refused = client.post(
            "/api/v1/auth/refresh", {"refresh_token": "x" * 43}, content_type="application/json"
        )
        assert refused.status_code == 401
        assert refused.cookies == {}
        assert refused["Cache-Control"] == "no-store"

    def test_machine_paths_still_validate_the_host(self, client):
        for path in ("/.well-known/jwks.json", "/oauth/token", "/api/v1/auth/refresh"):
            response = client.post(path, HTTP_HOST="evil.example")
            assert response.status_code == 400, path

    def test_browser_paths_keep_csrf_and_framing_protection(self, client):
        page = client.get("/login")
        assert page.status_code == 200
        assert page["X-Frame-Options"] == "DENY"
        assert any("csrf" in name for name in page.cookies)
        csrf = client.get("/api/v1/auth/csrf")  # sets the CSRF cookie for browser mode
        assert csrf.status_code == 200
        assert any("csrf" in name for name in csrf.cookies)

    def test_userinfo_is_a_machine_path(self, client):
        """A bearer-token resource: no session or CSRF cookie, the security headers and the
        request id kept, the host still validated, its own errors (RFC 6750) unchanged."""
        response = client.get("/oauth/userinfo", HTTP_AUTHORIZATION="Bearer not-a-token")
        assert response.status_code == 401
        assert response.cookies == {}
        assert response["X-Content-Type-Options"] == "nosniff"
        assert "X-Request-ID" in response
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert client.get("/oauth/userinfo", HTTP_HOST="evil.example").status_code == 400

    def test_machine_and_probe_paths_follow_a_new_urlconf(self, client):
        """Their views are resolved once per URLconf (authserver.middleware.ExactPathViews):
        another URLconf's views answer, and the old ones again after it."""
        assert client.get("/healthz").status_code == 200
        assert client.get("/.well-known/jwks.json").status_code == 200
        with override_settings(ROOT_URLCONF="tests.authserver.urls_other"):
            assert client.get("/healthz").content == b"other healthz"
            assert client.get("/.well-known/jwks.json").content == b"other jwks"
            assert client.get("/readyz").status_code == 404
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/.well-known/jwks.json").json()["keys"]

    def test_a_slash_variant_is_not_a_machine_path(self, client):
        response = client.post("/oauth/token/", HTTP_HOST="evil.example")
        assert response.status_code == 400
