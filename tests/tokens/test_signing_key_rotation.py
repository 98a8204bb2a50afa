"""Key lifecycle: first key, publish-before-sign rotation, retirement, removal, revocation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from tests.tokens.conftest import AUDIENCE
from tokens import keys
from tokens.issuance import access_token_issue
from tokens.models import SigningKey
from tokens.rotation import (
    SigningKeyError,
    signing_key_create_first,
    signing_key_revoke,
    signing_key_rotate,
    signing_keys_maintain,
)
from tokens.verification import TokenInvalid, access_token_verify

pytestmark = pytest.mark.django_db

State = SigningKey.State


def jwks_kids(now=None) -> list[str]:
    return [key.kid for key in keys.published_keys(now)]


def states() -> dict[str, str]:
    return dict(SigningKey.objects.values_list("kid", "state"))


def test_first_use_creates_exactly_one_active_key():
    assert not SigningKey.objects.exists()
    first = keys.active_signing_key()
    assert states() == {first.kid: State.ACTIVE}
    assert signing_key_create_first() is None
    keys.keyring_reset()
    assert keys.active_signing_key().kid == first.kid
    assert SigningKey.objects.count() == 1


def test_database_allows_only_one_active_and_one_next_key():
    keys.active_signing_key()
    row = SigningKey.objects.get()
    for state in (State.ACTIVE, State.NEXT):
        clone = SigningKey.objects.get(pk=row.pk)
        clone.pk = None
        clone.kid = f"other-{state}"
        clone.state = state
        if state == State.NEXT:
            clone.save()  # the first next key is fine
            clone.pk = None
            clone.kid = "third"
        with pytest.raises(IntegrityError), transaction.atomic():
            clone.save()


def test_rotation_publishes_first_and_signs_after_the_activation_delay(settings):
    now = timezone.now()
    old = keys.active_signing_key(now).kid
    change = signing_key_rotate(now=now)
    (new,) = change.published
    assert change.activated == []
    # Published at once, not signing yet.
    assert jwks_kids(now) == [old, new]
    assert access_token_issue(subject="s", audience=AUDIENCE, client_id="c", now=now).kid == old
    just_before = now + timedelta(seconds=settings.AUTHSERVER_KEY_ACTIVATION_DELAY - 1)
    assert keys.active_signing_key(just_before).kid == old
    # Due: the first request after activate_at performs the switch (automatic check on request).
    due = now + timedelta(seconds=settings.AUTHSERVER_KEY_ACTIVATION_DELAY)
    assert access_token_issue(subject="s", audience=AUDIENCE, client_id="c", now=due).kid == new
    assert states() == {old: State.RETIRED, new: State.ACTIVE}
    assert jwks_kids(due) == [new, old]


def test_activation_delay_is_at_least_the_jwks_max_age(settings):
    assert settings.AUTHSERVER_KEY_ACTIVATION_DELAY >= (
        settings.AUTHSERVER_JWKS_MAX_AGE + settings.AUTHSERVER_KEY_CACHE_SECONDS
    )


def test_retired_key_stays_published_until_its_last_token_expired_plus_leeway(settings):
    now = timezone.now()
    old_token = access_token_issue(
        subject="s",
        audience=AUDIENCE,
        client_id="c",
        lifetime=settings.AUTHSERVER_SIGNED_TOKEN_MAX_LIFETIME,
        now=now,
    )
    signing_key_rotate(now=now, immediate=True)
    retired = SigningKey.objects.get(kid=old_token.kid)
    grace = (
        settings.AUTHSERVER_SIGNED_TOKEN_MAX_LIFETIME
        + settings.AUTHSERVER_TOKEN_LEEWAY
        + settings.AUTHSERVER_KEY_CACHE_SECONDS
    )
    assert retired.remove_after == now + timedelta(seconds=grace)
    last_moment = old_token.expires_at + timedelta(seconds=settings.AUTHSERVER_TOKEN_LEEWAY - 1)
    assert access_token_verify(old_token.token, audience=AUDIENCE, now=last_moment)
    assert old_token.kid in jwks_kids(retired.remove_after - timedelta(seconds=1))
    # At remove_after the key leaves the JWKS and its private key is erased.
    assert old_token.kid not in jwks_kids(retired.remove_after)
    retired.refresh_from_db()
    assert retired.state == State.REMOVED
    assert bytes(retired.private_key_ciphertext) == b""


def test_rotation_while_a_key_is_waiting_changes_nothing():
    now = timezone.now()
    keys.active_signing_key(now)
    first = signing_key_rotate(now=now)
    second = signing_key_rotate(now=now)
    assert not second
    assert "already published" in second.summary()
    assert SigningKey.objects.filter(state=State.NEXT).get().kid == first.published[0]


def test_activate_now_promotes_the_waiting_key_and_warns_when_published_too_recently():
    now = timezone.now()
    old = keys.active_signing_key(now).kid
    (waiting,) = signing_key_rotate(now=now).published
    change = signing_key_rotate(now=now + timedelta(seconds=10), immediate=True)
    assert change.activated == [waiting]
    assert change.retired == [old]
    assert any("warning" in note for note in change.notes)
    assert keys.active_signing_key(now + timedelta(seconds=10)).kid == waiting


def test_scheduled_rotation_after_rotation_days(settings):
    settings.AUTHSERVER_KEY_ROTATION_DAYS = 30
    now = timezone.now()
    old = keys.active_signing_key(now).kid
    assert not signing_keys_maintain(now=now + timedelta(days=29))
    # The automatic check on request publishes the next key once rotation is due...
    day30 = now + timedelta(days=30)
    assert keys.active_signing_key(day30).kid == old
    (new,) = SigningKey.objects.filter(state=State.NEXT).values_list("kid", flat=True)
    assert new in jwks_kids(day30)
    # ...which signs after the activation delay.
    later = day30 + timedelta(seconds=settings.AUTHSERVER_KEY_ACTIVATION_DELAY)
    assert keys.active_signing_key(later).kid == new


def test_rotation_days_zero_turns_the_schedule_off(settings):
    settings.AUTHSERVER_KEY_ROTATION_DAYS = 0
    now = timezone.now()
    keys.active_signing_key(now)
    assert not signing_keys_maintain(now=now + timedelta(days=3650))


def test_cron_maintenance_performs_what_is_due(settings):
    now = timezone.now()
    old = keys.active_signing_key(now).kid
    (new,) = signing_key_rotate(now=now).published
    due = now + timedelta(seconds=settings.AUTHSERVER_KEY_ACTIVATION_DELAY)
    change = signing_keys_maintain(now=due)
    assert change.activated == [new] and change.retired == [old]
    removal = SigningKey.objects.get(kid=old).remove_after
    assert signing_keys_maintain(now=removal).removed == [old]
    assert not signing_keys_maintain(now=removal)


def test_revoking_the_active_key_replaces_it_at_once():
    now = timezone.now()
    compromised = access_token_issue(subject="s", audience=AUDIENCE, client_id="c", now=now)
    change = signing_key_revoke(kid=compromised.kid, now=now)
    assert change.revoked == [compromised.kid]
    (replacement,) = change.activated
    assert compromised.kid not in jwks_kids(now)
    with pytest.raises(TokenInvalid):
        access_token_verify(compromised.token, audience=AUDIENCE, now=now)
    fresh = access_token_issue(subject="s", audience=AUDIENCE, client_id="c", now=now)
    assert fresh.kid == replacement
    row = SigningKey.objects.get(kid=compromised.kid)
    assert row.state == State.REVOKED and bytes(row.private_key_ciphertext) == b""


def test_revoking_the_active_key_promotes_an_already_published_next_key():
    now = timezone.now()
    old = keys.active_signing_key(now).kid
    (waiting,) = signing_key_rotate(now=now).published
    change = signing_key_revoke(kid=old, now=now)
    assert change.activated == [waiting]
    assert change.published == []
    assert keys.active_signing_key(now).kid == waiting


def test_revoking_a_next_or_retired_key_leaves_the_active_key_alone():
    now = timezone.now()
    active = keys.active_signing_key(now).kid
    (waiting,) = signing_key_rotate(now=now).published
    signing_key_revoke(kid=waiting, now=now)
    assert jwks_kids(now) == [active]
    signing_key_rotate(now=now, immediate=True)
    signing_key_revoke(kid=active, now=now)
    assert active not in jwks_kids(now)
    assert len(jwks_kids(now)) == 1


def test_revoking_unknown_or_already_revoked_keys_is_a_clear_error():
    now = timezone.now()
    kid = keys.active_signing_key(now).kid
    with pytest.raises(SigningKeyError, match="no signing key"):
        signing_key_revoke(kid="does-not-exist")
    signing_key_revoke(kid=kid, now=now)
    with pytest.raises(SigningKeyError, match="already revoked"):
        signing_key_revoke(kid=kid, now=now)


def test_key_changes_are_audited(db):
    pytest.importorskip("audit.services")
    from audit.models import AuthEvent

    now = timezone.now()
    kid = keys.active_signing_key(now).kid
    signing_key_rotate(now=now, immediate=True)
    signing_key_revoke(kid=kid, now=now)
    events = list(AuthEvent.objects.order_by("pk").values_list("event_type", flat=True))
    assert events == ["key.rotated", "key.rotated", "key.revoked"]
    revoked = AuthEvent.objects.get(event_type="key.revoked")
    assert revoked.details["revoked"] == [kid]


def test_rotating_a_store_without_an_active_key_makes_the_new_key_sign_at_once():
    change = signing_key_rotate()
    assert change.published == change.activated
    assert keys.active_signing_key().kid == change.activated[0]
