"""Lockout state is shared: failures in two separate authserver processes add up."""

from __future__ import annotations

import json
import secrets

import pytest
from django.contrib.auth.hashers import make_password

from audit.models import AuthEvent
from tests.conftest import PASSWORD
from tests.live import manage

ATTEMPTS = """
import json
from accounts.services import LoginFailed, user_authenticate
out = []
for password in {passwords!r}:
    try:
        user_authenticate(login={login!r}, password=password, ip={ip!r})
        out.append("ok")
    except LoginFailed:
        out.append("failed")
print(json.dumps(out))
"""


def attempts_in_child(env, *, login: str, ip: str, passwords: list[str]) -> list[str]:
    code = ATTEMPTS.format(passwords=passwords, login=login, ip=ip)
    result = manage("shell", "-c", code, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_failures_in_two_processes_lock_the_account(child_env, make_user):
    # The child runs the production hasher list; give the account a hash it knows.
    user = make_user(username=f"cross{secrets.token_hex(4)}")
    user.password = make_password(PASSWORD, hasher="argon2")
    user.save()
    ip = f"198.51.100.{secrets.randbelow(200) + 1}"
    wrong = "not the password at all"

    first = attempts_in_child(child_env, login=user.username, ip=ip, passwords=[wrong] * 3)
    second = attempts_in_child(
        child_env, login=user.username, ip=ip, passwords=[wrong, wrong, PASSWORD]
    )

    assert first == ["failed"] * 3
    assert second == ["failed"] * 3  # the right password too: the 5th failure locked it
    reasons = [
        e.details["reason"]
        for e in AuthEvent.objects.filter(user=user, event_type="login.failed").order_by("id")
    ]
    assert reasons == ["bad_credentials"] * 5 + ["locked"]
    assert AuthEvent.objects.filter(user=user, event_type="account.locked").count() == 1
