"""`make run PORT=...` (issue 18.6): the development server listens on the port asked for and
the issuer follows it, unless AUTHSERVER_ISSUER is set."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.live import ROOT, base_env, free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def venv(tmp_path) -> Path:
    """A stand-in for the Makefile's .venv: this interpreter, its requirements marked as
    installed (no pip run)."""
    folder = tmp_path / "venv"
    (folder / "bin").mkdir(parents=True)
    python = folder / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    (folder / ".prod-installed").touch()
    return folder


def _make_run(tmp_path: Path, venv: Path, *args: str, **env: str):
    environment = base_env(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", **env)
    for name in ("REDIS_URL", "AUTHSERVER_ISSUER", "PORT"):
        if name not in env:
            environment.pop(name, None)
    return subprocess.Popen(
        [shutil.which("make") or "make", "-s", "run", f"VENV={venv}", *args],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _served_issuer(proc: subprocess.Popen, port: int) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"make run exited: {proc.stdout.read()}")
        try:
            response = requests.get(
                f"http://127.0.0.1:{port}/.well-known/openid-configuration", timeout=2
            )
            return response.json()["issuer"]
        except requests.RequestException:
            time.sleep(0.3)
    raise AssertionError("make run did not serve in time")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_make_run_serves_on_the_port_given_and_the_issuer_follows(tmp_path, venv):
    port = free_port()
    proc = _make_run(tmp_path, venv, f"PORT={port}")
    try:
        assert _served_issuer(proc, port) == f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)
    output = proc.stdout.read()
    assert f"http://127.0.0.1:{port}/admin/" in output


def test_make_run_keeps_an_issuer_set_in_the_environment(tmp_path, venv):
    port = free_port()
    proc = _make_run(tmp_path, venv, f"PORT={port}", AUTHSERVER_ISSUER="http://localhost:9999")
    try:
        assert _served_issuer(proc, port) == "http://localhost:9999"
    finally:
        _stop(proc)


def test_make_run_refuses_a_port_that_is_not_a_number(tmp_path, venv):
    proc = _make_run(tmp_path, venv, "PORT=80;rm")
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "PORT must be a port number" in output
