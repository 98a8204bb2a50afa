"""Reuse detection without a row per token (issue 15.1): an earlier token of a session is known
by its generation and MAC, never by a stored row; a forged or tampered value revokes nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct

import pytest
from django.utils import timezone

from audit.models import AuthEvent
from sessions.models import RefreshToken, Session
from sessions.refresh_tokens import (
    MAC_BYTES,
    TOKEN_LENGTH,
    refresh_token_parse,
)
from sessions.services import (
    RefreshError,
    refresh_token_inspect,
    refresh_token_rotate,
    session_find_by_refresh_token,
    session_start,
)

pytestmark = pytest.mark.django_db
CLIENT = "authserver"


def start(user):
    return session_start(user=user, client_id=CLIENT, audience=["api"])


def chain(pair, length: int) -> list[str]:
    """The tokens of `length` rotations of one session, oldest first (the last is current)."""
    values = [pair.refresh_token]
    for _ in range(length):
        values.append(refresh_token_rotate(value=values[-1], client_id=CLIENT).refresh_token)
    return values


def refused(value: str) -> str:
    with pytest.raises(RefreshError) as excinfo:
        refresh_token_rotate(value=value, client_id=CLIENT)
    return excinfo.value.reason


def encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=")


@pytest.mark.parametrize("earlier", range(5))
def test_reuse_of_any_earlier_token_revokes_the_session(make_user, earlier):
    values = chain(start(make_user()), 5)
    session_id = refresh_token_parse(values[0]).session_id
    assert refused(values[earlier]) == "reuse_detected"
    session = Session.objects.get(pk=session_id)
    assert session.revoke_reason == "reuse_detected"
    assert refused(values[-1]) == "session_revoked"  # the newest token dies with it
    event = AuthEvent.objects.get(event_type="token.reuse_detected")
    assert event.details["token_generation"] == earlier
    # Issue 19.1: the just-spent token (its successor unused) is told apart from older ones.
    assert event.details["replayed"] == ("last_spent" if earlier == 4 else "earlier")


def test_a_tampered_token_revokes_nothing(make_user):
    """Flip any bit of an earlier token: the MAC no longer verifies, and an unverifiable token
    is only ever compared with the current digest, so it is simply unknown."""
    values = chain(start(make_user()), 2)
    raw = bytearray(decode(values[0]))
    for position in (0, 5, 21, 24, 40, len(raw) - 1):
        changed = bytearray(raw)
        changed[position] ^= 0x01
        assert refused(encode(bytes(changed))) in {"unknown", "malformed"}
    assert Session.objects.get(pk=refresh_token_parse(values[0]).session_id).revoked_at is None
    assert not AuthEvent.objects.filter(event_type="token.reuse_detected").exists()
    refresh_token_rotate(value=values[-1], client_id=CLIENT)


def test_a_token_naming_someone_elses_session_revokes_nothing(make_user):
    """An attacker holding their own tokens swaps in the victim's session id (visible as `sid`
    in access tokens) to make an 'earlier token' of the victim's session: the MAC refuses it."""
    attacker = chain(start(make_user()), 2)
    victim = start(make_user())
    raw = bytearray(decode(attacker[0]))
    raw[5:21] = victim.session.id.bytes
    assert refused(encode(bytes(raw))) == "unknown"
    # Guessing a whole token: a made-up MAC for generation 0 of the victim's session.
    forged = struct.pack(">B4s16sI", 1, raw[1:5], victim.session.id.bytes, 0)
    forged += secrets.token_bytes(24 + MAC_BYTES)
    assert refused(encode(forged)) == "unknown"
    assert Session.objects.get(pk=victim.session.pk).revoked_at is None
    refresh_token_rotate(value=victim.refresh_token, client_id=CLIENT)


def test_a_token_for_a_generation_never_given_out_is_unknown(make_user, settings):
    """Even with the MAC key (the KEK) in hand, a minted token for the current generation lacks
    the random part whose digest the row holds; a future generation was never issued."""
    pair = start(make_user())
    chain(pair, 1)
    kek = settings.AUTHSERVER_KEY_ENCRYPTION_KEY
    from sessions.refresh_tokens import _mac, _mac_key  # the server's own primitives

    key_id, key = _mac_key(kek)
    for generation in (1, 7):
        body = struct.pack(">B4s16sI", 1, key_id, pair.session.id.bytes, generation)
        body += secrets.token_bytes(24)
        assert refused(encode(body + _mac(key, body))) == "unknown"
    assert Session.objects.get(pk=pair.session.pk).revoked_at is None


def test_each_token_has_one_spelling(make_user):
    value = start(make_user()).refresh_token
    assert len(value) == TOKEN_LENGTH and refresh_token_parse(value) is not None
    for variant in (value + "=", value[:-1] + "+", " " + value[1:], value.replace("-", "+")):
        if variant != value:
            assert refresh_token_parse(variant) is None


