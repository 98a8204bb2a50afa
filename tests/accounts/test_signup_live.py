"""Sign-up, address confirmation and invitations over HTTP: authserver under gunicorn on
PostgreSQL, its mail delivered by the worker's step over SMTP to aiosmtpd (tests/accounts/
mailbox.py) by the deliver_email worker process, read back from what that server received.

Each test is one scenario on its own gunicorn. The "browser" is a requests session using the
pages' real forms (CSRF token included).
"""

from __future__ import annotations

import html
import re
import secrets
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from accounts.models import AccountLink, User
from accounts.services import user_create
from audit.models import AuthEvent
from authserver import settings as app_settings
from mail.models import Outbox
from tests.accounts.mailbox import Mailbox, deliver, mail_worker
from tests.conftest import PASSWORD
from tests.live import Gunicorn, manage, window_with_room

pytestmark = pytest.mark.slow

NEW_PASSWORD = "a fresh and long passphrase 42"
_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
_TITLE = re.compile(r"<h1>(.*?)</h1>", re.S)


@pytest.fixture
def mailbox(child_env) -> Iterator[Mailbox]:
    with Mailbox() as box, mail_worker(child_env, box):
        yield box


def start(child_env, settings, **env: str) -> Gunicorn:
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS  # the child's hasher list
    server = Gunicorn(child_env, workers=2, extra=("--worker-class", "gthread", "--threads", "8"))
    server.env["AUTHSERVER_ISSUER"] = server.url
    server.env.update(env)
    return server


@pytest.fixture
def open_server(child_env, settings, mailbox) -> Iterator[Gunicorn]:
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS  # the child's hasher list
    user_create(username="alice", email="alice@example.com", password=PASSWORD)
    with start(
        child_env,
        settings,
        AUTHSERVER_REGISTRATION="open",
        AUTHSERVER_REGISTRATION_THROTTLE_PER_IP="1000",
    ) as server:
        yield server


def events(event_type: str, user: User) -> int:
    return AuthEvent.objects.filter(event_type=event_type, user_public_id=user.public_id).count()


def csrf(page: requests.Response) -> str:
    found = _CSRF.search(page.text)
    assert found, page.text[:500]
    return html.unescape(found.group(1))


def title(page: requests.Response) -> str:
    found = _TITLE.search(page.text)
    return html.unescape(found.group(1)).strip() if found else ""


def signup(server: Gunicorn, browser: requests.Session, **fields: str) -> requests.Response:
    form = browser.get(server.url + "/signup", timeout=10)
    assert form.status_code == 200
    data = {
        "csrfmiddlewaretoken": csrf(form),
        "username": "carol",
        "email": "carol@example.org",
        "password1": NEW_PASSWORD,
        "password2": NEW_PASSWORD,
        **fields,
    }
    return browser.post(server.url + "/signup", data=data, allow_redirects=False, timeout=30)


def sign_in(server: Gunicorn, username: str, password: str) -> requests.Response:
    browser = requests.Session()
    page = browser.get(server.url + "/login", timeout=10)
    return browser.post(
        server.url + "/login",
        data={"csrfmiddlewaretoken": csrf(page), "username": username, "password": password},
        allow_redirects=False,
        timeout=30,
    )


def confirm(server: Gunicorn, url: str) -> requests.Response:
    """Follow a mailed confirmation link and press its button."""
    browser = requests.Session()
    page = browser.get(url, timeout=10)
    assert page.status_code == 200, page.text[:300]
    # The token left the address at once (kept as a digest in the session).
    assert page.url == server.url + "/email/confirm"
    return browser.post(page.url, data={"csrfmiddlewaretoken": csrf(page)}, timeout=30)


