"""Steady load through nginx, recorded request by request: refresh-token rotation chains (one per
user, retrying the same token after a transport failure as a mobile app would), client
credentials tokens and their introspection, the JWKS and the liveness probe."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import requests

TIMEOUT = 15
TRANSIENT = {502, 503, 504, -1}


@dataclass(frozen=True)
class Sample:
    endpoint: str
    started: float  # time.monotonic()
    ended: float
    status: int  # -1: no HTTP response (connection error, timeout)
    error: str = ""  # a refusal's OAuth-style "error" code (its JSON body), "" otherwise

    @property
    def seconds(self) -> float:
        return self.ended - self.started


class Load:
    def __init__(self, base: str, ca: str, *, users: list[str], password: str, client: dict):
        self.base = base
        self.ca = ca
        self.users = users
        self.password = password
        self.client = client
        self.samples: list[Sample] = []
        self.errors: list[str] = []  # the first transport error, for the report
        self.lost: list[tuple[float, str]] = []  # (when, user): a chain refused with 401
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- recording --------------------------------------------------------------------------

    def _call(self, http: requests.Session, endpoint: str, method: str, path: str, **kw):
        started = time.monotonic()
        try:
            # verify per request: a session's own is overridden by REQUESTS_CA_BUNDLE.
            response = http.request(method, self.base + path, timeout=TIMEOUT, verify=self.ca, **kw)
            status = response.status_code
        except requests.RequestException as exc:
            response, status = None, -1
            if not self.errors:
                self.errors.append(repr(exc))
        ended = time.monotonic()
        error = ""
        if response is not None and status >= 400:
            try:
                error = str(response.json().get("error", ""))
            except (ValueError, AttributeError):
                error = "(not a JSON object)"
            if status == 503 and not response.headers.get("Retry-After"):
                error += " (no Retry-After)"
        with self._lock:
            self.samples.append(Sample(endpoint, started, ended, status, error))
        return response

    def between(self, start: float, end: float, endpoint: str | None = None) -> list[Sample]:
        with self._lock:
            return [
                s
                for s in self.samples
                if start <= s.started < end and (endpoint is None or s.endpoint == endpoint)
            ]

    # --- workers ----------------------------------------------------------------------------

    def _session(self) -> requests.Session:
        http = requests.Session()
        http.verify = self.ca
        return http

    def _login(self, http: requests.Session, user: str) -> str:
        while not self._stop.is_set():
            response = self._call(
                http,
                "login",
                "POST",
                "/api/v1/auth/login",
                json={"username": user, "password": self.password},
            )
            if response is not None and response.status_code == 200:
                return response.json()["refresh_token"]
            time.sleep(0.2)
        return ""

    def _chain(self, user: str) -> None:
        http = self._session()
        token = self._login(http, user)
        while not self._stop.is_set():
            response = self._call(
                http, "refresh", "POST", "/api/v1/auth/refresh", json={"refresh_token": token}
            )
            status = response.status_code if response is not None else -1
            if status == 200:
                token = response.json()["refresh_token"]
                time.sleep(0.1)
            elif status in TRANSIENT:
                time.sleep(0.1)  # the response was lost or refused: retry the same token
            else:
                with self._lock:
                    self.lost.append((time.monotonic(), user))
                token = self._login(http, user)

    def _tokens(self) -> None:
        http = self._session()
        auth = (self.client["client_id"], self.client["client_secret"])
        while not self._stop.is_set():
            response = self._call(
                http,
                "token",
                "POST",
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=auth,
            )
            if response is not None and response.status_code == 200:
                access = response.json()["access_token"]
                self._call(
                    http,
                    "introspect",
                    "POST",
                    "/oauth/introspect",
                    data={"token": access},
                    auth=auth,
                )
            time.sleep(0.05)

    def _get(self, endpoint: str, path: str, pause: float) -> None:
        http = self._session()
        while not self._stop.is_set():
            self._call(http, endpoint, "GET", path)
            time.sleep(pause)

    def start(self) -> None:
        targets = [(self._chain, (user,)) for user in self.users]
        targets += [
            (self._tokens, ()),
            (self._get, ("jwks", "/.well-known/jwks.json", 0.05)),
            (self._get, ("healthz", "/healthz", 0.1)),
        ]
        for target, args in targets:
            thread = threading.Thread(target=target, args=args, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=TIMEOUT + 5)
