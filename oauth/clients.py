"""Client registration (services) and the cached client lookup every OAuth request starts with.

A client secret is 256 random bits, handed out once (at creation or regeneration) and stored only
as its SHA-256 digest. Every change to a client goes through a service here, which drops the
cached copies (see `client_get` for how long another process may still use the old record).
Unknown client_ids are cached too, briefly, so that presenting one costs what presenting a known
client does (no database query): the lookup must not tell an attacker which client_ids exist.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models.base import ModelState
from django.utils import timezone

from audit.events import EventType
from audit.services import audit_event_record
from authserver.conf import get_config
from oauth.claims import FIELD_LABELS, claim_mapping_text, claim_mappings_check
from oauth.models import AuthorizationCode, Client, GrantType, secret_digest
from oauth.redirect_uris import redirect_uri_problem
from oauth.scopes import OIDC_SCOPES, scope_split
from sessions.models import Session
from sessions.services import client_sessions_revoke

logger = logging.getLogger(__name__)

CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Shared (Redis or database) cache entry lifetime, and this process's copies.
CLIENT_CACHE_SECONDS = 60
LOCAL_SECONDS = 30
LOCAL_MAX_ENTRIES = 2000
# "No such client", shared and per process. Short: a client created in the meantime drops the
# entry anyway (client_register invalidates), this only bounds a lookup racing the creation.
# Kept apart from the records, so a flood of made-up client_ids cannot evict real clients.
MISSING_SECONDS = 10
LOCAL_MISSING_MAX_ENTRIES = 10_000
_MISSING = "missing"
GENERATION_CHECK_SECONDS = 1.0
# v2: records carry pkce_required (a v1 record would read as the default, True).
# v3: records carry the claim mappings.
_CACHE_KEY = "oauth:client:v3:{}"
_GENERATION_KEY = "oauth:clients:generation"
# Test seam, as in tokens/keys.py.
clock = time.monotonic
_local: dict[str, tuple[float, Client]] = {}
_local_missing: dict[str, float] = {}
_local_lock = threading.Lock()
_generation_seen: str | None = None
_generation_checked_at = float("-inf")
_CACHED_FIELDS = (
    "id",
    "client_id",
    "name",
    "client_type",
    "secret_hash",
    "redirect_uris",
    "post_logout_redirect_uris",
    "grant_types",
    "scopes",
    "audiences",
    "access_token_lifetime",
    "pkce_required",
    "skip_consent",
    "require_mfa",
    "is_resource_server",
    "refresh_without_offline_access",
    "is_active",
    "tokens_valid_after",
    "id_token_claims",
    "userinfo_claims",
    "access_token_claims",
)


class ClientError(ValueError):
    """The client configuration is not acceptable; the message names the field and the reason.
    `field`, when set, is the Client field at fault (the admin form shows the error there)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class NewSecret:
    client: Client
    # The plain secret, shown once. None for public clients.
    secret: str | None = None

    def __repr__(self) -> str:  # never the secret
        return f"NewSecret(client={self.client.client_id!r})"


# --- Selectors --------------------------------------------------------------------------------


def _shared_generation() -> str | None:
    try:
        return cache.get(_GENERATION_KEY)
    except Exception:  # noqa: BLE001 - cache down: local copies expire after LOCAL_SECONDS
        return None


def _local_refresh(now: float) -> None:
    """At most once a second, drop this process's copies if any client changed anywhere."""
    global _generation_seen, _generation_checked_at  # noqa: PLW0603 - per-process state
    if now - _generation_checked_at < GENERATION_CHECK_SECONDS:
        return
    generation = _shared_generation()
    with _local_lock:
        _generation_checked_at = now
        if generation != _generation_seen:
            _local.clear()
            _local_missing.clear()
            _generation_seen = generation