def test_sign_up_mail_confirm_and_sign_in_over_http(open_server, mailbox):
    server = open_server
    login_page = requests.get(server.url + "/login", timeout=10)
    assert 'href="/signup"' in login_page.text  # the login page offers sign-up when open

    answer = signup(server, requests.Session())
    assert answer.status_code == 303 and answer.headers["Location"] == "/signup/sent"
    carol = User.objects.get(username="carol")
    assert carol.email == "carol@example.org"
    assert (carol.is_active, carol.email_verified) == (False, False)
    # Inactive until confirmed: the right password does not sign in yet.
    assert sign_in(server, "carol", NEW_PASSWORD).status_code == 200

    assert deliver(mailbox, expect=1) == 1
    (mail,) = mailbox.to("carol@example.org")
    assert mail.rcpt_tos == ["carol@example.org"]
    assert "Confirm" in mail.subject
    assert mail.text and mail.html  # text and HTML parts
    (link,) = mail.links("/email/confirm?token=")
    assert link.startswith(server.url) and link in html.unescape(mail.html)
    # The token is stored only as its hash, and never written to the access log.
    token = parse_qs(urlsplit(link).query)["token"][0]
    assert len(token) == 43 and not AccountLink.objects.filter(digest=token).exists()

    # A GET (a mail scanner, a link preview) changes nothing.
    scanned = requests.get(link, timeout=10)
    assert scanned.status_code == 200
    # The page names what it confirms: someone else's sign-up is recognisable as such.
    assert "carol@example.org" in scanned.text and "<strong>carol</strong>" in scanned.text
    carol.refresh_from_db()
    assert not carol.is_active
    done = confirm(server, link)
    assert done.status_code == 200 and title(done) == "Email address confirmed"
    carol.refresh_from_db()
    assert (carol.is_active, carol.email_verified) == (True, True)
    assert sign_in(server, "carol", NEW_PASSWORD).status_code == 302

    # The link again, and a tampered one: the same clear page, nothing changes.
    replay = requests.get(link, timeout=10)
    assert replay.status_code == 400 and title(replay) == "This link can\u2019t be used"
    tampered = link[:-2] + ("AA" if not link.endswith("AA") else "BB")
    assert requests.get(tampered, timeout=10).status_code == 400
    assert requests.get(server.url + "/email/confirm?token=x", timeout=10).status_code == 400
    assert requests.get(server.url + "/email/confirm", timeout=10).status_code == 400
    assert token not in server.output()
    assert events("email.verified", carol) == 1


def test_sign_up_answers_alike_whether_the_address_or_name_is_taken(open_server, mailbox):
    """Enumeration: a new address, an address that has an account, and a taken username get
    the same status, redirect and page; the difference goes only to the mailbox."""
    server = open_server
    cases = {
        "new": {"username": "dave", "email": "dave@example.org"},
        "existing address": {"username": "someone", "email": "ALICE@example.com"},
        "taken username": {"username": "Alice", "email": "erin@example.org"},
    }
    answers = {}
    for name, fields in cases.items():
        browser = requests.Session()
        answer = signup(server, browser, **fields)
        page = browser.get(server.url + answer.headers["Location"], timeout=10)
        answers[name] = (answer.status_code, answer.headers["Location"], answer.text, page.text)
    assert len(set(answers.values())) == 1, answers
    assert User.objects.filter(username__in=["dave"]).count() == 1
    assert not User.objects.filter(username="someone").exists()
    assert not User.objects.filter(email="erin@example.org").exists()

    deliver(mailbox, expect=3)
    (existing,) = mailbox.to("alice@example.com")
    assert "tried to sign up" in existing.subject and "/login" in existing.text
    (taken,) = mailbox.to("erin@example.org")
    assert "another username" in taken.subject
    (new,) = mailbox.to("dave@example.org")
    assert new.links("/email/confirm?token=")


@pytest.mark.timing
def test_sign_up_timing_does_not_tell_a_known_address(open_server, mailbox):
    """Each path costs one password hash and one outbox row: medians of alternating probes for
    a new address and for one with an account stay within 25 % of each other."""
    server = open_server
    durations: dict[str, list[float]] = {"new": [], "existing": []}
    for i in range(8):
        for kind in ("new", "existing"):
            browser = requests.Session()
            email = f"probe{i}@example.org" if kind == "new" else "alice@example.com"
            form = browser.get(server.url + "/signup", timeout=10)
            data = {
                "csrfmiddlewaretoken": csrf(form),
                "username": f"probe{i}{kind}",
                "email": email,
                "password1": NEW_PASSWORD,
                "password2": NEW_PASSWORD,
            }
            began = time.perf_counter()
            answer = browser.post(server.url + "/signup", data=data, allow_redirects=False)
            durations[kind].append(time.perf_counter() - began)
            assert answer.status_code == 303
    new, existing = (statistics.median(durations[k]) for k in ("new", "existing"))
    assert abs(new - existing) <= 0.25 * max(new, existing), durations


def test_sign_up_refuses_header_injection_and_bad_input(open_server, mailbox):
    server = open_server
    for fields in (
        {"email": "x@example.org\r\nBcc: victim@example.net"},
        {"email": "x@example.org, victim@example.net"},
        {"email": '"Evil" <x@example.org>'},
        {"email": "x@example.org\nSubject: hi"},
        {"username": "carol\r\nBcc: victim@example.net"},
        {"password2": "something else entirely 1"},
        {"password1": "short", "password2": "short"},
    ):
        answer = signup(server, requests.Session(), **fields)
        assert answer.status_code == 200, fields  # the form again, with its error
        assert 'class="field-error"' in answer.text, fields
    # A bare CR/LF sent without the form's encoding is refused alike (no 500).
    raw = requests.post(
        server.url + "/signup", data=b"email=a%0d%0ab", timeout=10, allow_redirects=False
    )
    assert raw.status_code == 403  # no CSRF token: refused before anything
    assert not Outbox.objects.exists()
    assert User.objects.count() == 1  # alice only
    deliver(mailbox)
    assert mailbox.messages == []


