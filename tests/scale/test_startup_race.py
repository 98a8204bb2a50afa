"""Several authserver processes start at the same moment on an empty key store: exactly one
creates the first signing key, and every one of them signs with it."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from audit.models import AuthEvent
from tests.live import ROOT
from tokens.models import SigningKey

pytestmark = pytest.mark.slow

PROCESSES = 4

# What an instance does on its first request (/readyz, or the first token it signs): load the
# key ring, creating the first key if the store has never held one. Every process waits for
# the same wall-clock instant, so all of them find the store empty.
STARTER = """
import json, sys, time
import django
django.setup()
from tokens.keys import active_signing_key, keystore_state
start_at = float(sys.argv[1])
while time.time() < start_at:
    time.sleep(0.001)
ready, reason = keystore_state()
print(json.dumps({"ready": ready, "kid": active_signing_key().kid if ready else None}))
"""


def test_processes_starting_together_create_one_first_key(child_env):
    assert not SigningKey.objects.exists()
    start_at = time.time() + 4  # after every interpreter has imported Django
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", STARTER, str(start_at)],
            cwd=ROOT,
            env=child_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))

    assert all(result["ready"] for result in results), results
    assert len({result["kid"] for result in results}) == 1, results
    assert SigningKey.objects.count() == 1
    assert SigningKey.objects.get().state == "active"
    first_key_events = AuthEvent.objects.filter(
        event_type="key.rotated", details__reason="first key"
    )
    assert first_key_events.count() == 1
