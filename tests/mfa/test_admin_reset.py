"""The admin lists a user's second factors (never a secret) and resets them (audited, mailed)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from audit.events import EventType
from audit.models import AuthEvent
from mail.models import Outbox
from mfa import selectors, services
from mfa.models import Factor, RecoveryCode


@pytest.fixture
def admin_client(client, make_user):
    client.force_login(make_user(username="root", is_staff=True, is_superuser=True))
    return client


def _enrolled(user) -> str:
    factor, secret = services.totp_enrolment_begin(user=user)
    step = services.totp_time_step(datetime.now(tz=UTC))
    assert services.totp_enrolment_confirm(factor=factor, code=services.totp_code_at(secret, step))
    return secret


@pytest.mark.django_db
def test_change_page_lists_factors_without_secrets(admin_client, make_user):
    alice = make_user(username="alice")
    secret = _enrolled(alice)
    page = admin_client.get(reverse("admin:accounts_user_change", args=[alice.pk]))
    text = page.content.decode()
    assert page.status_code == 200
    assert "authenticator app (TOTP)" in text and "10 unused recovery code(s)" in text
    assert secret not in text and " ".join(secret[i : i + 4] for i in (0, 4)) not in text


@pytest.mark.django_db
def test_reset_action_removes_factors_audits_and_mails(admin_client, make_user):
    alice = make_user(username="alice")
    _enrolled(alice)
    response = admin_client.post(
        reverse("admin:accounts_user_changelist"),
        {"action": "reset_second_factors", "_selected_action": [alice.pk]},
    )
    assert response.status_code == 302
    assert not Factor.objects.filter(user=alice).exists()
    assert not RecoveryCode.objects.filter(user=alice).exists()
    assert selectors.user_methods(user=alice) == []
    event = AuthEvent.objects.get(event_type=EventType.MFA_RESET)
    assert event.details["actor_username"] == "root" and event.details["count"] == 1
    assert Outbox.objects.filter(to=alice.email, template="mfa_reset").count() == 1
