"""Issue 18.3: each hosted page, rendered in German, shows no English.

Each page is rendered twice in the same state, in English and in German, and compared by
tests/i18n/checker.py. German is chosen the three ways a person gets it: the browser's
Accept-Language (every page), the OpenID Connect ui_locales of the authorization request the
page belongs to (the flow's pages, with an English browser), and the language saved on the
account (the signed-in pages, with an English browser). In-process (Django's test client):
the pages and their states are many; the order of the three is checked over HTTP against
gunicorn in test_language_order.py.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse

from accounts.models import User
from branding.selectors import brand_get
from mfa import services as mfa_services
from oauth.clients import client_create
from oauth.consents import consent_grant
from oauth.pkce import s256_challenge
from sessions.services import session_start
from tests.conftest import PASSWORD
from tests.i18n.checker import page_texts, untranslated

pytestmark = pytest.mark.django_db

REDIRECT_URI = "https://photos.example.com/cb"
ENGLISH = {"HTTP_ACCEPT_LANGUAGE": "en-GB,en;q=0.9"}
GERMAN = {"HTTP_ACCEPT_LANGUAGE": "de-DE,de;q=0.9,en;q=0.5"}


@pytest.fixture(autouse=True)
def _open_registration(settings):
    settings.AUTHSERVER_REGISTRATION = "open"


@pytest.fixture
def app(db):
    return client_create(
        name="Photo app",
        client_type="confidential",
        grant_types=["authorization_code", "refresh_token"],
        redirect_uris=[REDIRECT_URI],
        scopes=["openid", "profile", "email", "offline_access"],
        post_logout_redirect_uris=["https://photos.example.com/bye"],
    ).client


def authorize_url(app, **extra: str) -> str:
    params = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid profile email offline_access",
        "state": "s1",
        "code_challenge": s256_challenge("v" * 50),
        "code_challenge_method": "S256",
        **extra,
    }
    return reverse("oauth:authorize") + "?" + urlencode(params)


@pytest.fixture
def dana(make_user, app):
    """A user with a session at an app, a consent, and an authenticator app."""
    user = make_user("dana", email="dana@example.com", first_name="Dana")
    consent_grant(user=user, client=app, scopes=["openid", "profile"])
    session_start(user=user, client_id=app.client_id, audience=["api"])
    return user


def signed_in(user: User) -> Client:
    client = Client()
    response = client.post(reverse("login"), {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302, response.content[:300]
    return client


def enrol_totp(user: User) -> str:
    factor, secret = mfa_services.totp_enrolment_begin(user=user)
    step = mfa_services.totp_time_step(datetime.now(tz=UTC))
    assert mfa_services.totp_enrolment_confirm(
        factor=factor, code=mfa_services.totp_code_at(secret, step)
    )
    return secret


def data_of(*users: User, extra: tuple[str, ...] = ()) -> set[str]:
    """What may read the same in both languages: names of people, apps and languages."""
    languages = {name for _code, name in django_settings.LANGUAGES}
    values = {brand_get().name, "Photo app", "UTC", *languages}
    for user in users:
        values |= {user.username, user.email, user.first_name, user.last_name}
    return values | set(extra)


def assert_german(english, german, data: set[str]) -> None:
    assert english.status_code == german.status_code, (english.status_code, german.status_code)
    english_html, german_html = english.content.decode(), german.content.decode()
    assert page_texts(english_html)[0] == "en"
    lang, texts = page_texts(german_html)
    assert lang == "de", f"<html lang={lang!r}>"
    assert german["Content-Language"] == "de"
    assert texts, "no text on the page"
    left = untranslated(english=english_html, german=german_html, data=data)
    assert not left, f"English on the German page: {left}"


def both(client: Client, method: str, url: str, data=None, *, english=ENGLISH, german=GERMAN):
    send = getattr(client, method)
    first = send(url, data or {}, **english)
    second = send(url, data or {}, **german)
    return first, second


# --- Anonymous pages ------------------------------------------------------------------------

ANONYMOUS = [
    ("login", "get", "/login", None),
    ("login-field-errors", "post", "/login", {"username": "", "password": ""}),
    ("login-failed", "post", "/login", {"username": "dana", "password": "wrong password 1"}),
    ("forgot", "get", "/password/forgot", None),
    ("forgot-errors", "post", "/password/forgot", {"login": ""}),
    ("forgot-sent", "post", "/password/forgot", {"login": "dana@example.com"}),
    ("reset-invalid", "get", "/password/reset?token=not-a-real-token", None),
    ("signup", "get", "/signup", None),
    ("signup-errors", "post", "/signup", {"username": "x y", "email": "nope", "password1": "a"}),
    ("signed-out", "get", "/logout", None),
    ("not-found", "get", "/no-such-page", None),
]


@pytest.mark.parametrize(
    ("name", "method", "url", "data"), ANONYMOUS, ids=[a[0] for a in ANONYMOUS]
)
def test_anonymous_pages_in_german_by_accept_language(dana, name, method, url, data):
    english, german = both(Client(), method, url, data)
    assert_german(english, german, data_of(dana))


def test_the_form_expired_page_in_german(dana):
    client = Client(enforce_csrf_checks=True)
    english, german = both(client, "post", "/login", {"username": "dana", "password": "x"})
    assert german.status_code == 403
    assert_german(english, german, data_of(dana))


def test_the_application_error_page_in_german(dana):
    url = reverse("oauth:authorize") + "?client_id=no-such-app&response_type=code"
    english, german = both(Client(), "get", url)
    assert german.status_code == 400
    assert_german(english, german, data_of(dana))


# --- Signed-in pages ------------------------------------------------------------------------

ACCOUNT_PAGES = [
    "home",
    "logout",
    "account:profile",
    "account:email",
    "account:password",
    "account:mfa",
    "account:mfa-totp",
    "account:mfa-recovery",
    "account:mfa-remove",
    "account:passkey-add",
    "account:sessions",
    "account:sessions-end-others",
    "account:apps",
    "account:activity",
    "account:delete",
]


@pytest.mark.parametrize("name", ACCOUNT_PAGES)
@pytest.mark.parametrize("how", ["accept-language", "saved-language"])
def test_signed_in_pages_in_german(dana, app, name, how):
    client = signed_in(dana)
    secret = enrol_totp(dana)  # after the sign-in: the second step is not asked for here
    url = reverse(name)
    if how == "accept-language":
        english, german = both(client, "get", url)
    else:
        english = client.get(url, **ENGLISH)
        User.objects.filter(pk=dana.pk).update(language="de")
        german = client.get(url, **ENGLISH)  # the browser says English; the account says German
    key = re.search(r'id="totp-secret"[^>]*>([^<]+)<', german.content.decode())
    extra = (key.group(1),) if key else ()
    assert_german(english, german, data_of(dana, extra=(secret, *extra)))


@pytest.mark.parametrize("name", ["account:sessions", "account:apps", "account:activity"])
def test_moments_are_written_the_way_each_language_writes_dates(dana, app, name):
    """DATETIME_FORMAT of authserver/formats: "6 Dec 2026, 04:30 UTC", and in German
    "6. Dezember 2026, 04:30 UTC" (day with a dot, month in full), never "6 Dez 2026"."""
    client = signed_in(dana)
    consent_grant(user=dana, client=app, scopes=["openid"])
    english, german = both(client, "get", reverse(name))
    months_de = "Januar|Februar|März|April|Mai|Juni|Juli|August|September|Oktober|November|Dezember"
    assert re.search(r"\b\d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d UTC", english.content.decode())
    page = german.content.decode()
    assert re.search(rf"\b\d{{1,2}}\. (?:{months_de}) \d{{4}}, \d\d:\d\d UTC", page)
    assert not re.search(r"\b\d{1,2} [A-Z][a-zä]{2} \d{4}", page)


def test_account_page_states_in_german(dana, app):
    client = signed_in(dana)
    pages = [
        ("post", reverse("account:password"), {"current_password": "wrong", "new_password": "a"}),
        ("post", reverse("account:profile"), {"first_name": "Dana\x07"}),
        ("post", reverse("account:email"), {"email": "not an address"}),
        ("post", reverse("account:delete"), {"password": ""}),
        ("get", reverse("account:app-withdraw", args=[app.client_id]), None),
    ]
    for method, url, data in pages:
        english, german = both(client, method, url, data)
        assert_german(english, german, data_of(dana, extra=("Dana\x07",)))


# --- The flow's pages by ui_locales ---------------------------------------------------------


def test_login_page_of_an_authorization_request_follows_ui_locales(dana, app):
    browser = Client()
    english = browser.get(authorize_url(app, ui_locales="en"), follow=True, **ENGLISH)
    german = browser.get(authorize_url(app, ui_locales="de"), follow=True, **ENGLISH)
    assert german.redirect_chain[-1][0].startswith("/login?next=")
    assert_german(english, german, data_of(dana))
    # The failed sign-in answers in the request's language too (the form carries `next`).
    nxt = german.context["next_url"]
    failed = browser.post("/login", {"username": "dana", "password": "no", "next": nxt}, **ENGLISH)
    failed_en = browser.post(
        "/login", {"username": "dana", "password": "no", "next": english.context["next_url"]}
    )
    assert_german(failed_en, failed, data_of(dana))


def test_consent_page_follows_ui_locales(make_user, app):
    erin = make_user("erin", email="erin@example.com")
    client = signed_in(erin)
    english = client.get(authorize_url(app, ui_locales="en"), **ENGLISH)
    german = client.get(authorize_url(app, ui_locales="fr-CA de-AT en"), **ENGLISH)
    assert german.status_code == 200 and b'name="decision"' in german.content
    assert_german(english, german, data_of(erin))


def test_second_step_page_follows_ui_locales(make_user, app):
    erin = make_user("erin", email="erin@example.com")
    enrol_totp(erin)
    pages = {}
    for locale in ("en", "de"):
        browser = Client()
        start = browser.get(authorize_url(app, ui_locales=locale), **ENGLISH)
        login = start["Location"]
        nxt = Client().get(login).context["next_url"]
        sent = browser.post("/login", {"username": "erin", "password": PASSWORD, "next": nxt})
        assert sent.status_code == 303 and sent["Location"].startswith("/login/mfa")
        page = browser.get(sent["Location"], **ENGLISH)
        wrong = browser.post(sent["Location"], {"code": "000000", "next": nxt}, **ENGLISH)
        pages[locale] = (page, wrong)
    assert_german(pages["en"][0], pages["de"][0], data_of(erin))
    assert_german(pages["en"][1], pages["de"][1], data_of(erin))


def test_end_session_page_follows_ui_locales(dana, app):
    client = signed_in(dana)
    url = reverse("oauth:end-session") + "?client_id=" + app.client_id
    english = client.get(url + "&ui_locales=en", **ENGLISH)
    german = client.get(url + "&ui_locales=de", **ENGLISH)
    assert_german(english, german, data_of(dana))


@pytest.mark.parametrize("template", ["400.html", "403.html", "404.html", "500.html"])
def test_error_pages_in_german(rf, dana, template):
    from django.template.loader import render_to_string
    from django.utils import translation

    pages = {}
    for language in ("en", "de"):
        with translation.override(language):
            pages[language] = render_to_string(template, request=rf.get("/"))
    assert page_texts(pages["de"])[0] == "de"
    assert not untranslated(english=pages["en"], german=pages["de"], data=data_of(dana))


# --- Pages reached from a mailed link ---------------------------------------------------------

_LINK = re.compile(r"https?://\S+\?token=[A-Za-z0-9_\-]+")


def _mailed_link(to: str, template: str) -> str:
    from mail.models import Outbox

    body = Outbox.objects.filter(to=to, template=template).earliest("created_at").body_text
    return _LINK.search(body)[0].split("://", 1)[1].split("/", 1)[1]


def _two_browsers(first_url: str) -> dict[str, Client]:
    """One browser per language, each having opened the mailed link (its GET keeps only the
    token's digest in that browser's session and redirects)."""
    browsers = {}
    for language, header in (("en", ENGLISH), ("de", GERMAN)):
        browser = Client()
        landing = browser.get("/" + first_url, **header)
        assert landing.status_code in (302, 303), landing.status_code
        browsers[language] = browser
    return browsers


def test_sign_up_and_email_confirmation_pages_in_german(settings, dana):
    settings.AUTHSERVER_REGISTRATION_REQUIRE_VERIFIED = True
    form = {
        "username": "fritz",
        "email": "fritz@example.com",
        "password1": "a quiet meadow 4417",
        "password2": "a quiet meadow 4417",
    }
    english = Client().post("/signup", form, follow=True, **ENGLISH)
    german = Client().post("/signup", form, follow=True, **GERMAN)
    assert_german(english, german, data_of(dana))
    browsers = _two_browsers(_mailed_link("fritz@example.com", "verify_email"))
    fritz = ("fritz", "fritz@example.com")
    english = browsers["en"].get("/email/confirm", **ENGLISH)
    german = browsers["de"].get("/email/confirm", **GERMAN)
    assert_german(english, german, data_of(dana, extra=fritz))
    done_en = browsers["en"].post("/email/confirm", **ENGLISH)
    done_de = browsers["de"].post("/email/confirm", **GERMAN)
    # The first browser confirmed the address; the second is told its link is used up.
    assert done_en.status_code == 200
    bad_en = Client().get("/email/confirm?token=not-a-real-token", follow=True, **ENGLISH)
    bad_de = Client().get("/email/confirm?token=not-a-real-token", follow=True, **GERMAN)
    assert_german(bad_en, bad_de, data_of(dana, extra=fritz))
    assert page_texts(done_de.content.decode())[0] == "de"


def test_password_reset_pages_in_german(dana):
    Client().post("/password/forgot", {"login": "dana"})
    browsers = _two_browsers(_mailed_link("dana@example.com", "password_reset"))
    english = browsers["en"].get("/password/reset", **ENGLISH)
    german = browsers["de"].get("/password/reset", **GERMAN)
    assert_german(english, german, data_of(dana))
    mismatch = {"new_password1": "a quiet meadow 4417", "new_password2": "another one 1234"}
    english = browsers["en"].post("/password/reset", mismatch, **ENGLISH)
    german = browsers["de"].post("/password/reset", mismatch, **GERMAN)
    assert_german(english, german, data_of(dana))
    weak = {"new_password1": "dana", "new_password2": "dana"}  # Django's validators, in German
    english = browsers["en"].post("/password/reset", weak, **ENGLISH)
    german = browsers["de"].post("/password/reset", weak, **GERMAN)
    assert_german(english, german, data_of(dana))


def test_invitation_pages_in_german(dana):
    from accounts.registration import invite_send

    invite_send(email="gina@example.com")
    browsers = _two_browsers(_mailed_link("gina@example.com", "invite"))
    english = browsers["en"].get("/invite", **ENGLISH)
    german = browsers["de"].get("/invite", **GERMAN)
    gina = ("gina@example.com",)
    assert_german(english, german, data_of(dana, extra=gina))
    empty = {"username": "", "password1": "", "password2": ""}
    english = browsers["en"].post("/invite", empty, **ENGLISH)
    german = browsers["de"].post("/invite", empty, **GERMAN)
    assert_german(english, german, data_of(dana, extra=gina))


def test_the_account_deleted_page_in_german(dana):
    english, german = both(Client(), "get", reverse("account:deleted"))
    assert_german(english, german, data_of(dana))


@pytest.mark.parametrize(
    ("template", "context"),
    [
        ("accounts/password_reset_done.html", {}),
        ("accounts/invite_done.html", {"username": "gina"}),
        ("accounts/email_confirmed.html", {"email": "gina@example.com", "confirmed": {}}),
        ("accounts/email_confirmed.html", {"email": "g@example.com", "confirmed": {"changed": 1}}),
        ("accounts/password_reset_invalid.html", {"reason_text": ""}),
    ],
)
def test_end_of_link_pages_in_german(rf, dana, template, context):
    """The last page of a mailed link's flow, which a link opens once (rendered directly)."""
    from django.template.loader import render_to_string
    from django.utils import translation

    pages = {}
    for language in ("en", "de"):
        with translation.override(language):
            pages[language] = render_to_string(template, context, request=rf.get("/"))
    data = data_of(dana, extra=("gina", "gina@example.com", "g@example.com"))
    assert page_texts(pages["de"])[0] == "de"
    assert not untranslated(english=pages["en"], german=pages["de"], data=data)
