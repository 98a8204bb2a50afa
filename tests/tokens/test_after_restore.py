"""`manage.py after_restore` in-process (the drill with pg_dump, pg_restore and gunicorn is
tests/deploy/test_restore_drill.py): what it does to the key store and the cache, when it acts,
and that it keeps the KEK rule of issue 14.2."""

from __future__ import annotations

import secrets
from io import StringIO

import pytest
from django.conf import settings
from django.core.cache import cache
from django.core.management import CommandError, call_command

from tokens import keys
from tokens.models import RestoreMarker, SigningKey
from tokens.rotation import signing_key_create_first, signing_key_revoke, signing_key_rotate

pytestmark = pytest.mark.django_db(transaction=True)
State = SigningKey.State


@pytest.fixture(autouse=True)
def _marker():
    """The marker row as migration tokens.0006 writes it (a transactional test's flush empties
    the table after each test)."""
    from django.db import connection

    RestoreMarker.objects.all().delete()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tokens_restoremarker (table_oid, recorded_at) "
            "SELECT 'tokens_restoremarker'::regclass::oid, now()"
        )


def run(*args: str) -> str:
    out = StringIO()
    call_command("after_restore", *args, stdout=out)
    return out.getvalue()


def as_if_restored() -> None:
    """What a restore from a dump looks like to after_restore: the marker row no longer holds
    its table's OID (pg_restore created the table anew)."""
    RestoreMarker.objects.update(table_oid=1)


def states() -> dict[str, str]:
    return dict(SigningKey.objects.values_list("kid", "state"))


def test_the_live_database_is_left_alone():
    signing_key_create_first()
    before = states()
    assert "nothing done: this database was never restored from a dump" in run()
    assert states() == before


def test_after_a_restore_every_restored_key_is_revoked_and_a_fresh_one_signs():
    first = signing_key_create_first()
    signing_key_rotate(immediate=True)  # first retired, a second active
    signing_key_rotate()  # and a third published as next
    SigningKey.objects.create(
        **{
            field.name: getattr(first, field.name)
            for field in SigningKey._meta.fields
            if field.name not in {"id", "kid", "state"}
        },
        kid="revoked-before-the-backup",
        state=State.REVOKED,
    )
    restored = {kid for kid, state in states().items() if state != State.REVOKED}
    assert len(restored) == 3
    cache.set("restore-test", "stale", 300)
    as_if_restored()

    output = run()
    assert "restored from a dump" in output
    assert "Still to do by hand" in output
    after = states()
    (fresh,) = [kid for kid, state in after.items() if state == State.ACTIVE]
    assert fresh not in restored
    assert {after[kid] for kid in restored} == {State.REVOKED}
    assert after["revoked-before-the-backup"] == State.REVOKED
    # Private keys of the restored keys are erased: none can ever sign again.
    assert not any(
        bytes(row.private_key_ciphertext) for row in SigningKey.objects.filter(kid__in=restored)
    )
    assert keys.active_signing_key().kid == fresh
    assert {key.kid for key in keys.published_keys()} == {fresh}
    assert cache.get("restore-test") is None  # this deployment's cache prefix was emptied

    # Twice: nothing more happens.
    again = run()
    assert "nothing done: not restored since the last after_restore" in again
    assert states() == after


def test_keep_published_retires_instead_and_never_signs_with_them():
    signing_key_create_first()
    old = keys.active_signing_key().kid
    as_if_restored()
    run("--keep-published")
    after = states()
    assert after[old] == State.RETIRED
    assert keys.active_signing_key().kid != old
    assert old in {key.kid for key in keys.published_keys()}  # still verifies its tokens


def test_without_a_marker_it_needs_force():
    signing_key_create_first()
    RestoreMarker.objects.all().delete()
    before = states()
    output = run()
    assert "nothing done" in output and "--force" in output
    assert states() == before
    assert "--force" in run("--force")
    assert states() != before
    assert RestoreMarker.objects.count() == 1


def test_a_process_with_another_kek_changes_nothing(settings):
    """Issue 14.2: keys sealed with another KEK are not this process's to replace."""
    signing_key_create_first()
    as_if_restored()
    before = states()
    settings.AUTHSERVER_KEY_ENCRYPTION_KEY = secrets.token_bytes(32)
    keys.keyring_reset()
    with pytest.raises(CommandError, match="will not create, rotate or remove signing keys"):
        run()
    assert states() == before
    assert RestoreMarker.objects.get().table_oid == 1  # still recognised as restored


def test_only_this_deployments_cache_prefix_is_cleared():
    import redis

    if settings.CACHES["default"]["BACKEND"] != "django.core.cache.backends.redis.RedisCache":
        pytest.skip("the cache is not Redis")
    client = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    prefix = settings.CACHES["default"]["KEY_PREFIX"]
    # A neighbour whose prefix starts like ours, and one with glob characters.
    neighbours = [f"{prefix}x:1:kept", f"{prefix[:-1]}*:1:kept"]
    for key in neighbours:
        client.set(key, b"1", ex=60)
    cache.set("ours", "gone", 60)
    signing_key_create_first()
    signing_key_revoke(kid=keys.active_signing_key().kid)
    as_if_restored()
    run()
    assert cache.get("ours") is None
    assert all(client.get(key) == b"1" for key in neighbours)
    client.delete(*neighbours)