def _form_posts_at_once(url: str, body: str, cookie: str, count: int) -> list[int]:
    """POST an urlencoded form `count` times with every request in flight together."""
    parts = urlsplit(url)
    payload = body.encode()
    request = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Cookie: {cookie}\r\nReferer: {url}\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    ).encode() + payload
    sockets = [
        socket.create_connection((parts.hostname, parts.port), timeout=30) for _ in range(count)
    ]
    for sock in sockets:
        sock.sendall(request)
    statuses: list[int] = [0] * count

    def read(i: int, sock: socket.socket) -> None:
        with sock:
            data = b""
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            statuses[i] = int(data.split(b" ", 2)[1]) if data else 0
            while sock.recv(65536):
                pass

    readers = [threading.Thread(target=read, args=(i, s)) for i, s in enumerate(sockets)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(timeout=60)
    return statuses


def test_twenty_concurrent_confirmations_of_one_link_have_one_winner(open_server, mailbox):
    server = open_server
    signup(server, requests.Session(), username="frank", email="frank@example.org")
    deliver(mailbox, expect=1)
    (link,) = mailbox.to("frank@example.org")[0].links("/email/confirm?token=")
    browser = requests.Session()
    page = browser.get(link, timeout=10)
    token = csrf(page)
    cookie = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)
    statuses = _form_posts_at_once(page.url, f"csrfmiddlewaretoken={token}", cookie, 20)
    assert sorted(statuses) == [200] + [400] * 19, statuses
    frank = User.objects.get(username="frank")
    assert (frank.is_active, frank.email_verified) == (True, True)
    assert events("email.verified", frank) == 1
    (row,) = AccountLink.objects.filter(user=frank, purpose="verify_email")
    assert row.used_at is not None


def test_sign_up_is_throttled_per_ip(child_env, settings, mailbox):
    with start(
        child_env,
        settings,
        AUTHSERVER_REGISTRATION="open",
        AUTHSERVER_REGISTRATION_THROTTLE_PER_IP="3",
    ) as server:
        window_with_room(3600, 60)  # the registration throttle's window (the default)
        statuses = [
            signup(server, requests.Session(), username=f"u{i}", email=f"u{i}@example.org")
            for i in range(4)
        ]
        assert [s.status_code for s in statuses] == [303, 303, 303, 429]
        refused = statuses[-1]
        assert 0 < int(refused.headers["Retry-After"]) <= 3600
        assert "Too many sign-up attempts" in refused.text
        assert not User.objects.filter(username="u3").exists()


def test_closed_registration_has_no_sign_up_page(child_env, settings, mailbox):
    with start(child_env, settings) as server:  # the default: closed
        assert requests.get(server.url + "/signup", timeout=10).status_code == 404
        assert requests.post(server.url + "/signup", timeout=10).status_code in (403, 404)
        assert requests.get(server.url + "/signup/sent", timeout=10).status_code == 404
        assert 'href="/signup"' not in requests.get(server.url + "/login", timeout=10).text


def test_allowed_domains_limit_the_sign_up_page(child_env, settings, mailbox):
    with start(
        child_env,
        settings,
        AUTHSERVER_REGISTRATION="open",
        AUTHSERVER_REGISTRATION_EMAIL_DOMAINS="example.org, corp.example",
    ) as server:
        refused = signup(server, requests.Session(), email="mallory@elsewhere.example")
        assert refused.status_code == 200 and "example.org, corp.example only" in refused.text
        sub = signup(server, requests.Session(), email="mallory@sub.example.org")
        assert sub.status_code == 200  # exact domains: no subdomain
        assert signup(server, requests.Session()).status_code == 303
        assert list(User.objects.filter(username="carol").values_list("email", flat=True)) == [
            "carol@example.org"
        ]


