"""The load generator: closed-loop virtual users on keep-alive HTTP/1.1 connections.

Each virtual user (VU) sends its next request as soon as the previous answer arrived, for a fixed
time. VUs are spread over a few (by default two) forked processes, all pinned to the load
generator's core; each process serves its VUs from one event loop over non-blocking reads (as
wrk does), not a thread per VU. A VU carries a state: the user it logs in as, the refresh token
its previous response returned, the access token it introspects.

Only the standard library is used here, so the generator costs little per request: one request
written, one response parsed (Content-Length or chunked), a status check, and for the refresh
chain one small json.loads. A server that closes the connection (gunicorn's sync workers) gets a
new one for the next request.
"""

from __future__ import annotations

import base64
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import selectors
import socket
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode

REQUEST_TIMEOUT = 30.0
# Generator processes (all on the generator's core; `--generator-processes` changes it). The
# gap to wrk once blamed on their number came from how the connections spread over several
# gunicorn workers (bench/README.md "Workers per core"); with one worker per core the two
# generators agree, and 2 stays as the lighter setting.
PROCESSES = 2
TICK_SECONDS = 0.05
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


def floor(name: str) -> Scenario:
    """GET /healthz of a floor app (bench/floor_django, bench/floor_wsgi.py): the same request
    as the healthz scenario, sent to another server."""
    return Scenario(name, lambda state: ("GET", "/healthz", None, {}), _ok_200)


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


def userinfo() -> Scenario:
    """GET /oauth/userinfo with a user's access token (state) carrying the openid scope."""

    def build(token: object) -> Request:
        return "GET", "/oauth/userinfo", None, {"Authorization": f"Bearer {token}"}

    def judge(status: int, body: bytes, state: object) -> Outcome:
        return status == 200 and b'"sub"' in body, state, True

    return Scenario("userinfo", build, judge)


@dataclass
class LoadResult:
    latencies: list[float]  # seconds, of every answered request
    errors: int  # failed requests (wrong status or body, connection errors)
    served: int  # requests the server answered (counted in its CPU)
    elapsed: float  # wall seconds from the common start to the last answer
    generator_cpu: float  # CPU seconds of the load generator processes
    states: list[object] = field(default_factory=list)


def _request_bytes(request: Request) -> bytes:
    method, path, body, headers = request
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


class _BadResponse(Exception):
    pass


