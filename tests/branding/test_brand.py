"""Branding (issue 18.2): the name, logo and colours from settings or the admin's Brand row on
the hosted pages, /brand.css, the emails and the admin; bad values refused in the admin form and
in the environment; the brand read from the cache, and only by pages that print it."""

from __future__ import annotations

import html

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from authserver.pages import CONTENT_SECURITY_POLICY
from branding.models import Brand
from branding.selectors import brand_get
from branding.services import brand_save
from mail.services import mail_render
from tests.live import base_env, manage, run_python

pytestmark = pytest.mark.django_db(transaction=True)

BRAND_ADMIN = "/admin/branding/brand/"


@pytest.fixture
def brand_settings(settings):
    settings.AUTHSERVER_BRAND_NAME = "Acme ID"
    settings.AUTHSERVER_BRAND_PRIMARY_COLOR = "#7c3aed"
    settings.AUTHSERVER_BRAND_PRIMARY_COLOR_DARK = "#c4b5fd"
    settings.AUTHSERVER_BRAND_LOGO_URL = ""
    return settings


@pytest.fixture
def superuser(make_user):
    return make_user("root", is_staff=True, is_superuser=True)


def brand_queries(captured) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if "branding_brand" in q["sql"]]


def test_login_page_carries_the_brand_from_settings(client, brand_settings):
    page = client.get("/login")
    body = page.content.decode()
    assert "<title>Sign in · Acme ID</title>" in body
    assert '<span class="brand-name">Acme ID</span>' in body
    assert f'href="/brand.css?v={brand_get().version}"' in body
    assert page["Content-Security-Policy"] == CONTENT_SECURITY_POLICY  # no logo: unchanged
    css = client.get(f"/brand.css?v={brand_get().version}")
    assert css["Content-Type"].startswith("text/css")
    assert "immutable" in css["Cache-Control"]
    assert "--brand-primary: #7c3aed;" in css.content.decode()
    assert "--brand-primary: #c4b5fd;" in css.content.decode()
    stale = client.get("/brand.css?v=old")
    assert "max-age=60" in stale["Cache-Control"]


def test_the_admin_row_overrides_settings_and_saving_refreshes_the_cache(client, brand_settings):
    assert "Acme ID" in client.get("/login").content.decode()  # now cached
    brand_save(brand=Brand(name="Beta Login", primary_color="#0f766e"))
    body = client.get("/login").content.decode()
    assert "Beta Login" in body and "Acme ID" not in body
    assert f"/brand.css?v={brand_get().version}" in body
    assert "--brand-primary: #0f766e;" in client.get("/brand.css").content.decode()
    # The dark colour the row leaves empty still comes from the setting.
    assert brand_get().primary_color_dark == "#c4b5fd"


def test_the_brand_is_one_cached_read_and_no_query_where_not_printed(client, brand_settings):
    client.get("/login")  # fills the cache
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/login").status_code == 200
    assert brand_queries(captured) == []
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/.well-known/openid-configuration").status_code == 200
        assert client.get("/healthz").status_code == 200
    assert brand_queries(captured) == []


def test_a_page_reads_the_cached_brand_once(client, brand_settings, monkeypatch):
    from django.core.cache import caches

    client.get("/login")  # fills the cache
    backend = type(caches["default"])
    real_get = backend.get
    keys = []

    def counting_get(self, key, *args, **kwargs):
        keys.append(key)
        return real_get(self, key, *args, **kwargs)

    monkeypatch.setattr(backend, "get", counting_get)
    assert client.get("/login").status_code == 200  # its template and its CSP header
    assert len([k for k in keys if k.startswith("branding:")]) == 1


def test_a_hostile_name_and_colour_written_past_validation_cannot_break_out(client, settings):
    # Written with update(), around the model's validators: the templates escape the name and
    # the stylesheet drops the colour.
    Brand.objects.create(pk=1)
    Brand.objects.update(name="</title><script>alert(1)</script>", primary_color="}<b>red")
    body = client.get("/login").content.decode()
    assert "<script>alert(1)" not in body
    assert html.escape("</title><script>alert(1)</script>", quote=False) in body
    css = client.get("/brand.css").content.decode()
    assert "red" not in css and "<" not in css and "{" not in css


def test_an_https_logo_is_shown_and_allowed_by_the_csp_for_its_origin_only(client, settings):
    settings.AUTHSERVER_BRAND_LOGO_URL = "https://cdn.example.com/acme/logo.svg"
    page = client.get("/login")
    assert 'src="https://cdn.example.com/acme/logo.svg"' in page.content.decode()
    assert "img-src 'self' https://cdn.example.com;" in page["Content-Security-Policy"]
    assert "style-src 'self';" in page["Content-Security-Policy"]


def test_emails_carry_the_brand(brand_settings):
    subject, text, body_html = mail_render(
        template="password_reset",
        context={"user": None, "link": "https://id.example.com/r?token=x", "ttl_minutes": 30},
    )
    assert subject == "Reset your Acme ID password"
    assert "your Acme ID account" in text
    assert text.rstrip().endswith(
        "Acme ID: this message was sent automatically; replies are not read."
    )
    assert "background:#7c3aed;color:#ffffff;" in body_html
    assert "This message was sent automatically by Acme ID." in body_html