def test_invitation_by_command_over_http(child_env, settings, mailbox):
    user_create(username="alice", email="alice@example.com", password=PASSWORD)
    with start(child_env, settings, AUTHSERVER_REGISTRATION="invite") as server:
        assert requests.get(server.url + "/signup", timeout=10).status_code == 404
        made = manage("invite_user", "Grace@Example.org", env=server.env)
        assert made.returncode == 0, made.stderr
        assert "/invite/" not in made.stdout + made.stderr  # the link is never printed
        deliver(mailbox, expect=1)
        (mail,) = mailbox.to("grace@example.org")
        (link,) = mail.links("/invite?token=")
        browser = requests.Session()
        page = browser.get(link, timeout=10)
        assert page.status_code == 200 and "grace@example.org" in page.text
        assert page.url == server.url + "/invite"
        taken = browser.post(
            page.url,
            data={
                "csrfmiddlewaretoken": csrf(page),
                "username": "ALICE",
                "password1": NEW_PASSWORD,
                "password2": NEW_PASSWORD,
            },
            timeout=30,
        )
        assert "This username is taken" in taken.text
        done = browser.post(
            page.url,
            data={
                "csrfmiddlewaretoken": csrf(taken),
                "username": "grace",
                "password1": NEW_PASSWORD,
                "password2": NEW_PASSWORD,
            },
            timeout=30,
        )
        assert done.status_code == 200 and title(done) == "Your account is ready"
        grace = User.objects.get(username="grace")
        assert (grace.email, grace.is_active, grace.email_verified) == (
            "grace@example.org",
            True,
            True,
        )
        assert sign_in(server, "grace", NEW_PASSWORD).status_code == 302
        assert requests.get(link, timeout=10).status_code == 400  # used
        again = manage("invite_user", "grace@example.org", env=server.env)
        assert again.returncode != 0 and "already exists" in again.stderr


def test_changed_address_replaces_the_old_one_only_when_confirmed(open_server, mailbox):
    server = open_server
    browser = requests.Session()
    page = browser.get(server.url + "/login", timeout=10)
    signed_in = browser.post(
        server.url + "/login",
        data={"csrfmiddlewaretoken": csrf(page), "username": "alice", "password": PASSWORD},
        allow_redirects=False,
        timeout=30,
    )
    assert signed_in.status_code == 302
    profile = browser.get(server.url + "/account/", timeout=10)
    # The profile page shows the state and embeds the change form.
    assert "not verified" in profile.text and 'action="/account/email"' in profile.text
    sent = browser.post(
        server.url + "/account/email",
        data={"csrfmiddlewaretoken": csrf(profile), "email": "New@Example.org"},
        allow_redirects=False,
        timeout=30,
    )
    assert sent.status_code == 303 and sent.headers["Location"] == "/account/email?sent=1"
    page = browser.get(server.url + sent.headers["Location"], timeout=10)
    assert "Check the new address" in page.text
    alice = User.objects.get(username="alice")
    assert alice.email == "alice@example.com"  # not yet
    deliver(mailbox, expect=1)
    (mail,) = mailbox.to("new@example.org")
    (link,) = mail.links("/email/confirm?token=")
    assert confirm(server, link).status_code == 200
    alice.refresh_from_db()
    assert (alice.email, alice.email_verified) == ("new@example.org", True)
    deliver(mailbox, expect=2)
    (told,) = mailbox.to("alice@example.com")
    assert "was changed" in told.subject and "new@example.org" in told.text
    assert events("email.changed", alice) == 1


def test_email_verified_in_id_token_and_userinfo_read_by_pyjwt(open_server, mailbox):
    """The claim, read from a real code flow with PyJWT (JWKS over HTTP): false before the
    address is confirmed, true after."""
    import jwt

    from oauth.clients import client_create
    from tests.flows.test_oauth_interop import REDIRECT_URI, browser_authorize

    server = open_server
    registered = client_create(
        name="Claims",
        client_type="confidential",
        grant_types=["authorization_code"],
        redirect_uris=[REDIRECT_URI],
        scopes=["openid", "email"],
    )
    meta = requests.get(server.url + "/.well-known/openid-configuration", timeout=10).json()
    assert "email_verified" in meta["claims_supported"]
    jwks = jwt.PyJWKClient(meta["jwks_uri"])

    def claims() -> tuple[dict, dict]:
        import base64
        import hashlib

        verifier = secrets.token_urlsafe(48)
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        url = (
            f"{meta['authorization_endpoint']}?response_type=code&client_id="
            f"{registered.client.client_id}&redirect_uri={REDIRECT_URI}&scope=openid%20email"
            f"&code_challenge={challenge}&code_challenge_method=S256&state=s&nonce=n"
        )
        callback = browser_authorize(server, requests.Session(), url)
        code = dict(p.split("=", 1) for p in urlsplit(callback).query.split("&"))["code"]
        tokens = requests.post(
            meta["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
            },
            auth=(registered.client.client_id, registered.secret),
            timeout=10,
        ).json()
        id_token = tokens["id_token"]
        key = jwks.get_signing_key_from_jwt(id_token)
        decoded = jwt.decode(
            id_token,
            key.key,
            algorithms=[key.algorithm_name],
            audience=registered.client.client_id,
            issuer=meta["issuer"],
        )
        info = requests.get(
            meta["userinfo_endpoint"],
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
            timeout=10,
        ).json()
        return decoded, info

    decoded, info = claims()
    assert decoded["email"] == info["email"] == "alice@example.com"
    assert decoded["email_verified"] is False and info["email_verified"] is False
    User.objects.filter(username="alice").update(email_verified=True)
    decoded, info = claims()
    assert decoded["email_verified"] is True and info["email_verified"] is True
