"""Authorization codes: concurrent redemption, and housekeeping."""

from __future__ import annotations

import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client as HttpClient
from django.utils import timezone

from oauth.models import AuthorizationCode
from tests.oauth.conftest import REDIRECT_URI, code_for, form_post
from tokens.models import Session


@pytest.mark.django_db(transaction=True)
def test_concurrent_exchanges_of_one_code_issue_nothing_usable(browser, confidential):
    """Two exchanges race: one wins, the other is a replay, and the replay revokes the winner's
    session (RFC 6749 §4.1.2), whichever order the row lock gives them."""
    code, verifier, _ = code_for(browser, confidential)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier.verifier,
    }
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def exchange() -> None:
        try:
            barrier.wait()
            response = form_post(HttpClient(), "/oauth/token", data, confidential.basic())
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=exchange) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 400]
    session = Session.objects.exclude(client_id="").get()
    assert session.revoke_reason == "code_replayed"


@pytest.mark.django_db
def test_purge_keeps_recent_codes(browser, confidential):
    code_for(browser, confidential)
    code_for(browser, confidential)
    old = AuthorizationCode.objects.first()
    AuthorizationCode.objects.filter(pk=old.pk).update(
        expires_at=timezone.now() - timedelta(days=2)
    )
    out = StringIO()
    call_command("purge_authorization_codes", stdout=out)
    assert "deleted 1 authorization code(s)" in out.getvalue()
    assert AuthorizationCode.objects.count() == 1