def _record(client_id: str) -> dict | None:
    """The client's fields from the shared cache, else the database (then cached); None if
    there is no such client (also cached, for MISSING_SECONDS)."""
    key = _CACHE_KEY.format(client_id)
    try:
        data = cache.get(key)
    except Exception:  # noqa: BLE001 - cache down: read the database
        data = None
    if isinstance(data, dict):
        return data
    if data == _MISSING:
        return None
    client = Client.objects.filter(client_id=client_id).first()
    if client is None:
        entry, seconds = _MISSING, MISSING_SECONDS
    else:
        data = {name: getattr(client, name) for name in _CACHED_FIELDS}
        entry, seconds = data, CLIENT_CACHE_SECONDS
    try:
        cache.set(key, entry, seconds)
    except Exception:  # noqa: BLE001 - the database answered; the cache is an optimisation
        logger.warning("client cache unavailable")
    return None if client is None else data


def client_get(*, client_id: str) -> Client | None:
    """The active client with this client_id, or None.

    Served from this process's memory, then the shared cache, then the database. Every change
    (the services below) drops the shared entry and bumps a shared generation that each process
    compares at most once a second, so a change (a rotated secret, a deactivation) reaches every
    worker within about a second; if the cache is unreachable, within LOCAL_SECONDS.

    An unknown client_id is remembered the same way for MISSING_SECONDS, so asking for it again
    costs no database query, like asking for a known one (issue 14.10: the cost of a lookup
    must not reveal whether the client exists). Creating a client drops that entry at once.
    """
    if not isinstance(client_id, str) or not CLIENT_ID_RE.match(client_id):
        return None
    now = clock()
    _local_refresh(now)
    entry = _local.get(client_id)
    missing_since = _local_missing.get(client_id)
    if entry is not None and now - entry[0] < LOCAL_SECONDS:
        client = entry[1]
    elif missing_since is not None and now - missing_since < MISSING_SECONDS:
        return None
    else:
        data = _record(client_id)
        with _local_lock:
            if data is None:
                if len(_local_missing) >= LOCAL_MISSING_MAX_ENTRIES:
                    _local_missing.clear()
                _local_missing[client_id] = now
                return None
            if len(_local) >= LOCAL_MAX_ENTRIES:
                _local.clear()
            client = Client(**data)
            _local[client_id] = (now, client)
    return _copy(client) if client.is_active else None


def _copy(client: Client) -> Client:
    """A private copy of a cached client: its field values (immutable: str, int, bool, datetime)
    shared, its model state new, so a caller that changes or saves it changes nothing in the
    cache. A quarter of what building it from the cached fields costs (Model.__init__)."""
    copy = Client.__new__(Client)
    copy.__dict__.update(client.__dict__)
    copy._state = ModelState()
    return copy


def client_token_is_current(*, client_id: str, issued_at: float) -> bool:
    """Whether a token issued to `client_id` at `issued_at` (its `iat`) may still be used: the
    client exists, is active, and the token is not older than the client's last deactivation
    (issue 13.4). From the cached lookup: no database query when the client is cached."""
    client = client_get(client_id=client_id)
    return client is not None and client.token_is_current(issued_at)


def client_cache_invalidate(*, client_id: str) -> None:
    with _local_lock:
        _local.pop(client_id, None)
        _local_missing.pop(client_id, None)
    try:
        cache.delete(_CACHE_KEY.format(client_id))
        cache.set(_GENERATION_KEY, secrets.token_hex(8), None)
    except Exception:  # noqa: BLE001 - entries expire anyway
        logger.warning(
            "client cache unavailable: other processes may use the old %s for %ss",
            client_id,
            LOCAL_SECONDS,
        )


def client_cache_generation_bump() -> None:
    """Make every process drop its copies of every client within a second (after_restore)."""
    cache.set(_GENERATION_KEY, secrets.token_hex(8), None)


