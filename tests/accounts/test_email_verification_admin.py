"""The admin shows and sets email_verified (audited), mails a confirmation link to an address
it sets, resends verification, and invites people."""

from __future__ import annotations

import io

import pytest

from accounts.models import AccountLink, User
from audit.models import AuthEvent
from mail.models import Outbox

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_user(make_user):
    return make_user(username="admin", is_staff=True, is_superuser=True)


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def change(admin_client, user: User, **fields):
    data = {
        "username": user.username,
        "email": user.email,
        "is_active": "on" if user.is_active else "",
        **fields,
    }
    data = {k: v for k, v in data.items() if v != ""}
    return admin_client.post(f"/admin/accounts/user/{user.pk}/change/", data)


def test_changelist_shows_and_filters_the_state(admin_client, make_user):
    make_user(username="sure", email_verified=True)
    make_user(username="unsure")
    page = admin_client.get("/admin/accounts/user/", {"email_verified__exact": "1"})
    html = page.content.decode()
    assert "sure@example.com" in html and "unsure@example.com" not in html
    assert "Email verified" in html  # the column


def test_admin_sets_the_state_and_it_is_audited(admin_client, admin_user, make_user):
    bob = make_user(username="bob")
    response = change(admin_client, bob, email_verified="on")
    assert response.status_code == 302, response.content.decode()[:1000]
    bob.refresh_from_db()
    assert bob.email_verified is True
    event = AuthEvent.objects.get(event_type="email.verified_set", user_public_id=bob.public_id)
    assert event.details["email_verified"] is True
    assert event.details["actor_username"] == "admin"
    assert not Outbox.objects.exists()  # vouched for: no link

    change(admin_client, bob)  # unticked
    bob.refresh_from_db()
    assert bob.email_verified is False
    assert AuthEvent.objects.filter(event_type="email.verified_set").count() == 2


def test_an_address_set_by_an_admin_is_unverified_and_gets_a_link(admin_client, make_user):
    bob = make_user(username="bob")
    response = change(admin_client, bob, email="Bob.New@Example.org", email_verified="on")
    assert response.status_code == 302
    bob.refresh_from_db()
    # The admin ticked the box in the same form as the new address: that vouches for it.
    assert (bob.email, bob.email_verified) == ("bob.new@example.org", True)
    assert not Outbox.objects.exists()

    response = change(admin_client, bob, email="bob.third@example.org", email_verified="on")
    bob.refresh_from_db()
    # The box stayed ticked (unchanged): a new address is unverified until confirmed.
    assert (bob.email, bob.email_verified) == ("bob.third@example.org", False)
    (mail,) = Outbox.objects.all()
    assert (mail.template, mail.to) == ("verify_email", "bob.third@example.org")
    assert AccountLink.objects.get(user=bob).email == "bob.third@example.org"


def test_resend_verification_action(admin_client, make_user):
    unsure = make_user(username="unsure")
    sure = make_user(username="sure", email_verified=True)
    response = admin_client.post(
        "/admin/accounts/user/",
        {"action": "resend_verification", "_selected_action": [unsure.pk, sure.pk]},
    )
    assert response.status_code == 302
    (mail,) = Outbox.objects.all()
    assert (mail.template, mail.to) == ("verify_email", "unsure@example.com")
    event = AuthEvent.objects.get(event_type="email.verification_sent")
    assert event.user_public_id == unsure.public_id
    assert event.details["actor_username"] == "admin"
    # A second send ends the first link: only the newest works.
    admin_client.post(
        "/admin/accounts/user/",
        {"action": "resend_verification", "_selected_action": [unsure.pk]},
    )
    live = AccountLink.objects.filter(user=unsure, used_at=None, ended_at=None)
    assert live.count() == 1


def test_staff_cannot_resend_to_an_administrator(client, make_user):
    from django.contrib.auth.models import Permission

    staff = make_user(username="staff", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(codename__in=["view_user", "change_user"]))
    other_admin = make_user(username="root", is_staff=True, is_superuser=True)
    client.force_login(staff)
    client.post(
        "/admin/accounts/user/",
        {"action": "resend_verification", "_selected_action": [other_admin.pk]},
    )
    assert not Outbox.objects.exists()


def test_invite_page(admin_client, make_user):
    make_user(username="taken", email="taken@example.com")
    page = admin_client.get("/admin/accounts/user/invite/")
    assert page.status_code == 200
    assert (
        'href="/admin/accounts/user/invite/"'
        in admin_client.get("/admin/accounts/user/").content.decode()
    )
    refused = admin_client.post("/admin/accounts/user/invite/", {"email": "TAKEN@example.com"})
    assert refused.status_code == 200 and "already exists" in refused.content.decode()
    sent = admin_client.post("/admin/accounts/user/invite/", {"email": "new@example.org"})
    assert sent.status_code == 302
    (mail,) = Outbox.objects.all()
    assert (mail.template, mail.to) == ("invite", "new@example.org")
    assert "/invite?token=" in mail.body_text
    assert "invited" in mail.subject  # English (LANGUAGE_CODE) unless another is chosen
    link = AccountLink.objects.get(purpose="invite")
    assert link.user is None and link.email == "new@example.org"
    assert AuthEvent.objects.filter(event_type="invite.sent").count() == 1
    # The invitee has no saved language yet: the admin picks the invitation's.
    assert 'name="language"' in page.content.decode()
    assert "The invitee has no saved language yet" in page.content.decode()  # its help shown
    german = admin_client.post(
        "/admin/accounts/user/invite/", {"email": "neu@example.org", "language": "de"}
    )
    assert german.status_code == 302
    mail = Outbox.objects.get(to="neu@example.org")
    assert "Einladung" in mail.subject and "Der Link funktioniert einmal" in mail.body_text
    unknown = admin_client.post(
        "/admin/accounts/user/invite/", {"email": "x@example.org", "language": "xx"}
    )
    assert unknown.status_code == 200 and not Outbox.objects.filter(to="x@example.org").exists()


def test_resending_to_a_pending_sign_up_still_activates_it(admin_client, make_user):
    from accounts.links import account_link_digest
    from accounts.registration import user_signup
    from accounts.verification import email_confirm

    user_signup(username="late", email="late@example.org", password="a fresh and long phrase 7")
    late = User.objects.get(username="late")
    gone = make_user(username="gone", is_active=False)
    admin_client.post(
        "/admin/accounts/user/",
        {"action": "resend_verification", "_selected_action": [late.pk, gone.pk]},
    )
    newest = Outbox.objects.filter(to="late@example.org").order_by("-id").first()
    assert not Outbox.objects.filter(to=gone.email).exists()  # deactivated: no link
    token = newest.body_text.split("token=", 1)[1].split()[0]
    assert email_confirm(digest=account_link_digest(token)).activated
    late.refresh_from_db()
    assert late.is_active and late.email_verified


def test_invite_user_command_takes_the_invitation_language():
    from django.core.management import CommandError, call_command

    call_command("invite_user", "ada@example.org", "--language", "de", stdout=io.StringIO())
    assert "Einladung" in Outbox.objects.get(to="ada@example.org").subject
    call_command("invite_user", "bob@example.org", stdout=io.StringIO())
    assert "invited" in Outbox.objects.get(to="bob@example.org").subject
    with pytest.raises(CommandError, match="language must be one of en, de"):
        call_command("invite_user", "cy@example.org", "--language", "xx", stdout=io.StringIO())
    assert not Outbox.objects.filter(to="cy@example.org").exists()
