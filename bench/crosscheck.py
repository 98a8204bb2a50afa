"""`bench/run.py --crosscheck`: the table's figures against wrk's, on one server, in one run.

Issue 7 is checked by driving the same scenarios with an independent load generator against the
same server and comparing with the printed figures. Done by hand minutes apart, that comparison
mixes in the drift of a shared machine; here each round measures the same scenario and
concurrency with our generator (bench/load.py) and with wrk, seconds apart, in forward and
backward order by turns, with the same accounting (server CPU of the gunicorn tree and its
PostgreSQL backends, all pinned to the server core) and the same warm-up. The paired ratio
wrk / ours per round, and its median, tell whether the two agree.

wrk sends the same requests: bench/wrk/refresh.lua chains refresh tokens (each used once),
bench/wrk/login.lua logs the seeded users in by turns, bench/wrk/post.lua sends a fixed POST
(client_credentials, introspection of one access token).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import shutil
import statistics
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import load, run

WRK_DIR = Path(__file__).resolve().parent / "wrk"
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_FAILED = re.compile(r"(\d+) failed responses")


@dataclass
class Pair:
    """One round of one scenario and concurrency: ours, then wrk, or the other way round."""

    scenario: str
    concurrency: int
    ours_ms: float
    wrk_ms: float
    ours_pg_ms: float  # the PostgreSQL backends' share
    wrk_pg_ms: float
    ours_rps: float
    wrk_rps: float
    ours_errors: int
    wrk_errors: int


def wrk_errors(output: str) -> int:
    """Failed requests in wrk's output: non-2xx answers, socket errors, failures a script
    counted (our scripts print "N failed responses"; those overlap non-2xx, so the larger)."""
    non_2xx = sum(int(n) for n in _NON_2XX.findall(output))
    failed = sum(int(n) for n in _FAILED.findall(output))
    sockets = sum(int(n) for match in _SOCKET.findall(output) for n in match)
    return max(non_2xx, failed) + sockets


def wrk_command(
    wrk: str,
    name: str,
    url: str,
    concurrency: int,
    seconds: float,
    seeded: run.Seed,
    token: str,
) -> str:
    """The wrk command line of scenario `name`; `token` is the access token to introspect or a
    comma-separated list of unspent refresh tokens (more than `concurrency`)."""
    # wrk takes whole seconds (-d0.5s is refused); its default 2 s timeout would cut off logins
    # queued behind others at c=32 (our generator waits load.REQUEST_TIMEOUT).
    base = (
        f"{shlex.quote(wrk)} -t1 -c{concurrency} -d{max(1, math.ceil(seconds))}s "
        f"--timeout {load.REQUEST_TIMEOUT:g}s"
    )

    def post(path: str, body: str, auth: str, expect: str) -> str:
        env = f"BENCH_BODY={shlex.quote(body)} BENCH_AUTH={shlex.quote(auth)}"
        env += f" BENCH_EXPECT={shlex.quote(expect)}"  # what bench/load.py's judges look for
        return f"{env} {base} -s {shlex.quote(str(WRK_DIR / 'post.lua'))} {url}{path}"

    if name == "healthz":
        return f"{base} {url}/healthz"
    if name == "jwks":
        return f"{base} {url}/.well-known/jwks.json"
    if name == "login":
        users = shlex.quote(",".join(seeded.usernames))
        env = f"BENCH_USERS={users} BENCH_PASSWORD={shlex.quote(seeded.password)}"
        script = shlex.quote(str(WRK_DIR / "login.lua"))
        return f"{env} {base} -s {script} {url}/api/v1/auth/login"
    if name == "refresh":
        script = shlex.quote(str(WRK_DIR / "refresh.lua"))
        return f"BENCH_TOKENS={shlex.quote(token)} {base} -s {script} {url}/api/v1/auth/refresh"
    if name == "client_credentials":
        auth = load.basic_auth(*seeded.cc_client)
        return post("/oauth/token", "grant_type=client_credentials", auth, '"access_token"')
    if name == "introspection":
        auth = load.basic_auth(*seeded.rs_client)
        return post("/oauth/introspect", f"token={token}", auth, '"active":true')
    raise ValueError(name)


def crosscheck(server: run.Server, seeded: run.Seed, args: argparse.Namespace) -> int:
    wrk = shutil.which("wrk")
    if wrk is None:
        print("bench: --crosscheck needs wrk (apt-get install wrk)")
        return 2
    url = f"http://127.0.0.1:{server.port}"
    # The floor apps are references on servers of their own, not authserver's paths.
    names = [
        n
        for n in args.scenarios
        if n not in run.FLOOR_APPS and (n not in run.OAUTH_SCENARIOS or seeded.oauth)
    ]
    plans = [(name, *run.scenario_for(name, seeded, max(args.concurrency))) for name in names]
    pairs: list[Pair] = []

    def wrk_run(name: str, concurrency: int, seconds: float) -> run.CommandRun:
        token = ""
        if name == "introspection":  # a new one per run, as run.states_renew for ours
            token = run.access_tokens(seeded, 1)[0]
        if name == "refresh":  # a fresh chain per run: wrk does not hand its tokens back
            token = run.refresh_chain_tokens(seeded)
        command = wrk_command(wrk, name, url, concurrency, seconds, seeded, token)
        return run.measure_command(server, command)

    print(
        f"{'scenario':<20}{'conc':>5}{'ours ms/req':>13}{'(PG)':>7}{'wrk ms/req':>12}{'(PG)':>7}"
        f"{'wrk/ours':>10}{'(rounds)':>12}{'ours req/s':>12}{'wrk req/s':>11}  errors"
    )
    for (name, scenario, states), concurrency in run.visit_order(plans, args.concurrency, 1):
        rounds: list[Pair] = []
        complaints: Counter[str] = Counter()
        for round_number in range(1, args.rounds + 1):
            measured: dict[str, object] = {}
            for side in ("ours", "wrk") if round_number % 2 else ("wrk", "ours"):
                if side == "ours":
                    run.states_renew(name, seeded, states)
                    measured[side] = run.measure(server, scenario, states, concurrency, args, [])
                else:
                    if args.warmup > 0:
                        wrk_run(name, concurrency, args.warmup)
                    measured[side] = wrk_run(name, concurrency, run.window_seconds(name, args))
            ours, theirs = measured["ours"], measured["wrk"]
            output = theirs.stdout + theirs.stderr
            complaints.update(line for line in theirs.stderr.splitlines() if line.strip())
            rounds.append(
                Pair(
                    scenario=name,
                    concurrency=concurrency,
                    ours_ms=ours.cpu_ms_per_request,
                    wrk_ms=theirs.cpu_ms_per_request,
                    ours_pg_ms=ours.postgres_ms_per_request,
                    wrk_pg_ms=theirs.postgres_ms_per_request,
                    ours_rps=ours.rps,
                    wrk_rps=theirs.answered / theirs.elapsed if theirs.elapsed else 0.0,
                    ours_errors=ours.errors,
                    wrk_errors=wrk_errors(output),
                )
            )
        pairs += rounds
        print(line(rounds), flush=True)
        for complaint, count in complaints.most_common(3):
            print(f"    wrk stderr ({count}x): {complaint[:100]}")
    Path(args.crosscheck).write_text(json.dumps([asdict(p) for p in pairs], indent=1) + "\n")
    print(f"each round: ours and wrk seconds apart; rounds in {args.crosscheck}")
    return 1 if any(p.ours_errors or p.wrk_errors for p in pairs) else 0


def line(rounds: list[Pair]) -> str:
    """One scenario and concurrency: medians over rounds, and the paired ratios' median and
    range (a range that holds 1.0 means the two generators agree within this machine's noise)."""
    ratios = sorted(p.wrk_ms / p.ours_ms for p in rounds if p.ours_ms > 0)
    first = rounds[0]
    spread = f"{ratios[0]:.2f}-{ratios[-1]:.2f}" if ratios else "n/a"
    errors = sum(p.ours_errors for p in rounds), sum(p.wrk_errors for p in rounds)

    def median(name: str) -> float:
        return statistics.median(getattr(p, name) for p in rounds)

    return (
        f"{first.scenario:<20}{first.concurrency:>5}"
        f"{median('ours_ms'):>13.2f}{median('ours_pg_ms'):>7.2f}"
        f"{median('wrk_ms'):>12.2f}{median('wrk_pg_ms'):>7.2f}"
        f"{statistics.median(ratios) if ratios else float('nan'):>10.2f}{spread:>12}"
        f"{median('ours_rps'):>12.0f}{median('wrk_rps'):>11.0f}  {errors[0]}/{errors[1]}"
    )
