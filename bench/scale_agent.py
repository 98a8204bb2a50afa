"""The in-process side of the scale benchmark (bench/scale.py): one child process per database.

Django is configured for one database per process (and caches the signing keys, clients and
compiled statements it read from it), so each of the benchmark's two databases gets its own
process with Django set up on it. bench/scale.py sends it calls by name (`Agent.call`); each
runs the project's own services: `session_start` for the virtual users' sessions and tokens,
`audit_event_record` for the sign-in events, `purge_expired_sessions` for the purge, and
bench/seed.py for the COPY seeding. The parent never sets Django up itself.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import signal
import time
import traceback
from typing import Any

from bench.seed import SeedError, Sizes, World, one_line, seed_database

APP_CLIENTS = 20  # OAuth clients the seeded sessions and audit rows belong to
OIDC_SCOPE = "openid profile email"


class AgentError(Exception):
    """A call failed in the agent; the message is one line."""


class ScaleError(Exception):
    """The scale run cannot go on; the message is one line (bench/scale.py prints it)."""


class Agent:
    """A child process with Django set up on one database, answering calls by name."""

    def __init__(self, env: dict[str, str]):
        context = multiprocessing.get_context("spawn")  # a clean interpreter: no shared sockets
        self.conn, child = context.Pipe()
        self.proc = context.Process(target=_serve, args=(env, child), daemon=True)
        self.proc.start()
        child.close()
        self._pending = False

    def start(self, name: str, *args: Any) -> None:
        """Send a call without waiting for its answer (`result` collects it)."""
        self.conn.send((name, args))
        self._pending = True

    def done(self) -> bool:
        return self.conn.poll()

    def result(self) -> Any:
        try:
            status, value = self.conn.recv()
        except EOFError:
            raise AgentError("the agent process exited") from None
        finally:
            self._pending = False
        if status != "ok":
            raise AgentError(value)
        return value

    def call(self, name: str, *args: Any) -> Any:
        self.start(name, *args)
        return self.result()

    def close(self) -> None:
        if self.proc.is_alive():
            if self._pending:  # busy (Ctrl-C during a call): stop it, its backend rolls back
                self.proc.terminate()
            else:
                with contextlib.suppress(OSError):
                    self.conn.send(None)
            self.proc.join(10)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()
        self.conn.close()


def _serve(env: dict[str, str], conn) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    from bench.run import django_setup

    django_setup(env)
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        name, args = message
        try:
            conn.send(("ok", CALLS[name](*args)))
        except SeedError as exc:
            conn.send(("error", str(exc)))
        except Exception as exc:  # noqa: BLE001 - reported to the parent in one line
            where = traceback.extract_tb(exc.__traceback__)[-1]
            conn.send(("error", f"{one_line(exc)} ({where.filename}:{where.lineno} in {name})"))


# --- Calls -------------------------------------------------------------------------------------


def setup(password: str) -> dict:
    """The first signing key, the OAuth clients the seeded rows refer to, and the benchmark's
    own: a client_credentials client, a resource server (introspection) and an OpenID app
    (userinfo tokens). Returns their ids and secrets and the shared password hash."""
    from django.contrib.auth.hashers import make_password

    from oauth.clients import client_create
    from tokens.keys import active_signing_key

    active_signing_key()
    apps = [
        client_create(
            name=f"scale app {i}",
            client_type="confidential",
            grant_types=["authorization_code", "refresh_token"],
            redirect_uris=[f"https://app{i}.scale.invalid/callback"],
            scopes=["openid", "profile", "email", "offline_access"],
        ).client.client_id
        for i in range(APP_CLIENTS)
    ]
    cc = client_create(
        name="scale client_credentials",
        client_type="confidential",
        grant_types=["client_credentials"],
        scopes=["bench.read"],
    )
    rs = client_create(
        name="scale resource server",
        client_type="confidential",
        grant_types=["client_credentials"],
        is_resource_server=True,
    )
    return {
        "apps": apps,
        "cc": (cc.client.client_id, cc.secret),
        "rs": (rs.client.client_id, rs.secret),
        "password_hash": make_password(password),
    }


def seed(url: str, sizes: dict, password_hash: str, apps: list[str], seed_number: int) -> dict:
    """COPY the rows (bench/seed.py) into the database at `url`, this agent's."""
    from django.db import connections

    from authserver.conf import get_config

    config = get_config()
    world = World(
        now=time.time(),
        users=sizes["users"],
        password_hash=password_hash,
        oauth_client_ids=tuple(apps),
        default_audience=config.default_audience,
        session_max_age=float(config.session_max_age),
        idle_timeout=float(config.session_idle_timeout),
        retention_days=config.session_retention_days,
    )
    connections.close_all()
    return seed_database(url, Sizes(**sizes), world, seed=seed_number)


