"""The load generator: closed-loop virtual users on keep-alive http.client connections.

Each virtual user (VU) sends its next request as soon as the previous answer arrived, for a fixed
time. VUs are threads spread over up to four forked processes (no GIL contention between them),
all pinned to the load generator's core. A VU carries a state: the user it logs in as, the
refresh token its previous response returned, the access token it introspects.

Only the standard library is used here, so the generator costs little per request: one
http.client round trip, a status check, and for the refresh chain one small json.loads.
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import multiprocessing
import os
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode

REQUEST_TIMEOUT = 30.0
MAX_PROCESSES = 4
_JSON = {"Content-Type": "application/json"}
_FORM = {"Content-Type": "application/x-www-form-urlencoded"}

# A request: (method, path, body, headers). An outcome: (ok, next state, chain still usable).
Request = tuple[str, str, bytes | None, dict[str, str]]
Outcome = tuple[bool, object, bool]


def basic_auth(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


@dataclass(frozen=True)
class Scenario:
    """What a VU sends and how it judges the answer. `build(state)` makes the request;
    `judge(status, body, state)` says whether it succeeded and what the next state is."""

    name: str
    build: Callable[[object], Request]
    judge: Callable[[int, bytes, object], Outcome]
    stateful: bool = False  # a failed request breaks the VU's chain: stop that VU


def _ok_200(status: int, body: bytes, state: object) -> Outcome:
    return status == 200, state, True


def healthz() -> Scenario:
    return Scenario("healthz", lambda state: ("GET", "/healthz", None, {}), _ok_200)


def jwks() -> Scenario:
    return Scenario("jwks", lambda state: ("GET", "/.well-known/jwks.json", None, {}), _ok_200)


def login(password: str) -> Scenario:
    """POST /api/v1/auth/login; the state is the VU's own username."""

    def build(username: object) -> Request:
        body = json.dumps({"username": username, "password": password}).encode()
        return "POST", "/api/v1/auth/login", body, _JSON

    def judge(status: int, body: bytes, state: object) -> Outcome:
        return status == 200 and b'"refresh_token"' in body, state, True

    return Scenario("login", build, judge)


def refresh() -> Scenario:
    """POST /api/v1/auth/refresh with the token the VU's previous response returned."""

    def build(token: object) -> Request:
        body = json.dumps({"refresh_token": token}).encode()
        return "POST", "/api/v1/auth/refresh", body, _JSON

    def judge(status: int, body: bytes, state: object) -> Outcome:
        if status != 200:
            return False, state, False
        try:
            return True, json.loads(body)["refresh_token"], True
        except (ValueError, KeyError):
            return False, state, False

    return Scenario("refresh", build, judge, stateful=True)


def client_credentials(client_id: str, secret: str) -> Scenario:
    """POST /oauth/token, grant_type=client_credentials, client_secret_basic."""
    headers = {**_FORM, "Authorization": basic_auth(client_id, secret)}
    body = b"grant_type=client_credentials"

    def judge(status: int, body: bytes, state: object) -> Outcome:
        return status == 200 and b'"access_token"' in body, state, True

    return Scenario(
        "client_credentials", lambda state: ("POST", "/oauth/token", body, headers), judge
    )


def introspection(client_id: str, secret: str) -> Scenario:
    """POST /oauth/introspect of a user's access token (state), by a resource server."""
    headers = {**_FORM, "Authorization": basic_auth(client_id, secret)}

    def build(token: object) -> Request:
        return "POST", "/oauth/introspect", urlencode({"token": token}).encode(), headers

    def judge(status: int, body: bytes, state: object) -> Outcome:
        return status == 200 and b'"active":true' in body.replace(b" ", b""), state, True

    return Scenario("introspection", build, judge)


@dataclass
class LoadResult:
    latencies: list[float]  # seconds, of every answered request
    errors: int  # failed requests (wrong status or body, connection errors)
    served: int  # requests the server answered (counted in its CPU)
    elapsed: float  # wall seconds from the common start to the last answer
    generator_cpu: float  # CPU seconds of the load generator processes
    states: list[object] = field(default_factory=list)


def _vu(
    port: int,
    scenario: Scenario,
    state: object,
    start_at: float,
    deadline: float,
    out: dict,
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    latencies = array("d")
    errors = served = 0
    pause = start_at - time.monotonic()
    if pause > 0:
        time.sleep(pause)
    clock = time.perf_counter
    while time.monotonic() < deadline:
        method, path, body, headers = scenario.build(state)
        started = clock()
        try:
            conn.request(method, path, body, headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            if scenario.stateful:  # the token may have been spent: the chain is broken
                break
            continue
        latencies.append(clock() - started)
        served += 1
        ok, state, usable = scenario.judge(response.status, data, state)
        if not ok:
            errors += 1
            if not usable:
                break
    conn.close()
    out.update(latencies=latencies, errors=errors, served=served, end=time.monotonic(), state=state)


def _process(
    port: int,
    scenario: Scenario,
    states: Sequence[object],
    start_at: float,
    deadline: float,
    pipe,
) -> None:
    outs: list[dict] = [{} for _ in states]
    threads = [
        threading.Thread(target=_vu, args=(port, scenario, state, start_at, deadline, out))
        for state, out in zip(states, outs, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies = array("d")
    for out in outs:
        latencies.extend(out["latencies"])
    times = os.times()
    pipe.send(
        {
            "latencies": latencies.tobytes(),
            "errors": sum(o["errors"] for o in outs),
            "served": sum(o["served"] for o in outs),
            "end": max(o["end"] for o in outs),
            "states": [o["state"] for o in outs],
            "cpu": times.user + times.system,
        }
    )
    pipe.close()


def run(port: int, scenario: Scenario, states: Sequence[object], seconds: float) -> LoadResult:
    """Drive `len(states)` VUs for `seconds`; returns when every VU has had its last answer."""
    concurrency = len(states)
    processes = min(concurrency, MAX_PROCESSES)
    chunks = [list(states[i::processes]) for i in range(processes)]
    context = multiprocessing.get_context("fork")
    start_at = time.monotonic() + 0.1 + 0.02 * processes  # every thread starts together
    deadline = start_at + seconds
    pipes, procs = [], []
    for chunk in chunks:
        receiver, sender = context.Pipe(duplex=False)
        proc = context.Process(
            target=_process, args=(port, scenario, chunk, start_at, deadline, sender)
        )
        proc.start()
        sender.close()
        pipes.append(receiver)
        procs.append(proc)
    results = []
    for receiver, proc in zip(pipes, procs, strict=True):
        try:
            results.append(receiver.recv())
        except EOFError:
            raise RuntimeError(f"load generator process {proc.pid} died") from None
        proc.join()
    latencies = array("d")
    for result in results:
        latencies.frombytes(result["latencies"])
    # Put the states back in VU order (chunk i holds VUs i, i + processes, ...).
    new_states: list[object] = [None] * concurrency
    for index, result in enumerate(results):
        new_states[index::processes] = result["states"]
    return LoadResult(
        latencies=list(latencies),
        errors=sum(r["errors"] for r in results),
        served=sum(r["served"] for r in results),
        elapsed=max(r["end"] for r in results) - start_at,
        generator_cpu=sum(r["cpu"] for r in results),
        states=new_states,
    )


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence (NaN when empty)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(fraction * len(sorted_values))))
    return sorted_values[rank - 1]
