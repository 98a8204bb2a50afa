"""audit_event_record: what is stored, what is logged, and that secrets are neither."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from django.test import RequestFactory

from audit.events import EventType
from audit.models import AuthEvent
from audit.services import REDACTED, audit_event_record

SECRET = "s3cret-VALUE-never-stored"


@pytest.fixture
def audit_log(caplog):
    caplog.set_level(logging.INFO, logger="authserver.audit")

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "authserver.audit"]

    return lines


def test_records_every_field(make_user, audit_log):
    user = make_user()
    session = uuid.uuid4()
    event = audit_event_record(
        event=EventType.LOGOUT,
        user=user,
        ip="2001:db8::1",
        user_agent="curl/8.0",
        client_id="mobile-app",
        session_id=str(session),
        details={"sessions": 1},
    )
    event.refresh_from_db()
    assert event.event_type == "logout"
    assert event.user == user
    assert event.user_public_id == user.public_id
    assert event.session_id == session
    assert event.ip == "2001:db8::1"
    assert event.user_agent == "curl/8.0"
    assert event.client_id == "mobile-app"
    assert event.details == {"sessions": 1}
    assert event.occurred_at is not None


def test_request_supplies_ip_and_user_agent_under_the_proxy_policy(db, settings):
    settings.AUTHSERVER_TRUSTED_PROXIES = ["10.0.0.1"]
    request = RequestFactory().post(
        "/",
        REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR="1.1.1.1, 203.0.113.5",
        HTTP_USER_AGENT="Browser/1.0",
    )
    event = audit_event_record(event=EventType.LOGIN_FAILED, request=request)
    assert event.ip == "203.0.113.5"
    assert event.user_agent == "Browser/1.0"


def test_long_or_odd_values_are_bounded(db):
    event = audit_event_record(
        event=EventType.LOGIN_FAILED,
        ip="not an ip",
        user_agent="A" * 5000 + "\n",
        client_id="c" * 1000,
        details={"note": "x" * 5000},
    )
    event.refresh_from_db()
    assert event.ip is None
    assert len(event.user_agent) == 512
    assert len(event.client_id) == 255
    assert len(event.details["note"]) < 600


def test_unknown_event_type_is_refused(db):
    with pytest.raises(ValueError, match="unknown audit event type"):
        audit_event_record(event="login.maybe")
    assert not AuthEvent.objects.exists()


@pytest.mark.parametrize(
    "details",
    [
        {"password": SECRET},
        {"new_password": SECRET},
        {"refresh_token": SECRET},
        {"access-token": SECRET},
        {"Token": SECRET},
        {"client_secret": SECRET},
        {"secret": SECRET},
        {"code": SECRET},
        {"code_verifier": SECRET},
        {"authorization_code": SECRET},
        {"private_key_pem": SECRET},
        {"Authorization": SECRET},
        {"outer": {"inner": [{"id_token": SECRET}]}},
    ],
)
def test_secret_named_details_are_never_stored_or_logged(db, audit_log, details):
    event = audit_event_record(event=EventType.TOKEN_REFRESHED, details=details)
    event.refresh_from_db()
    stored = json.dumps(event.details)
    assert SECRET not in stored
    assert REDACTED in stored
    assert all(SECRET not in line for line in audit_log())
    assert len(audit_log()) == 1


def test_harmless_details_are_kept(db):
    details = {"reason": "bad_credentials", "tokens_revoked": 3, "kid": "abc", "scope": "ip"}
    assert audit_event_record(event=EventType.LOGOUT_ALL, details=details).details == details


def test_emits_one_json_line_per_event(make_user, audit_log):
    user = make_user()
    session = uuid.uuid4()
    event = audit_event_record(
        event=EventType.SESSION_REVOKED,
        user=user,
        ip="198.51.100.4",
        user_agent="evil\nInjected: line",
        session_id=session,
        details={"by": "user"},
    )
    (line,) = audit_log()
    assert "\n" not in line
    payload = json.loads(line)
    assert payload == {
        "audit_event_id": event.pk,
        "event": "session.revoked",
        "occurred_at": event.occurred_at.isoformat(),
        "sub": user.sub,
        "client_id": None,
        "session_id": str(session),
        "ip": "198.51.100.4",
        "user_agent": "evil?Injected: line",
        "details": {"by": "user"},
    }


def test_deleting_the_user_keeps_the_event_and_the_sub(make_user):
    user = make_user()
    sub = user.public_id
    event = audit_event_record(event=EventType.LOGIN_SUCCEEDED, user=user)
    user.delete()
    event.refresh_from_db()
    assert event.user is None
    assert event.user_public_id == sub


def test_str_names_type_and_time_only(db):
    event = audit_event_record(event=EventType.LOGIN_FAILED, details={"reason": "locked"})
    assert str(event).startswith("login.failed at ")
    assert "locked" not in str(event)


def test_json_log_lines_embed_the_same_event_as_data(make_user, caplog):
    from authserver.logs import JsonFormatter, PlainFormatter

    caplog.set_level(logging.INFO, logger="authserver.audit")
    audit_event_record(event=EventType.SESSION_REVOKED, user=make_user(), details={"n": 1})
    (record,) = [r for r in caplog.records if r.name == "authserver.audit"]
    text = json.loads(record.getMessage())
    line = JsonFormatter().format(record)
    assert "\n" not in line
    payload = json.loads(line)
    assert payload["data"] == text
    assert payload["message"] == "session.revoked" and payload["logger"] == "authserver.audit"
    assert PlainFormatter().format(record).endswith(record.getMessage())