def client_cache_clear_local() -> None:
    """Forget this process's copies (tests; the shared cache is left alone)."""
    global _generation_checked_at  # noqa: PLW0603
    with _local_lock:
        _local.clear()
        _local_missing.clear()
        _generation_checked_at = float("-inf")


# --- Validation -------------------------------------------------------------------------------


def _uri_list(values: Iterable[str], field: str) -> list[str]:
    production = get_config().production
    cleaned: list[str] = []
    for raw in values:
        uri = raw.strip()
        if not uri:
            continue
        problem = redirect_uri_problem(uri, production=production)
        if problem:
            raise ClientError(f"{field}: {uri[:200]!r} {problem}")
        if uri not in cleaned:
            cleaned.append(uri)
    return cleaned


def client_validate(client: Client) -> None:
    """Check a client's configuration as a whole; raise ClientError naming the first problem."""
    if not client.name.strip():
        raise ClientError("name: must not be empty")
    if client.client_type not in Client.Type.values:
        raise ClientError(f"type: must be one of {', '.join(Client.Type.values)}")
    grants = client.grant_types.split()
    if not grants:
        raise ClientError("grant types: give at least one")
    for grant in grants:
        if grant not in GrantType.values:
            raise ClientError(
                f"grant types: {grant[:50]!r} is not supported "
                f"(supported: {', '.join(GrantType.values)}; no implicit or password grant)"
            )
    if client.is_public and not client.pkce_required:
        # RFC 9700 §2.1.1: PKCE is what protects a public client's codes; no secret does.
        raise ClientError(
            "require PKCE: public clients must use PKCE; only a confidential client may opt out"
        )
    if client.is_public and GrantType.CLIENT_CREDENTIALS in grants:
        raise ClientError("grant types: client_credentials needs a confidential client")
    if GrantType.REFRESH_TOKEN in grants and GrantType.AUTHORIZATION_CODE not in grants:
        raise ClientError("grant types: refresh_token needs authorization_code")
    redirect_uris = _uri_list(client.redirect_uri_list, "redirect URIs")
    if GrantType.AUTHORIZATION_CODE in grants and not redirect_uris:
        raise ClientError("redirect URIs: authorization_code needs at least one")
    client.redirect_uris = "\n".join(redirect_uris)
    client.post_logout_redirect_uris = "\n".join(
        _uri_list(client.post_logout_redirect_uri_list, "post-logout redirect URIs")
    )
    scopes = scope_split(client.scopes)
    if scopes is None:
        raise ClientError("scopes: space-separated tokens of printable ASCII, no quotes")
    if GrantType.AUTHORIZATION_CODE not in grants and any(s in OIDC_SCOPES for s in scopes):
        raise ClientError(
            "scopes: openid, profile, email, groups and offline_access need the "
            "authorization_code grant"
        )
    client.scopes = " ".join(scopes)
    audiences = client.audiences.split()
    if any(len(a) > 255 or not a.isprintable() for a in audiences):
        raise ClientError("audiences: each must be printable and at most 255 characters")
    if get_config().default_audience in audiences:
        # The first-party API's audience: a client's tokens must never be accepted there
        # (issue 13.1, confused deputy). Without audiences a client's tokens name its client ID.
        raise ClientError(
            "audiences: AUTHSERVER_DEFAULT_AUDIENCE is reserved for authserver's own API"
        )
    client.audiences = " ".join(dict.fromkeys(audiences))
    lifetime = client.access_token_lifetime
    if lifetime is not None:
        maximum = get_config().signed_token_max_lifetime
        if not 30 <= lifetime <= maximum:
            raise ClientError(
                f"access token lifetime: must be 30 to {maximum} seconds "
                "(AUTHSERVER_SIGNED_TOKEN_MAX_LIFETIME)"
            )
    problems = claim_mappings_check(client)
    for field, problem in problems.items():
        raise ClientError(f"{FIELD_LABELS[field]}: {problem}", field=field)
    if client.is_public:
        client.secret_hash = ""


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())