def _users(user_ids: list[int]) -> list:
    from accounts.models import User

    found = User.objects.in_bulk(user_ids)
    missing = set(user_ids) - set(found)
    if missing:
        raise AgentError(f"{len(missing)} of the chosen users do not exist")
    return [found[uid] for uid in user_ids]


def _first_party(user, **extra):
    from authserver.conf import get_config
    from sessions.models import FIRST_PARTY_CLIENT_ID
    from sessions.services import session_start

    return session_start(
        user=user,
        client_id=FIRST_PARTY_CLIENT_ID,
        audience=[get_config().default_audience],
        user_agent=extra.pop("user_agent", "scale-bench"),
        **extra,
    )


def vu_states(scenario: str, user_ids: list[int], oidc_client: str | None = None) -> list:
    """What each virtual user starts a window with: refresh tokens (refresh), first-party
    access tokens (introspection, the session list), OpenID access tokens (userinfo)."""
    from django.db import connections

    users = _users(user_ids)
    if scenario == "refresh":
        states = [_first_party(u).refresh_token for u in users]
    elif scenario in ("introspection", "session_list"):
        states = [_first_party(u).access_token for u in users]
    elif scenario == "userinfo":
        states = [_oidc_access_token(u, oidc_client) for u in users]
    else:
        raise AgentError(f"no states for {scenario}")
    connections.close_all()
    return states


def _oidc_access_token(user, client_id: str) -> str:
    from oauth.issuance import client_audiences
    from oauth.models import Client
    from sessions.services import session_start

    client = Client.objects.get(client_id=client_id)
    return session_start(
        user=user,
        client_id=client.client_id,
        audience=client_audiences(client),
        scope=OIDC_SCOPE,
        issue_refresh_token=False,
        user_agent="scale-bench",
    ).access_token


def sign_ins(user_ids: list[int], user_agent: str, ip: str) -> list[str]:
    """First-party sign-ins without the password hash: what the login API writes after a
    correct password (accounts.services.user_authenticate: `last_login`, the login.succeeded
    event; then session_start). Returns the refresh tokens. bench/scale.py checks that one
    real login through the server writes the same rows."""
    from django.db import connections
    from django.utils import timezone

    from audit.events import EventType
    from audit.services import audit_event_record
    from sessions.models import FIRST_PARTY_CLIENT_ID

    tokens = []
    for user in _users(user_ids):
        now = timezone.now()
        user.last_login = now
        user.save(update_fields=["last_login"])
        audit_event_record(
            event=EventType.LOGIN_SUCCEEDED,
            user=user,
            ip=ip,
            user_agent=user_agent,
            client_id=FIRST_PARTY_CLIENT_ID,
            occurred_at=now,
        )
        pair = _first_party(user, ip=ip, user_agent=user_agent, now=now)
        tokens.append(pair.refresh_token)
    connections.close_all()
    return tokens


def purge(max_rate: float = 0) -> dict:
    """`manage.py purge_expired_sessions [--max-rate R]`, in this process (so its time is the
    command's, not the interpreter's start-up); its output and wall time."""
    from django.core.management import call_command
    from django.db import connections

    out = io.StringIO()
    started = time.monotonic()
    call_command("purge_expired_sessions", "--max-rate", str(max_rate), stdout=out)
    seconds = time.monotonic() - started
    connections.close_all()
    return {"seconds": seconds, "output": out.getvalue()}


CALLS = {
    "setup": setup,
    "seed": seed,
    "vu_states": vu_states,
    "sign_ins": sign_ins,
    "purge": purge,
}