def test_email_logo_from_static_is_absolute(brand_settings):
    brand_settings.AUTHSERVER_BRAND_LOGO_URL = "/static/authserver/icon.svg"
    brand_settings.AUTHSERVER_ISSUER = "https://id.example.com"
    _, _, body_html = mail_render(
        template="password_reset", context={"user": None, "link": "https://x/", "ttl_minutes": 1}
    )
    assert 'src="https://id.example.com/static/authserver/icon.svg"' in body_html


def test_admin_sign_in_page_says_sign_in_with_the_brand(client, brand_settings):
    body = client.get("/admin/login/").content.decode()
    assert "<title>Sign in | Acme ID admin</title>" in body
    assert 'value="Sign in"' in body and "Log in" not in body
    assert "Acme ID administration" in body
    assert f"/brand.css?v={brand_get().version}" in body


def test_admin_pages_show_the_brand_and_sign_out(client, brand_settings, superuser):
    client.force_login(superuser)
    body = client.get("/admin/").content.decode()
    assert "Acme ID administration" in body and "| Acme ID admin</title>" in body
    assert ">Sign out</button>" in body and "Log out" not in body
    assert "/brand.css?v=" in body


def admin_form(**fields) -> dict[str, str]:
    base = {"name": "", "logo_url": "", "primary_color": "", "primary_color_dark": ""}
    return base | fields


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("primary_color", "purple", "Enter a colour as #rgb or #rrggbb"),
        ("primary_color_dark", "#12345", "Enter a colour as #rgb or #rrggbb"),
        ("logo_url", "javascript:alert(1)", "The logo URL must be an https:// URL"),
        ("logo_url", "data:image/png;base64,AAAA", "The logo URL must be an https:// URL"),
        ("logo_url", 'https://x.example/"><b>', "without spaces, quotes"),
    ],
)
def test_the_admin_form_refuses_a_bad_value_with_a_form_error(
    client, superuser, field, value, says
):
    client.force_login(superuser)
    response = client.post(BRAND_ADMIN + "add/", admin_form(**{field: value}))
    assert response.status_code == 200  # the form again, not a 500
    assert "errorlist" in response.content.decode()
    assert html.escape(says) in response.content.decode()
    assert not Brand.objects.exists()


def test_http_logo_is_refused_in_production(client, superuser, settings):
    settings.PRODUCTION = True
    client.force_login(superuser)
    response = client.post(BRAND_ADMIN + "add/", admin_form(logo_url="http://cdn.example/l.png"))
    assert "http: is refused in production" in response.content.decode()
    assert not Brand.objects.exists()


def test_a_superuser_saves_the_brand_in_the_admin_and_pages_follow(client, superuser, settings):
    client.force_login(superuser)
    response = client.post(BRAND_ADMIN + "add/", admin_form(name="Gamma", primary_color="#0F766E"))
    assert response.status_code == 302
    anonymous = Client()
    assert "Gamma" in anonymous.get("/login").content.decode()
    assert client.get(BRAND_ADMIN + "add/").status_code == 403  # one row only
    response = client.post(BRAND_ADMIN + "1/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert "Gamma" not in anonymous.get("/login").content.decode()


def test_staff_without_superuser_cannot_touch_the_brand(client, make_user):
    client.force_login(make_user("staffer", is_staff=True))
    assert client.get(BRAND_ADMIN).status_code == 403
    assert client.post(BRAND_ADMIN + "add/", admin_form(name="Mine")).status_code == 403
    assert not Brand.objects.exists()


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("AUTHSERVER_BRAND_PRIMARY_COLOR", "blue", "must be a colour written #rgb or #rrggbb"),
        ("AUTHSERVER_BRAND_PRIMARY_COLOR_DARK", "#12", "must be a colour written #rgb"),
        ("AUTHSERVER_BRAND_LOGO_URL", "javascript:alert(1)", "must be an https:// URL"),
        ("AUTHSERVER_BRAND_NAME", "Acme\x07", "control characters"),
    ],
)
def test_a_bad_brand_setting_stops_the_start_with_one_line(variable, value, says):
    result = manage("check", env=base_env(**{variable: value}))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"authserver: configuration error: {variable} ")
    assert says in lines[0]


def test_site_name_is_the_older_name_of_brand_name():
    code = "from django.conf import settings; print(settings.AUTHSERVER_BRAND_NAME)"
    old = run_python("-c", code, env=base_env(AUTHSERVER_SITE_NAME="Old Name"))
    assert old.stdout.strip() == "Old Name"
    both = run_python(
        "-c", code, env=base_env(AUTHSERVER_SITE_NAME="Old Name", AUTHSERVER_BRAND_NAME="New Name")
    )
    assert both.stdout.strip() == "New Name"


def test_oauth_pages_carry_the_brand(client, brand_settings, make_user):
    error = client.get("/oauth/authorize?client_id=no-such-client&response_type=code")
    body = error.content.decode()
    assert " · Acme ID</title>" in body and "Go to your Acme ID account" in body
    assert "authserver" not in body.replace("authserver/", "")
    client.force_login(make_user("frank"))
    body = client.get("/oauth/end-session").content.decode()
    assert "You are signed in to Acme ID as" in body
    assert "ends your Acme ID session" in body
