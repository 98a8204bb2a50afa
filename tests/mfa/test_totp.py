"""TOTP (RFC 6238) and recovery codes at the service level: the test vectors, a code made by an
independent implementation (oathtool), single use, and the throttle/lockout they count toward."""

from __future__ import annotations

import base64
import shutil
import subprocess
from datetime import UTC, datetime

import pytest
from django.core import mail  # noqa: F401 - the outbox is read through mail.models
from django.db import connection

from accounts.services import LoginThrottled, user_authenticate
from audit.events import EventType
from audit.models import AuthEvent
from mail.models import Outbox
from mfa import selectors, services
from mfa.models import Factor, RecoveryCode

RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()
# RFC 6238 Appendix B, SHA-1: (Unix time, 8-digit TOTP). A 6-digit code is the last six digits.
RFC_VECTORS = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]


@pytest.mark.parametrize(("unix_time", "expected"), RFC_VECTORS)
def test_rfc6238_appendix_b_vectors(unix_time, expected):
    when = datetime.fromtimestamp(unix_time, tz=UTC)
    assert services.totp_code_at(RFC_SECRET, services.totp_time_step(when)) == expected[-6:]


@pytest.mark.skipif(shutil.which("oathtool") is None, reason="apt-get install oathtool")
def test_code_matches_an_independent_implementation():
    secret = services.totp_secret_new()
    for unix_time in (1_700_000_000, 1_800_000_015, 2_000_000_029):
        made = subprocess.run(
            ["oathtool", "--totp", "-b", "-d", "6", "-s", "30", f"--now=@{unix_time}", secret],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        when = datetime.fromtimestamp(unix_time, tz=UTC)
        assert services.totp_code_at(secret, services.totp_time_step(when)) == made


def _enrolled(user):
    factor, secret = services.totp_enrolment_begin(user=user)
    now = datetime.now(tz=UTC)
    code = services.totp_code_at(secret, services.totp_time_step(now) - 1)
    codes = services.totp_enrolment_confirm(factor=factor, code=code)
    assert codes is not None and len(codes) == 10
    return factor, secret, codes


def _verify(user, code):
    return services.second_factor_verify(user=user, response=code, ip="203.0.113.9")


@pytest.mark.django_db
def test_secret_is_sealed_at_rest(make_user):
    user = make_user()
    factor, secret, _ = _enrolled(user)
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret_sealed FROM mfa_factor WHERE id = %s", [factor.pk])
        stored = bytes(cursor.fetchone()[0])
    assert secret.encode() not in stored and base64.b32decode(secret) not in stored
    assert services.factor_secret(Factor.objects.get(pk=factor.pk)) == secret
    # Bound to its row: the ciphertext moved onto another factor does not open.
    other, _ = services.totp_enrolment_begin(user=make_user(username="other"))
    other.secret_sealed = factor.secret_sealed
    with pytest.raises(services.SecretUnavailable):
        services.factor_secret(other)


@pytest.mark.django_db
def test_unconfirmed_factor_does_not_count(make_user):
    user = make_user()
    factor, _secret = services.totp_enrolment_begin(user=user)
    assert selectors.user_methods(user=user) == []
    assert services.totp_enrolment_confirm(factor=factor, code="000000x") is None
    assert selectors.user_methods(user=user) == []


@pytest.mark.django_db
def test_totp_code_is_accepted_once(make_user):
    user = make_user()
    _, secret, _ = _enrolled(user)
    code = services.totp_code_at(secret, services.totp_time_step(datetime.now(tz=UTC)))
    assert _verify(user, code).amr == "otp"
    with pytest.raises(services.SecondFactorFailed):
        _verify(user, code)  # replayed within its window
    failed = AuthEvent.objects.filter(event_type=EventType.MFA_FAILED, user=user).last()
    assert failed.details["reason"] == "bad_code" and code not in str(failed.details)


@pytest.mark.django_db
def test_recovery_code_single_use_audited_and_mailed(make_user):
    user = make_user()
    _, _, codes = _enrolled(user)
    assert RecoveryCode.objects.filter(user=user).count() == 10
    assert not RecoveryCode.objects.filter(digest__contains=codes[0].replace("-", "")).exists()
    assert _verify(user, codes[0].upper()).method == selectors.RECOVERY_CODE
    assert AuthEvent.objects.filter(event_type=EventType.MFA_RECOVERY_CODE_USED, user=user).exists()
    sent = Outbox.objects.filter(to=user.email, template="mfa_recovery_code_used")
    assert sent.count() == 1 and codes[0] not in sent.get().body_text
    with pytest.raises(services.SecondFactorFailed):
        _verify(user, codes[0])
    # Regenerating voids the old set.
    fresh = services.recovery_codes_generate(user=user)
    with pytest.raises(services.SecondFactorFailed):
        _verify(user, codes[1])
    assert _verify(user, fresh[0]).method == selectors.RECOVERY_CODE


@pytest.mark.django_db
def test_wrong_codes_lock_the_account_like_passwords(make_user, settings):
    from authserver.conf import get_config

    user = make_user()
    _, secret, _ = _enrolled(user)
    threshold = get_config().lockout_threshold
    for _ in range(threshold):
        with pytest.raises(services.SecondFactorFailed):
            _verify(user, "000000")
    assert AuthEvent.objects.filter(event_type=EventType.ACCOUNT_LOCKED, user=user).exists()
    # Locked: the right code is refused too, and so is the right password.
    code = services.totp_code_at(secret, services.totp_time_step(datetime.now(tz=UTC)))
    with pytest.raises(services.SecondFactorFailed) as refused:
        _verify(user, code)
    assert refused.value.reason == "locked"


@pytest.mark.django_db
def test_password_between_code_guesses_does_not_reset_the_count(make_user):
    from authserver.conf import get_config
    from tests.conftest import PASSWORD

    user = make_user()
    _enrolled(user)
    for _ in range(get_config().lockout_threshold):
        user_authenticate(login=user.username, password=PASSWORD, ip="203.0.113.9")
        with pytest.raises((services.SecondFactorFailed, LoginThrottled)):
            _verify(user, "999999")
    assert AuthEvent.objects.filter(event_type=EventType.ACCOUNT_LOCKED, user=user).exists()