# --- Services ---------------------------------------------------------------------------------


def _new_secret() -> str:
    return secrets.token_urlsafe(32)  # 256 bits


def _actor_details(actor) -> dict:
    if actor is None or getattr(actor, "pk", None) is None:
        return {}
    return {"actor": actor.get_username(), "actor_sub": actor.sub}


@transaction.atomic
def client_create(
    *,
    name: str,
    client_type: str,
    grant_types: Iterable[str],
    redirect_uris: Iterable[str] = (),
    scopes: Iterable[str] = (),
    post_logout_redirect_uris: Iterable[str] = (),
    audiences: Iterable[str] = (),
    access_token_lifetime: int | None = None,
    pkce_required: bool = True,
    skip_consent: bool = False,
    require_mfa: bool = False,
    is_resource_server: bool = False,
    refresh_without_offline_access: bool = False,
    id_token_claims: str | Mapping[str, str] | None = None,
    userinfo_claims: str | Mapping[str, str] | None = None,
    access_token_claims: str | Mapping[str, str] | None = None,
    actor=None,
    request=None,
) -> NewSecret:
    """Register a client. Returns it with its secret (confidential clients), shown only now.
    Claim mappings: `claim = attribute` lines or {claim: attribute} (oauth/claims.py)."""
    client = Client(
        client_id=secrets.token_urlsafe(18),
        name=(name or "").strip(),
        client_type=client_type,
        grant_types=" ".join(dict.fromkeys(grant_types)),
        redirect_uris="\n".join(redirect_uris),
        post_logout_redirect_uris="\n".join(post_logout_redirect_uris),
        scopes=" ".join(scopes),
        audiences=" ".join(audiences),
        access_token_lifetime=access_token_lifetime,
        pkce_required=pkce_required,
        skip_consent=skip_consent,
        require_mfa=require_mfa,
        is_resource_server=is_resource_server,
        refresh_without_offline_access=refresh_without_offline_access,
        id_token_claims=claim_mapping_text(id_token_claims),
        userinfo_claims=claim_mapping_text(userinfo_claims),
        access_token_claims=claim_mapping_text(access_token_claims),
    )
    return client_register(client=client, actor=actor, request=request)


@transaction.atomic
def client_register(*, client: Client, actor=None, request=None) -> NewSecret:
    """Save a new, unsaved client (built by client_create or the admin form)."""
    if not client.client_id:
        client.client_id = secrets.token_urlsafe(18)
    client_validate(client)
    # Nothing issued under this client_id before now is its token (a re-used id, say). `iat`
    # counts whole seconds: tokens issued within this second are the new client's.
    client.tokens_valid_after = timezone.now().replace(microsecond=0)
    secret = None
    if not client.is_public:
        secret = _new_secret()
        client.secret_hash = secret_digest(secret)
        client.secret_updated_at = timezone.now()
    try:
        client.full_clean(exclude=["secret_hash", "secret_updated_at"])
    except ValidationError as exc:
        raise ClientError(_validation_message(exc)) from None
    client.save()
    # A lookup of this client_id may have cached "no such client" (client_get): drop it now, and
    # again at commit in case a lookup in between read the database before the row was visible.
    transaction.on_commit(lambda: client_cache_invalidate(client_id=client.client_id))
    client_cache_invalidate(client_id=client.client_id)
    audit_event_record(
        event=EventType.CLIENT_CREATED,
        client_id=client.client_id,
        request=request,
        details={
            "name": client.name,
            "type": client.client_type,
            "grant_types": client.grant_type_list,
            **_actor_details(actor),
        },
    )
    return NewSecret(client=client, secret=secret)


