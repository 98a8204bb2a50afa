"""The sign-up settings refuse a bad value with one line naming the variable."""

from __future__ import annotations

import pytest

from tests.authserver.test_settings import assert_refused
from tests.live import base_env, manage


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AUTHSERVER_REGISTRATION", "sometimes"),
        ("AUTHSERVER_REGISTRATION_REQUIRE_VERIFIED", "perhaps"),
        ("AUTHSERVER_REGISTRATION_THROTTLE_PER_IP", "0"),
        ("AUTHSERVER_EMAIL_VERIFY_LINK_SECONDS", "5"),
        ("AUTHSERVER_INVITE_LINK_SECONDS", "soon"),
    ],
)
def test_bad_sign_up_settings_are_refused(variable, value):
    assert_refused(manage("check", env=base_env(**{variable: value})), variable)
