"""Every change the owner makes to how the account signs in is mailed to the account's address
(issue 17): someone holding a stolen session who turns two-step verification off, makes new
recovery codes or adds a passkey of their own is seen by the owner. Driven through the account
pages in-process; the mail is the outbox row written in the change's own transaction."""

from __future__ import annotations

import re
import time

import pytest
from django.urls import reverse

from accounts.login_flow import AUTH_TIME_SESSION_KEY
from mail.models import Outbox
from mfa import services
from mfa.models import Factor
from passkeys.models import Passkey
from passkeys.services import passkey_remove


def _sign_in_recently(client, user) -> None:
    client.force_login(user)
    session = client.session
    session[AUTH_TIME_SESSION_KEY] = int(time.time())
    session.save()


def _notices(user) -> list[Outbox]:
    return list(Outbox.objects.filter(to=user.email, template="mfa_changed").order_by("id"))


RECOVERY_CODE = re.compile(r"\b[a-z2-9]{5}-[a-z2-9]{5}\b")


def _enrol_totp(client) -> tuple[str, list[str]]:
    """Set up an authenticator app through the pages: its secret and the recovery codes shown."""
    assert client.get(reverse("account:mfa-totp")).status_code == 200
    factor = Factor.objects.get(method=Factor.Method.TOTP, confirmed_at__isnull=True)
    secret = services.factor_secret(factor)
    code = services.totp_code_at(secret, services.totp_time_step(factor.created_at))
    response = client.post(reverse("account:mfa-totp"), {"code": code})
    codes = RECOVERY_CODE.findall(response.content.decode())
    assert response.status_code == 200 and len(codes) == services.RECOVERY_CODE_COUNT
    return secret, codes


@pytest.mark.django_db
def test_turning_on_an_app_sends_one_notice_not_two(client, make_user):
    alice = make_user(username="alice", email="alice@example.com")
    _sign_in_recently(client, alice)
    secret, codes = _enrol_totp(client)
    (notice,) = _notices(alice)  # the first recovery codes come with the app: one notice
    assert "authenticator app was set up" in notice.body_text
    assert "New recovery codes" not in notice.body_text
    assert "/account/mfa" in notice.body_text and "/account/mfa" in notice.body_html
    assert notice.subject == "How you sign in to your authserver account changed"
    for part in (notice.subject, notice.body_text, notice.body_html):
        assert secret not in part and not any(code in part for code in codes)


@pytest.mark.django_db
def test_new_recovery_codes_and_turning_off_are_each_told(client, make_user):
    alice = make_user(username="alice", email="alice@example.com")
    _sign_in_recently(client, alice)
    _enrol_totp(client)
    response = client.post(reverse("account:mfa-recovery"))
    new_codes = RECOVERY_CODE.findall(response.content.decode())
    assert response.status_code == 200 and len(new_codes) == services.RECOVERY_CODE_COUNT
    assert client.post(reverse("account:mfa-remove")).status_code == 303
    assert not Factor.objects.filter(user=alice).exists()
    texts = [n.body_text for n in _notices(alice)]
    assert len(texts) == 3
    assert "earlier codes no longer work" in texts[1]
    assert "Two-step verification was turned off" in texts[2]
    assert not any(code in text for code in new_codes for text in texts)
    # Turning off what is already off changes nothing and tells nobody.
    assert client.post(reverse("account:mfa-remove")).status_code == 303
    assert len(_notices(alice)) == 3


@pytest.mark.django_db
def test_a_removed_passkey_is_told_by_name_escaped_in_html(client, make_user):
    alice = make_user(username="alice", email="alice@example.com")
    passkey = Passkey.objects.create(
        user=alice, name="<b>Blue</b> key", credential_id="Y3JlZA", public_key=b"\xa5 not cose"
    )
    _sign_in_recently(client, alice)
    response = client.post(reverse("account:passkey-remove", args=[passkey.pk]))
    assert response.status_code == 303
    (notice,) = _notices(alice)
    assert "“<b>Blue</b> key” was removed" in notice.body_text
    assert "&lt;b&gt;Blue&lt;/b&gt; key" in notice.body_html and "<b>Blue" not in notice.body_html


@pytest.mark.django_db
def test_no_address_no_notice_and_the_change_still_happens(make_user):
    bob = make_user(username="bob")
    bob.email = ""
    bob.save(update_fields=["email"])
    passkey = Passkey.objects.create(
        user=bob, name="Laptop", credential_id="Ym9i", public_key=b"\xa5 not cose"
    )
    passkey_remove(passkey=passkey)
    assert not Passkey.objects.filter(user=bob).exists()
    assert not Outbox.objects.filter(template="mfa_changed").exists()
