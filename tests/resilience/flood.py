"""A sign-in flood from its own process (the load's latencies must not include this process's
GIL): COUNT wrong-password sign-ins at once, each from its own address (X-Forwarded-For through
the trusted proxy). The TLS connections are opened first, then every request is sent together.
Prints {"statuses": {status: count}, "sent": t, "done": t} as JSON (t: CLOCK_MONOTONIC, which
every process on the machine shares); a 503 without Retry-After or with another body counts as
status 0.

    python tests/resilience/flood.py BASE CA COUNT USER[,USER...]
"""

from __future__ import annotations

import http.client
import json
import ssl
import sys
import threading
import time
from urllib.parse import urlsplit


def main() -> None:
    base, ca, count, users = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split(",")
    parts = urlsplit(base)
    # One TLS context for every connection (each is still its own TLS session, as separate
    # clients are): loading the CA file per request would make this client, not the server,
    # the bottleneck on a small machine.
    context = ssl.create_default_context(cafile=ca)
    statuses: list[int] = []
    sent: list[float] = []
    barrier = threading.Barrier(count, action=lambda: sent.append(time.monotonic()))

    def attempt(i: int) -> None:
        body = json.dumps({"username": users[i % len(users)], "password": f"wrong-{i}-guess"})
        connection = http.client.HTTPSConnection(
            parts.hostname, parts.port, context=context, timeout=60
        )
        try:
            connection.connect()
            barrier.wait()
            connection.request(
                "POST",
                "/api/v1/auth/login",
                body=body,
                headers={
                    "Content-Type": "application/json",
                    "X-Forwarded-For": f"198.51.{100 + i // 250}.{i % 250 + 1}",
                },
            )
            response = connection.getresponse()
            status = response.status
            payload = response.read()
            if status == 503 and (
                not response.getheader("Retry-After")
                or json.loads(payload).get("error") != "temporarily_unavailable"
            ):
                status = 0
        except (OSError, http.client.HTTPException, threading.BrokenBarrierError):
            status = -1
        finally:
            connection.close()
        statuses.append(status)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done = time.monotonic()
    counts = {str(s): statuses.count(s) for s in sorted(set(statuses))}
    print(json.dumps({"statuses": counts, "sent": sent[0] if sent else done, "done": done}))


if __name__ == "__main__":
    main()
