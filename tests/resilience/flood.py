"""A sign-in flood from its own process (the load's latencies must not include this process's
GIL): COUNT wrong-password sign-ins at once, each from its own address (X-Forwarded-For through
the trusted proxy). The TLS connections are opened first, then every request is sent together.
Prints {"statuses": {status: count}, "sent": t, "done": t, "cpu": s} as JSON (t:
CLOCK_MONOTONIC, which every process on the machine shares; s: this process's CPU seconds from
the first request sent to the last answer read); a 503 without Retry-After or with another body
counts as status 0.

One thread sends and reads everything. An attacker's machine spends its own CPU, not the
server's; here the flood shares the server's two cores, so it must cost as little as it can:
with a thread per request the 200 threads woke together and took 0.15-0.23 s of CPU after the
send, most of it in the first 0.1 s, and that burst alone lifted the load's latencies by
100-200 ms. One thread writes the 200 requests in a few milliseconds (more at once than threads
scheduled one by one) and then reads the answers in turn: each is buffered by the kernel when
it arrives, so the last read ends when the last answer is in.

    python tests/resilience/flood.py BASE CA COUNT USER[,USER...]
"""

from __future__ import annotations

import http.client
import json
import resource
import ssl
import sys
import time
from urllib.parse import urlsplit


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def status_of(connection: http.client.HTTPSConnection) -> int:
    """The answer's status; 0 for a 503 without Retry-After or the JSON refusal, -1 for none."""
    try:
        response = connection.getresponse()
        status = response.status
        payload = response.read()
        if status == 503 and (
            not response.getheader("Retry-After")
            or json.loads(payload).get("error") != "temporarily_unavailable"
        ):
            status = 0
        return status
    except (OSError, http.client.HTTPException, ValueError):
        return -1
    finally:
        connection.close()


def main() -> None:
    base, ca, count, users = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split(",")
    parts = urlsplit(base)
    # One TLS context for every connection (each is still its own TLS session, as separate
    # clients are): loading the CA file per request would make this client, not the server,
    # the bottleneck on a small machine.
    context = ssl.create_default_context(cafile=ca)
    connections: list[http.client.HTTPSConnection | None] = []
    for _ in range(count):
        connection = http.client.HTTPSConnection(
            parts.hostname, parts.port, context=context, timeout=60
        )
        try:
            connection.connect()
        except OSError:
            connection = None
        connections.append(connection)

    sent = time.monotonic()
    cpu_at_send = cpu_seconds()
    for i, connection in enumerate(connections):
        if connection is None:
            continue
        body = json.dumps({"username": users[i % len(users)], "password": f"wrong-{i}-guess"})
        try:
            # A bytes body goes out in the same write as the headers (http.client).
            connection.request(
                "POST",
                "/api/v1/auth/login",
                body=body.encode(),
                headers={
                    "Content-Type": "application/json",
                    "X-Forwarded-For": f"198.51.{100 + i // 250}.{i % 250 + 1}",
                },
            )
        except (OSError, http.client.HTTPException):
            connection.close()
            connections[i] = None
    statuses = [status_of(c) if c is not None else -1 for c in connections]
    done = time.monotonic()
    counts = {str(s): statuses.count(s) for s in sorted(set(statuses))}
    print(
        json.dumps(
            {"statuses": counts, "sent": sent, "done": done, "cpu": cpu_seconds() - cpu_at_send}
        )
    )


if __name__ == "__main__":
    main()
