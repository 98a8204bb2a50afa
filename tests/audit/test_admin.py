"""The audit trail in the admin: searchable and filterable, never editable."""

from __future__ import annotations

import uuid

import pytest
from django.urls import reverse

from audit.events import EventType
from audit.models import AuthEvent
from audit.services import audit_event_record


def changelist() -> str:
    return reverse("admin:audit_authevent_changelist")


@pytest.fixture
def admin_client(client, make_user):
    client.force_login(make_user(username="root", is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def events(make_user):
    alice = make_user(username="alice")
    session = uuid.uuid4()
    audit_event_record(
        event=EventType.LOGIN_FAILED,
        user=alice,
        ip="198.51.100.7",
        details={"reason": "locked"},
    )
    audit_event_record(
        event=EventType.LOGIN_SUCCEEDED, user=alice, ip="203.0.113.1", client_id="web"
    )
    audit_event_record(event=EventType.LOGOUT, session_id=session, ip="203.0.113.1")
    return {"alice": alice, "session": session}


def shown(response) -> set[int]:
    return {obj.pk for obj in response.context["cl"].result_list}


def ids(**filters) -> set[int]:
    return set(AuthEvent.objects.filter(**filters).values_list("pk", flat=True))


def test_changelist_and_detail_render(admin_client, events):
    response = admin_client.get(changelist())
    assert response.status_code == 200
    assert len(shown(response)) == 3
    event = AuthEvent.objects.first()
    detail = admin_client.get(reverse("admin:audit_authevent_change", args=[event.pk]))
    assert detail.status_code == 200


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"event_type": "login.failed"}, {"event_type": "login.failed"}),
        ({"reason": "locked"}, {"details__reason": "locked"}),
        ({"q": "203.0.113.1"}, {"ip": "203.0.113.1"}),
        ({"q": "alice"}, {"user__username": "alice"}),
        ({"q": "web"}, {"client_id": "web"}),
    ],
)
def test_filters_and_search(admin_client, events, query, expected):
    response = admin_client.get(changelist(), query)
    assert response.status_code == 200
    assert shown(response) == ids(**expected)


def test_search_by_sub_and_session_id(admin_client, events):
    alice = events["alice"]
    assert shown(admin_client.get(changelist(), {"q": alice.sub})) == ids(user=alice)
    by_session = admin_client.get(changelist(), {"q": str(events["session"])})
    assert shown(by_session) == ids(session_id=events["session"])


def test_events_cannot_be_added_changed_or_deleted(admin_client, events):
    event = AuthEvent.objects.get(event_type="login.failed")
    assert admin_client.get(reverse("admin:audit_authevent_add")).status_code == 403
    change_url = reverse("admin:audit_authevent_change", args=[event.pk])
    response = admin_client.post(change_url, {"event_type": "logout", "details": "{}"})
    assert response.status_code == 403
    event.refresh_from_db()
    assert (event.event_type, event.details) == ("login.failed", {"reason": "locked"})
    delete_url = reverse("admin:audit_authevent_delete", args=[event.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    response = admin_client.get(changelist())
    assert b"delete_selected" not in response.content
    assert AuthEvent.objects.count() == 3