class TestKeyEncryptionKeyRotation:
    """The MAC key is derived from the KEK, and rotates with it (README)."""

    def test_tokens_made_before_a_kek_rotation_keep_working_and_reuse_is_still_caught(
        self, make_user, settings
    ):
        old = settings.AUTHSERVER_KEY_ENCRYPTION_KEY
        values = chain(start(make_user()), 2)
        settings.AUTHSERVER_KEY_ENCRYPTION_KEY = secrets.token_bytes(32)
        settings.AUTHSERVER_KEY_ENCRYPTION_KEY_FALLBACKS = [old]
        newer = refresh_token_rotate(value=values[-1], client_id=CLIENT).refresh_token
        assert refresh_token_parse(newer).authentic
        assert refused(values[0]) == "reuse_detected"

    def test_once_the_old_kek_is_gone_the_current_token_still_works(self, make_user, settings):
        """Its digest proves it; only reuse detection of tokens older than the dropped key is
        lost, and such a token is refused without revoking anything."""
        values = chain(start(make_user()), 2)
        settings.AUTHSERVER_KEY_ENCRYPTION_KEY = secrets.token_bytes(32)
        settings.AUTHSERVER_KEY_ENCRYPTION_KEY_FALLBACKS = []
        assert refused(values[0]) == "unknown"
        session_id = refresh_token_parse(values[0]).session_id
        assert Session.objects.get(pk=session_id).revoked_at is None
        refresh_token_rotate(value=values[-1], client_id=CLIENT)


def test_finding_and_inspecting_a_token(make_user):
    values = chain(start(make_user()), 1)
    session_id = refresh_token_parse(values[0]).session_id
    assert session_find_by_refresh_token(value=values[0]).pk == session_id
    assert session_find_by_refresh_token(value=values[1]).pk == session_id
    current, spent = refresh_token_inspect(value=values[1]), refresh_token_inspect(value=values[0])
    assert current.current and not spent.current
    assert current.expires_at > timezone.now()
    raw = bytearray(decode(values[0]))
    raw[-1] ^= 1
    assert refresh_token_inspect(value=encode(bytes(raw))) is None
    assert session_find_by_refresh_token(value=encode(bytes(raw))) is None


class TestOldFormatTokens:
    """Sessions started before issue 15.1 hold RefreshToken rows; their tokens keep working and
    move the session to the new format at their next rotation."""

    @staticmethod
    def legacy(user):
        """A session as the previous release left it: its token in the old table."""
        pair = session_start(user=user, client_id=CLIENT, audience=["api"])
        value = secrets.token_urlsafe(32)
        Session.objects.filter(pk=pair.session.pk).update(refresh_digest=None)
        RefreshToken.objects.create(
            session=pair.session,
            token_hash=hashlib.sha256(value.encode()).digest(),
            created_at=pair.session.created_at,
            expires_at=pair.session.idle_expires_at,
        )
        return pair.session, value

    def test_an_old_token_rotates_into_the_new_format(self, make_user):
        session, value = self.legacy(make_user())
        new = refresh_token_rotate(value=value, client_id=CLIENT)
        assert len(new.refresh_token) == TOKEN_LENGTH
        row = RefreshToken.objects.get(session=session)
        assert row.consumed_at is not None
        assert Session.objects.get(pk=session.pk).refresh_spent_at == row.consumed_at
        newer = refresh_token_rotate(value=new.refresh_token, client_id=CLIENT)
        assert refused(value) == "reuse_detected"
        assert refused(newer.refresh_token) == "session_revoked"

    def test_the_old_token_replayed_right_after_is_reuse_or_grace(self, make_user, settings):
        session, value = self.legacy(make_user())
        refresh_token_rotate(value=value, client_id=CLIENT)
        settings.AUTHSERVER_REFRESH_REUSE_GRACE_SECONDS = 30
        retry = refresh_token_rotate(value=value, client_id=CLIENT)  # a lost response
        settings.AUTHSERVER_REFRESH_REUSE_GRACE_SECONDS = 0
        refresh_token_rotate(value=retry.refresh_token, client_id=CLIENT)
        assert refused(value) == "reuse_detected"
        assert Session.objects.get(pk=session.pk).revoke_reason == "reuse_detected"

    def test_an_old_token_presented_before_it_was_spent_lost_a_race(self, make_user):
        session, value = self.legacy(make_user())
        presented = timezone.now()
        refresh_token_rotate(value=value, client_id=CLIENT)
        with pytest.raises(RefreshError) as excinfo:
            refresh_token_rotate(value=value, client_id=CLIENT, presented_at=presented)
        assert excinfo.value.reason == "concurrent_use"
        assert Session.objects.get(pk=session.pk).revoked_at is None

    def test_introspection_and_lookup_of_an_old_token(self, make_user):
        session, value = self.legacy(make_user())
        assert session_find_by_refresh_token(value=value).pk == session.pk
        assert refresh_token_inspect(value=value).current
        refresh_token_rotate(value=value, client_id=CLIENT)
        assert not refresh_token_inspect(value=value).current


def test_the_mac_is_hmac_sha256_of_the_token_body(make_user, settings):
    """A check of the format against the standard library's HMAC, not the module's own."""
    value = start(make_user()).refresh_token
    raw = decode(value)
    from sessions.refresh_tokens import _mac_key

    _, key = _mac_key(settings.AUTHSERVER_KEY_ENCRYPTION_KEY)
    expected = hmac.new(key, raw[:-MAC_BYTES], hashlib.sha256).digest()[:MAC_BYTES]
    assert raw[-MAC_BYTES:] == expected
