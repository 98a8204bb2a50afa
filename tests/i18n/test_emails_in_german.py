"""Issue 18.3: emails go out in the recipient's language.

Every message of templates/email/, each variant, is rendered in English and in German and
compared (tests/i18n/checker.py for the HTML part; the text part and the subject line by line).
The language is the recipient's saved one, else that of the request that sent the message
(mail.services.mail_enqueue); the flows below check both through the pages that send mail.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.test import Client
from django.utils import translation

from accounts.models import User
from branding.selectors import brand_get
from mail.models import Outbox
from mail.services import mail_enqueue, mail_render
from tests.i18n.checker import _LETTER, page_texts, untranslated

pytestmark = pytest.mark.django_db

WHEN = datetime(2026, 11, 5, 14, 30, tzinfo=UTC)


def _variants(user: User) -> list[tuple[str, dict]]:
    links = {
        "url": "https://id.example.com/x?token=abc",
        "link": "https://id.example.com/password/reset?token=abc",
        "login_url": "https://id.example.com/login",
        "reset_url": "https://id.example.com/password/forgot",
        "signup_url": "https://id.example.com/signup",
        "account_url": "https://id.example.com/account/mfa",
    }
    base = {"user": user, "username": user.username, **links}
    return [
        ("password_reset", {**base, "ttl_minutes": 30}),
        ("password_changed", {**base, "changed_at": WHEN, "how": "reset"}),
        ("password_changed", {**base, "changed_at": WHEN, "how": "account_page"}),
        ("email_changed", {**base, "new_email": "new@example.com"}),
        ("email_in_use", base),
        ("invite", {**base, "inviter": "Root Admin", "days": 7}),
        ("invite", {**base, "inviter": "", "days": 1}),
        ("mfa_recovery_code_used", {**base, "used_at": WHEN, "left": 1}),
        ("mfa_recovery_code_used", {**base, "used_at": WHEN, "left": 4}),
        ("mfa_reset", {**base, "reset_at": WHEN}),
        ("signup_existing", base),
        ("signup_username_taken", base),
        ("verify_email", {**base, "signup": True, "change": False, "hours": 24}),
        ("verify_email", {**base, "signup": False, "change": True, "hours": 1}),
        ("verify_email", {**base, "signup": False, "change": False, "hours": 48}),
    ]


def _lines(text: str) -> set[str]:
    return {" ".join(line.split()) for line in text.splitlines() if _LETTER.search(line)}


def _data(user: User) -> set[str]:
    return {brand_get().name, user.username, "Root Admin", "UTC", "--"}


def _english_left(english: str, german: str, data: set[str]) -> set[str]:
    left = _lines(english) & _lines(german)
    return {line for line in left if not any(line == value for value in data)} - {
        line for line in left if line.startswith("https://")
    }


def test_every_email_in_german_for_a_user_who_saved_german(make_user):
    dana = make_user("dana", email="dana@example.com", language="de")
    for template, context in _variants(dana):
        with translation.override("en"):
            subject_en, text_en, html_en = mail_render(template=template, context=context)
        # mail_enqueue picks the language itself: the user's saved one (the request is English).
        with translation.override("en"):
            row = mail_enqueue(to="dana@example.com", template=template, context=context)
        assert row.subject != subject_en, (template, row.subject)
        left = _english_left(text_en, row.body_text, _data(dana))
        assert not left, f"{template}: English in the German text part: {left}"
        if html_en:
            assert page_texts(row.body_html)[0] == "de"
            left = untranslated(english=html_en, german=row.body_html, data=_data(dana))
            assert not left, f"{template}: English in the German HTML part: {left}"


def test_without_a_saved_language_the_request_language_is_used(make_user):
    erin = make_user("erin", email="erin@example.com")
    context = {"user": erin, "link": "https://id.example.com/r", "ttl_minutes": 30}
    with translation.override("de"):
        german = mail_enqueue(to="erin@example.com", template="password_reset", context=context)
    with translation.override("en"):
        english = mail_enqueue(to="erin@example.com", template="password_reset", context=context)
    assert german.subject.startswith("Passwort bei")
    assert english.subject.startswith("Reset your")


def test_an_explicit_language_wins(make_user):
    dana = make_user("dana", email="dana@example.com", language="de")
    row = mail_enqueue(
        to="dana@example.com",
        template="password_reset",
        context={"user": dana, "link": "https://id.example.com/r", "ttl_minutes": 30},
        language="en",
    )
    assert row.subject.startswith("Reset your")


def test_reset_mail_follows_the_saved_language_not_the_browser(make_user):
    make_user("dana", email="dana@example.com", language="de")
    make_user("erin", email="erin@example.com")
    browser = Client()
    browser.post("/password/forgot", {"login": "dana"}, HTTP_ACCEPT_LANGUAGE="en")
    browser.post("/password/forgot", {"login": "erin"}, HTTP_ACCEPT_LANGUAGE="de")
    browser.post("/password/forgot", {"login": "erin"}, HTTP_ACCEPT_LANGUAGE="en")
    dana_mail = Outbox.objects.get(to="dana@example.com")
    assert "Hallo dana," in dana_mail.body_text and '<html lang="de">' in dana_mail.body_html
    erin_mails = list(Outbox.objects.filter(to="erin@example.com").order_by("created_at"))
    assert [m.body_text.splitlines()[0] for m in erin_mails] == ["Hallo erin,", "Hello erin,"]


def test_the_confirmation_mail_of_a_german_sign_up_is_german(settings):
    settings.AUTHSERVER_REGISTRATION = "open"
    Client().post(
        "/signup",
        {
            "username": "fritz",
            "email": "fritz@example.com",
            "password1": "a quiet meadow 4417",
            "password2": "a quiet meadow 4417",
        },
        HTTP_ACCEPT_LANGUAGE="de-AT,de;q=0.9",
    )
    mail = Outbox.objects.get(to="fritz@example.com")
    assert mail.subject.startswith("Bestätigen Sie Ihr")
    assert "Hallo fritz," in mail.body_text
