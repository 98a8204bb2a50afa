"""Client registration: validation, hashed secrets shown once, the cache and its invalidation."""

from __future__ import annotations

import hashlib

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuthEvent
from oauth import clients as clients_module
from oauth.clients import (
    ClientError,
    client_cache_clear_local,
    client_create,
    client_get,
    client_secret_rotate,
    client_update,
)
from oauth.models import Client

pytestmark = pytest.mark.django_db


def create(**overrides):
    values = {
        "name": "App",
        "client_type": "confidential",
        "grant_types": ["authorization_code"],
        "redirect_uris": ["https://app.example.com/cb"],
        "scopes": ["openid"],
    }
    values.update(overrides)
    return client_create(**values)


def test_secret_is_256_bits_stored_only_as_sha256():
    created = create()
    client = Client.objects.get()
    assert len(created.secret) == 43  # 32 bytes, base64url
    assert client.secret_hash == hashlib.sha256(created.secret.encode()).hexdigest()
    assert created.secret not in str(client) and created.secret not in repr(created)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM oauth_client")
        assert created.secret not in repr(cursor.fetchall())
    assert client.check_client_secret(created.secret)
    assert not client.check_client_secret(created.secret[:-1] + "x")
    assert not client.check_client_secret("")
    event = AuthEvent.objects.get(event_type="client.created")
    assert created.secret not in repr(event.details)


def test_client_ids_are_random_and_url_safe():
    ids = {create(name=f"App {n}").client.client_id for n in range(5)}
    assert len(ids) == 5
    assert all(len(i) == 24 and i.replace("-", "").replace("_", "").isalnum() for i in ids)


def test_public_clients_have_no_secret():
    created = create(client_type="public")
    assert created.secret is None
    assert created.client.secret_hash == ""
    assert not created.client.check_client_secret("")


def test_secret_rotation_replaces_the_digest():
    created = create()
    rotated = client_secret_rotate(client=created.client)
    client = Client.objects.get()
    assert rotated.secret != created.secret
    assert client.check_client_secret(rotated.secret)
    assert not client.check_client_secret(created.secret)
    assert AuthEvent.objects.filter(event_type="client.secret_rotated").exists()
    with pytest.raises(ClientError):
        client_secret_rotate(client=create(client_type="public", name="P").client)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": " "}, "name"),
        ({"client_type": "other"}, "type"),
        ({"grant_types": []}, "grant types"),
        ({"grant_types": ["implicit"]}, "not supported"),
        ({"grant_types": ["password"]}, "not supported"),
        (
            {"client_type": "public", "grant_types": ["client_credentials"], "redirect_uris": []},
            "confidential",
        ),
        ({"grant_types": ["refresh_token"]}, "needs authorization_code"),
        ({"redirect_uris": []}, "at least one"),
        ({"redirect_uris": ["https://app.example.com/*"]}, "wildcard"),
        ({"redirect_uris": ["https://app.example.com/cb#x"]}, "fragment"),
        ({"redirect_uris": ["/relative"]}, "absolute"),
        ({"redirect_uris": ["javascript:alert(1)"]}, "javascript"),
        ({"redirect_uris": ["data:text/html,x"]}, "data"),
        ({"redirect_uris": ["https://user@app.example.com/cb"]}, "user information"),
        ({"redirect_uris": ["https://app.example.com/a b"]}, "spaces"),
        ({"redirect_uris": ["myapp:/cb"]}, "reverse-domain"),
        ({"post_logout_redirect_uris": ["https://*.example.com/"]}, "wildcard"),
        ({"scopes": ['a"b']}, "scopes"),
        (
            {"grant_types": ["client_credentials"], "redirect_uris": [], "scopes": ["openid"]},
            "openid",
        ),
        ({"access_token_lifetime": 5}, "lifetime"),
        ({"access_token_lifetime": 10**6}, "lifetime"),
    ],
)
def test_invalid_configurations_are_refused(overrides, message):
    with pytest.raises(ClientError, match=message):
        create(**overrides)
    assert not Client.objects.exists()


def test_http_redirect_only_on_loopback_in_production(settings):
    create(redirect_uris=["http://app.example.com/cb"], name="dev")
    settings.AUTHSERVER_MODE = "production"
    with pytest.raises(ClientError, match="loopback"):
        create(redirect_uris=["http://app.example.com/cb"])
    create(redirect_uris=["http://127.0.0.1:8765/cb", "http://[::1]:9/cb"], name="native")


def test_lookup_is_cached_and_invalidated_on_change():
    client = create().client
    assert client_get(client_id=client.client_id) is not None
    with CaptureQueriesContext(connection) as queries:
        cached = client_get(client_id=client.client_id)
    assert len(queries) == 0
    assert cached.client_id == client.client_id and cached.secret_hash == client.secret_hash
    client.is_active = False
    client_update(client=client)
    assert client_get(client_id=client.client_id) is None


def test_lookup_refuses_malformed_ids_without_a_query():
    with CaptureQueriesContext(connection) as queries:
        for value in ["", "a b", "x" * 65, "é", "a\x00b", None, 5]:
            assert client_get(client_id=value) is None
    assert len(queries) == 0


def test_lookup_survives_a_broken_cache(settings):
    client = create().client
    client_cache_clear_local()
    caches = {alias: dict(conf) for alias, conf in settings.CACHES.items()}
    caches["default"]["LOCATION"] = "redis://127.0.0.1:1/0"  # nothing listens there
    settings.CACHES = caches
    assert client_get(client_id=client.client_id).client_id == client.client_id


def test_update_normalises_and_audits():
    client = create().client
    client.redirect_uris = " https://app.example.com/cb \n\nhttps://app.example.com/two\n"
    client_update(client=client)
    assert Client.objects.get().redirect_uri_list == [
        "https://app.example.com/cb",
        "https://app.example.com/two",
    ]
    assert AuthEvent.objects.filter(event_type="client.changed").exists()


def test_a_change_made_by_another_process_is_seen_within_a_second(monkeypatch):
    from django.core.cache import cache

    now = [1000.0]
    monkeypatch.setattr(clients_module, "clock", lambda: now[0])
    client = create().client
    assert client_get(client_id=client.client_id).is_active
    # Another worker deactivates the client: the row changes, the shared entry is dropped and
    # the generation moves on. This process still holds its own copy...
    Client.objects.filter(pk=client.pk).update(is_active=False)
    cache.delete(f"oauth:client:v3:{client.client_id}")
    cache.set("oauth:clients:generation", "changed-elsewhere", None)
    now[0] += 0.5
    assert client_get(client_id=client.client_id) is not None
    # ...for at most a second.
    now[0] += 0.6
    assert client_get(client_id=client.client_id) is None


def test_local_copies_expire_even_without_the_cache(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(clients_module, "clock", lambda: now[0])
    monkeypatch.setattr(clients_module, "_shared_generation", lambda: None)
    client = create().client
    assert client_get(client_id=client.client_id) is not None
    Client.objects.filter(pk=client.pk).update(is_active=False)
    from django.core.cache import cache

    cache.delete(f"oauth:client:v3:{client.client_id}")
    now[0] += clients_module.LOCAL_SECONDS + 1
    assert client_get(client_id=client.client_id) is None
