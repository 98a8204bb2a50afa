"""Several authserver processes start at the same moment on an empty key store: exactly one
creates the first signing key, and every one of them signs with it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from audit.models import AuthEvent
from tests.live import ROOT
from tokens.models import SigningKey

pytestmark = pytest.mark.slow

PROCESSES = 4

# What an instance does on its first request (/readyz, or the first token it signs): load the
# key ring, creating the first key if the store has never held one. Every process imports
# Django, says it is ready, and spins until the go file appears, so all of them find the store
# empty and start together however slowly each one started up.
STARTER = """
import json, os, sys, time
import django
django.setup()
from django.db import connection
connection.ensure_connection()
from tokens.keys import active_signing_key, keystore_state
print("ready", flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.001)
ready, reason = keystore_state()
print(json.dumps({"ready": ready, "kid": active_signing_key().kid if ready else None}))
"""


def test_processes_starting_together_create_one_first_key(child_env, tmp_path):
    assert not SigningKey.objects.exists()
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", STARTER, str(go)],
            cwd=ROOT,
            env=child_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    go.touch()
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