@transaction.atomic
def client_update(*, client: Client, actor=None, request=None) -> Client:
    """Save changes to an existing client (admin) and drop its cached copy. Deactivating it
    ends its grants (`_client_grants_end`)."""
    client_validate(client)
    try:
        client.full_clean(exclude=["secret_hash", "secret_updated_at"])
    except ValidationError as exc:
        raise ClientError(_validation_message(exc)) from None
    was_active = (
        Client.objects.select_for_update()
        .filter(pk=client.pk)
        .values_list("is_active", flat=True)
        .first()
    )
    details: dict = {}
    if was_active and not client.is_active:
        details["grants_ended"] = _client_grants_end(client)
    elif was_active is False and client.is_active:
        # Reactivation moves the cutoff again: a token a worker with a stale cached copy
        # issued in the second or so after the deactivation is not revived either.
        client.tokens_valid_after = _next_second(timezone.now())
    client.save()
    transaction.on_commit(lambda: client_cache_invalidate(client_id=client.client_id))
    client_cache_invalidate(client_id=client.client_id)
    audit_event_record(
        event=EventType.CLIENT_CHANGED,
        client_id=client.client_id,
        request=request,
        details={"active": client.is_active, **details, **_actor_details(actor)},
    )
    return client


def client_deactivate(*, client: Client, actor=None, request=None) -> Client:
    """Deactivate a client: it can no longer authorize or get tokens, and every token it holds
    stops working (issue 13.4). Reactivating it later revives none of them."""
    locked = Client.objects.get(pk=client.pk)
    if not locked.is_active:
        return locked
    locked.is_active = False
    return client_update(client=locked, actor=actor, request=request)


def _next_second(now: datetime) -> datetime:
    """A cutoff for `iat`, which counts whole seconds: the next whole second, so that a token
    issued earlier in this second is dead too (one issued just after, in the same second, is
    refused as well: the safe side)."""
    return now.replace(microsecond=0) + timedelta(seconds=1)


def _client_grants_end(client: Client) -> int:
    """End everything issued to `client` so far (issue 13.4, CVE-2025-64521 class): its
    sessions (refresh tokens, and the access tokens checked against them), its access tokens
    without a session (client_credentials: refused when issued before `tokens_valid_after`),
    and its authorization codes not yet redeemed. Returns how many sessions ended."""
    now = timezone.now()
    client.tokens_valid_after = _next_second(now)
    AuthorizationCode.objects.filter(client=client, consumed_at__isnull=True).update(expires_at=now)
    ended = client_sessions_revoke(
        client_id=client.client_id, reason=Session.RevokeReason.ADMIN, now=now
    )
    return len(ended)


@transaction.atomic
def client_secret_rotate(*, client: Client, actor=None, request=None) -> NewSecret:
    """Replace a confidential client's secret; the old one stops working at once."""
    locked = Client.objects.select_for_update().get(pk=client.pk)
    if locked.is_public:
        raise ClientError("public clients have no secret")
    secret = _new_secret()
    locked.secret_hash = secret_digest(secret)
    locked.secret_updated_at = timezone.now()
    locked.save(update_fields=["secret_hash", "secret_updated_at", "updated_at"])
    transaction.on_commit(lambda: client_cache_invalidate(client_id=locked.client_id))
    client_cache_invalidate(client_id=locked.client_id)
    audit_event_record(
        event=EventType.CLIENT_SECRET_ROTATED,
        client_id=locked.client_id,
        request=request,
        details=_actor_details(actor),
    )
    return NewSecret(client=locked, secret=secret)


@transaction.atomic
def client_delete(*, client: Client, actor=None, request=None) -> None:
    """Delete a client and end its grants: with the row gone its access tokens are refused
    (no such client), and its sessions are revoked (issue 13.4)."""
    client_id = client.client_id
    ended = _client_grants_end(client)
    client.delete()
    transaction.on_commit(lambda: client_cache_invalidate(client_id=client_id))
    client_cache_invalidate(client_id=client_id)
    audit_event_record(
        event=EventType.CLIENT_DELETED,
        client_id=client_id,
        request=request,
        details={"grants_ended": ended, **_actor_details(actor)},
    )