def parse_response(buffer: bytes | bytearray) -> tuple[int, bytes, int, bool] | None:
    """(status, body, bytes used, server closes) of the first whole HTTP/1.1 response in
    `buffer`, or None while it is incomplete. Content-Length and chunked bodies."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    try:
        status = int(head[0].split(" ", 2)[1])
    except (IndexError, ValueError):
        raise _BadResponse(head[0][:80]) from None
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    closes = headers.get("connection") == "close"
    position = end + 4
    if headers.get("transfer-encoding") == "chunked":
        body = bytearray()
        while True:
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                return None
            size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
            position = line_end + 2
            if size == 0:
                trailer_end = buffer.find(b"\r\n", position)
                if trailer_end < 0:
                    return None
                return status, bytes(body), trailer_end + 2, closes
            if len(buffer) < position + size + 2:
                return None
            body += buffer[position : position + size]
            position += size + 2
    length = int(headers.get("content-length", "0"))
    if len(buffer) < position + length:
        return None
    return status, bytes(buffer[position : position + length]), position + length, closes


_NOT_BUILT = object()


class _Vu:
    """One virtual user: a keep-alive connection and the state of its chain."""

    __slots__ = ("buffer", "done", "request", "request_of", "sent_at", "sock", "state")

    def __init__(self, state: object):
        self.state = state
        self.request = b""  # the request bytes built for the state `request_of`
        self.request_of: object = _NOT_BUILT
        self.sock: socket.socket | None = None
        self.buffer = bytearray()
        self.sent_at = 0.0
        self.done = False


def _process(
    port: int,
    scenario: Scenario,
    states: Sequence[object],
    start_at: float,
    deadline: float,
    pipe,
) -> None:
    """The VUs of one process, on one event loop over their sockets: each VU sends its next
    request as soon as its answer is in, and no VU waits for another's turn at a lock (threads
    blocked in recv had to take the GIL in turn to read their answers, which at 32 VUs left the
    server short of work for whole milliseconds)."""
    selector = selectors.DefaultSelector()
    vus = [_Vu(state) for state in states]
    latencies = array("d")
    errors = served = 0
    clock = time.perf_counter

    def send(vu: _Vu) -> bool:
        try:
            if vu.sock is None:
                vu.sock = socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT)
                vu.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                selector.register(vu.sock, selectors.EVENT_READ, vu)
            if vu.request_of is not vu.state:  # built once per state, not once per request
                vu.request = _request_bytes(scenario.build(vu.state))
                vu.request_of = vu.state
            vu.buffer.clear()
            vu.sent_at = clock()
            vu.sock.sendall(vu.request)
        except OSError:
            return False
        return True

    def close(vu: _Vu) -> None:
        if vu.sock is not None:
            selector.unregister(vu.sock)
            vu.sock.close()
            vu.sock = None

    def failed(vu: _Vu) -> None:
        nonlocal errors
        errors += 1
        close(vu)
        if scenario.stateful:  # the token may have been spent: the chain is broken
            vu.done = True

    def next_request(vu: _Vu) -> None:
        while not vu.done and time.monotonic() < deadline:
            if send(vu):
                return
            failed(vu)
        vu.done = True
        close(vu)

    pause = start_at - time.monotonic()
    if pause > 0:
        time.sleep(pause)
    for vu in vus:
        next_request(vu)
    while any(not vu.done for vu in vus):
        events = selector.select(timeout=REQUEST_TIMEOUT)
        if not events:  # nothing answered for REQUEST_TIMEOUT: every waiting VU failed
            for vu in vus:
                if not vu.done:
                    failed(vu)
                    vu.done = True
            break
        for key, _mask in events:
            vu = key.data
            try:
                data = vu.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                failed(vu)
                next_request(vu)
                continue
            vu.buffer += data
            try:
                parsed = parse_response(vu.buffer)
            except (_BadResponse, ValueError):
                failed(vu)
                next_request(vu)
                continue
            if parsed is None:
                continue
            status, body, _used, closes = parsed
            latencies.append(clock() - vu.sent_at)
            served += 1
            ok, vu.state, usable = scenario.judge(status, body, vu.state)
            if closes:
                close(vu)
            if not ok:
                errors += 1
                if not usable:
                    vu.done = True
                    close(vu)
                    continue
            next_request(vu)
    end = time.monotonic()
    for vu in vus:
        close(vu)
    selector.close()
    times = os.times()
    pipe.send(
        {
            "latencies": latencies.tobytes(),
            "errors": errors,
            "served": served,
            "end": end,
            "states": [vu.state for vu in vus],
            "cpu": times.user + times.system,
        }
    )
    pipe.close()


def run(
    port: int,
    scenario: Scenario,
    states: Sequence[object],
    seconds: float,
    tick: Callable[[], object] | None = None,
    processes: int = PROCESSES,
) -> LoadResult:
    """Drive `len(states)` VUs for `seconds`; returns when every VU has had its last answer.
    `tick` is called every TICK_SECONDS in this (the parent) process while the VUs run."""
    concurrency = len(states)
    processes = max(1, min(concurrency, processes))
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
    received: dict[object, dict] = {}
    while len(received) < len(pipes):
        waiting = [receiver for receiver in pipes if receiver not in received]
        for receiver in multiprocessing.connection.wait(waiting, timeout=TICK_SECONDS):
            try:
                received[receiver] = receiver.recv()
            except EOFError:
                proc = procs[pipes.index(receiver)]
                raise RuntimeError(f"load generator process {proc.pid} died") from None
        if tick is not None:
            tick()
    for proc in procs:
        proc.join()
    results = [received[receiver] for receiver in pipes]
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
