"""The hosted login and logout pages, without a browser: Django's test client against real
PostgreSQL and Redis. The browser run is tests/flows/test_browser_login.py."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from django.test import Client

from accounts.views import LOGIN_FAILED_MESSAGE, safe_next_url
from audit.models import AuthEvent
from tests.conftest import PASSWORD
from tests.live import window_with_room

pytestmark = pytest.mark.django_db

CANARY = "canary-Pa55word-that-must-never-be-echoed"
CSRF_INPUT = re.compile(rb'name="csrfmiddlewaretoken" value="[^"]+"')

# Every one of these must be refused as a post-login destination (open-redirect probes).
HOSTILE_NEXT = [
    "https://evil.example/",
    "http://evil.example",
    "//evil.example/",
    "///evil.example/",
    "/\\evil.example/",
    "\\\\evil.example",
    "/\t/evil.example/",
    "/\n/evil.example/",
    "/\r\nSet-Cookie: x=1",
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    " javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "evil.example",
    "https:/evil.example",
    "https:evil.example",
    "/" + "a" * 5000,
]


@pytest.fixture
def csrf_client():
    return Client(enforce_csrf_checks=True)


def csrf_token(client: Client, path: str = "/login") -> str:
    page = client.get(path)
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content)
    assert match, "the page has no CSRF token"
    return match.group(1).decode()


def login_post(client: Client, username: str, password: str, **extra) -> object:
    token = csrf_token(client)
    data = {"csrfmiddlewaretoken": token, "username": username, "password": password, **extra}
    return client.post("/login", data)


# --- The page itself -------------------------------------------------------------------------


def test_login_page_is_an_accessible_form_without_scripts(client):
    page = client.get("/login?next=/somewhere")
    assert page.status_code == 200
    html = page.content.decode()
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert '<html lang="en">' in html
    assert '<label for="id_username">' in html
    assert '<label for="id_password">' in html
    assert re.search(
        r'<input type="text" name="username" id="id_username"[^>]*'
        r'autocomplete="username webauthn"',  # passkeys in autofill where supported
        html,
    )
    assert re.search(
        r'<input type="password" name="password" id="id_password"[^>]*'
        r'autocomplete="current-password"',
        html,
    )
    assert 'name="csrfmiddlewaretoken"' in html
    assert '<input type="hidden" name="next" value="/somewhere">' in html
    assert '<button type="submit"' in html
    # One script, ours, from a static file (passkeys; the form works without it): none inline.
    assert re.findall(r"<script[^>]*>", html) == [
        '<script src="/static/passkeys/passkey.js" defer>'
    ]
    assert re.findall(r"<script[^>]*>\s*</script>", html) == re.findall(
        r"<script[^>]*>.*?</script>", html, re.S
    )
    assert " style=" not in html
    # Only our own stylesheet, nothing from another origin.
    assert re.findall(r'(?:href|src)="(https?:)?//', html) == []


def test_login_page_security_headers(client):
    page = client.get("/login")
    csp = page["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    # Scripts only from our own origin (passkeys/passkey.js), never inline or eval'd.
    assert "script-src 'self';" in csp and "unsafe" not in csp
    assert "no-store" in page["Cache-Control"]
    assert page["X-Frame-Options"] == "DENY"


def test_stylesheet_is_served_by_the_app(client):
    css = client.get("/static/authserver/site.css")
    assert css.status_code == 200
    assert "text/css" in css["Content-Type"]
    assert b":focus-visible" in b"".join(css.streaming_content)


def test_unknown_page_gets_the_styled_404(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert b"Page not found" in response.content
    assert b"authserver/site.css" in response.content


# --- CSRF ------------------------------------------------------------------------------------


def test_login_post_without_csrf_token_is_refused(csrf_client, make_user):
    make_user("alice")
    response = csrf_client.post("/login", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 403
    assert b"This form has expired" in response.content  # our page, not Django's debug text
    assert "_auth_user_id" not in csrf_client.session


def test_login_post_with_csrf_token_signs_in(csrf_client, make_user):
    make_user("alice")
    response = login_post(csrf_client, "alice", PASSWORD)
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert "_auth_user_id" in csrf_client.session


# --- Failures look the same ------------------------------------------------------------------


def _normalised(html: bytes) -> bytes:
    return CSRF_INPUT.sub(b"CSRF", html)


def test_unknown_user_and_wrong_password_get_identical_pages(client, make_user):
    make_user("alice")
    make_user("bob", is_active=False)
    wrong = client.post("/login", {"username": "alice", "password": "wrong password 1"})
    # The same page for an unknown account and an inactive one.
    unknown = client.post("/login", {"username": "nobody", "password": "wrong password 1"})
    inactive = client.post("/login", {"username": "bob", "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == inactive.status_code == 200
    assert LOGIN_FAILED_MESSAGE in wrong.content.decode()
    normal = _normalised(wrong.content)
    assert _normalised(unknown.content).replace(b"nobody", b"alice") == normal
    assert _normalised(inactive.content).replace(b"bob", b"alice") == normal
    assert 'role="alert"' in wrong.content.decode()
    assert 'aria-invalid="true" aria-describedby="login-error"' in wrong.content.decode()


def test_locked_account_gets_the_same_page_even_with_the_right_password(
    client, make_user, settings
):
    settings.AUTHSERVER_LOCKOUT_THRESHOLD = 2
    make_user("alice")
    for _ in range(2):
        client.post("/login", {"username": "alice", "password": "wrong password 1"})
    wrong = client.post("/login", {"username": "alice", "password": "wrong password 1"})
    locked = client.post("/login", {"username": "alice", "password": PASSWORD})
    assert locked.status_code == 200
    assert _normalised(locked.content) == _normalised(wrong.content)
    assert "_auth_user_id" not in client.session


def test_password_is_never_echoed_back(client, make_user):
    make_user("alice")
    failed = client.post("/login", {"username": "alice", "password": CANARY})
    missing_name = client.post("/login", {"username": "", "password": CANARY})
    too_long_name = client.post("/login", {"username": "x" * 300, "password": CANARY})
    for response in (failed, missing_name, too_long_name):
        assert CANARY.encode() not in response.content
        assert b'name="password" id="id_password"' in response.content
        assert not re.search(rb'name="password"[^>]*value=', response.content)
    assert b'value="alice"' in failed.content  # the username is kept, the password is not


def test_missing_fields_get_an_error_summary_linking_to_each_field(client):
    page = client.post("/login", {"username": "", "password": ""})
    html = page.content.decode()
    assert page.status_code == 200
    assert 'role="alert"' in html
    assert '<a href="#id_username">Enter your username or email address.</a>' in html
    assert '<a href="#id_password">Enter your password.</a>' in html
    assert 'aria-invalid="true" aria-describedby="id_username_error"' in html
    assert 'aria-invalid="true" aria-describedby="id_password_error"' in html
    assert not AuthEvent.objects.exists()  # no login attempt was made


def test_over_long_password_is_refused_before_hashing(client, make_user):
    make_user("alice")
    page = client.post("/login", {"username": "alice", "password": "x" * 5000})
    assert page.status_code == 200
    assert b'aria-describedby="id_password_error"' in page.content
    assert not AuthEvent.objects.exists()


# --- Throttle and fail-closed ----------------------------------------------------------------


def test_throttled_login_is_429_with_retry_after_and_a_readable_message(
    client, make_user, settings
):
    settings.AUTHSERVER_LOGIN_THROTTLE_PER_LOGIN = 3
    make_user("alice")
    window_with_room(settings.AUTHSERVER_LOGIN_THROTTLE_WINDOW_SECONDS, 30)
    for _ in range(3):
        assert client.post("/login", {"username": "alice", "password": "nope"}).status_code == 200
    throttled = client.post("/login", {"username": "alice", "password": PASSWORD})
    assert throttled.status_code == 429
    retry_after = int(throttled["Retry-After"])
    assert 0 < retry_after <= settings.AUTHSERVER_LOGIN_THROTTLE_WINDOW_SECONDS
    html = throttled.content.decode()
    assert "Too many sign-in attempts." in html
    assert "Try again in" in html
    assert 'role="alert"' in html
    assert "_auth_user_id" not in client.session


def test_login_fails_closed_with_503_when_the_cache_is_down(client, make_user, dead_cache):
    make_user("alice")
    response = client.post("/login", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 503
    assert response["Retry-After"] == "60"
    assert b"Sign-in is temporarily unavailable." in response.content
    assert "_auth_user_id" not in client.session


# --- Success, next and open redirects --------------------------------------------------------


def test_successful_login_rotates_the_session_and_records_auth_time(client, make_user):
    user = make_user("alice")
    client.get("/login")
    client.session.save()
    before = client.session.session_key
    response = client.post(
        "/login", {"username": "alice", "password": PASSWORD, "next": "/authorize?x=1&y=2"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/authorize?x=1&y=2"
    session = client.session
    assert session.session_key != before
    assert session["_auth_user_id"] == str(user.pk)
    assert isinstance(session["auth_time"], int)
    assert AuthEvent.objects.filter(event_type="login.succeeded", user=user).count() == 1


def test_login_by_email_works_too(client, make_user):
    make_user("alice", email="alice@example.com")
    response = client.post("/login", {"username": "Alice@Example.com", "password": PASSWORD})
    assert response.status_code == 302


def test_next_is_carried_url_encoded_through_the_form(client, make_user):
    make_user("alice")
    target = "/authorize?client_id=demo&redirect_uri=http%3A%2F%2F127.0.0.1%3A9000%2Fcb&state=a b"
    page = client.get("/login?next=" + quote(target, safe=""))
    assert f'name="next" value="{target.replace("&", "&amp;")}"' in page.content.decode()
    response = client.post("/login", {"username": "alice", "password": PASSWORD, "next": target})
    assert response["Location"] == target.replace(" ", "%20")
    event = AuthEvent.objects.get(event_type="login.succeeded")
    assert event.client_id == "demo"


@pytest.mark.parametrize("hostile", HOSTILE_NEXT)
def test_open_redirect_probes_land_on_the_home_page(client, make_user, hostile):
    assert safe_next_url(hostile) is None
    make_user("alice")
    page = client.get("/login", {"next": hostile})
    assert page.status_code == 200
    assert b'name="next"' not in page.content
    response = client.post("/login", {"username": "alice", "password": PASSWORD, "next": hostile})
    assert response.status_code == 302
    assert response["Location"] == "/"
    # Already signed in, the GET redirects at once: still only to the home page.
    again = client.get("/login", {"next": hostile})
    assert again.status_code == 302
    assert again["Location"] == "/"


@pytest.mark.parametrize("good", ["/", "/authorize?client_id=x&state=%2F%2Fevil", "/a/b?c=d#e"])
def test_same_site_paths_are_accepted(good):
    assert safe_next_url(good) == good


def test_signed_in_visitor_is_sent_on_unless_reauthentication_is_forced(client, make_user):
    make_user("alice")
    client.post("/login", {"username": "alice", "password": PASSWORD})
    assert client.get("/login?next=/x")["Location"] == "/x"
    forced = client.get("/login?next=/x&prompt=login")
    assert forced.status_code == 200
    html = forced.content.decode()
    assert "Confirm it\u2019s you" in html
    assert 'value="alice"' in html
    assert '<input type="hidden" name="prompt" value="login">' in html
    first_auth_time = client.session["auth_time"]
    response = client.post(
        "/login", {"username": "alice", "password": PASSWORD, "next": "/x", "prompt": "login"}
    )
    assert response["Location"] == "/x"
    assert client.session["auth_time"] >= first_auth_time


def test_switching_account_on_the_login_page_drops_the_previous_session(client, make_user):
    make_user("alice")
    bob = make_user("bob")
    client.post("/login", {"username": "alice", "password": PASSWORD})
    client.post("/login?prompt=login", {"username": "bob", "password": PASSWORD})
    assert client.session["_auth_user_id"] == str(bob.pk)


def test_login_page_refuses_other_methods(client):
    assert client.put("/login").status_code == 405
    assert client.delete("/login").status_code == 405


# --- Home and logout -------------------------------------------------------------------------


def test_home_page_sends_strangers_to_login_and_greets_the_signed_in(client, make_user):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/login?next=%2F"
    make_user("alice", email="alice@example.com")
    client.post("/login", {"username": "alice", "password": PASSWORD})
    page = client.get("/")
    assert page.status_code == 200
    assert b"alice@example.com" in page.content
    assert b'action="/logout"' in page.content


def test_logout_get_only_asks_and_does_not_sign_out(client, make_user):
    make_user("alice")
    client.post("/login", {"username": "alice", "password": PASSWORD})
    page = client.get("/logout")
    assert page.status_code == 200
    assert b'<form method="post" action="/logout">' in page.content
    assert b"Sign out?" in page.content
    assert "_auth_user_id" in client.session
    assert client.get("/").status_code == 200


def test_logout_post_signs_out_and_is_audited(client, make_user):
    user = make_user("alice")
    client.post("/login", {"username": "alice", "password": PASSWORD})
    response = client.post("/logout")
    assert response.status_code == 303
    assert response["Location"] == "/logout"
    assert "_auth_user_id" not in client.session
    assert "You\u2019re signed out" in client.get("/logout").content.decode()
    assert client.get("/").status_code == 302
    assert AuthEvent.objects.filter(event_type="logout", user=user).count() == 1


def test_logout_post_requires_csrf(csrf_client, make_user):
    make_user("alice")
    login_post(csrf_client, "alice", PASSWORD)
    assert csrf_client.post("/logout").status_code == 403
    assert "_auth_user_id" in csrf_client.session
    token = csrf_token(csrf_client, "/logout")
    assert csrf_client.post("/logout", {"csrfmiddlewaretoken": token}).status_code == 303
    assert "_auth_user_id" not in csrf_client.session
