"""The session list renders each session directly (sessions/apis.py `session_output`); it must
say exactly what the documented serializer (SessionOutput, the OpenAPI schema's source) says."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from sessions.apis import SessionOutput, session_output
from sessions.services import browser_session_start, session_app_names, session_start

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("time_zone", ["UTC", "Europe/Berlin", "America/St_Johns"])
def test_direct_output_equals_the_serializer(make_user, settings, time_zone):
    settings.TIME_ZONE = time_zone
    timezone.activate(time_zone)
    try:
        user = make_user()
        now = timezone.now().replace(microsecond=123456)
        browser = browser_session_start(user=user, ip="2001:db8::1", user_agent="UA/1", now=now)
        grant = session_start(
            user=user,
            client_id="some-app",
            audience=["api"],
            parent=browser,
            ip="192.0.2.1",
            now=now + timedelta(seconds=1),
        )
        plain = session_start(
            user=user, client_id="authserver", audience=["api"], now=now.replace(microsecond=0)
        )
        sessions = [browser, grant.session, plain.session]
        names = session_app_names(sessions)
        current = str(grant.session.id)
        for session in sessions:
            row = {
                "id": session.id,
                "kind": session.kind,
                "client_id": session.client_id,
                "app_name": names.get(session.client_id, session.client_id),
                "parent_id": session.parent_id,
                "user_agent": session.user_agent,
                "ip": session.ip,
                "created_at": session.created_at,
                "last_used_at": session.last_used_at,
                "expires_at": min(session.expires_at, session.idle_expires_at),
                "current": str(session.id) == current,
            }
            assert session_output(session, names, current) == dict(SessionOutput(row).data)
    finally:
        timezone.deactivate()
