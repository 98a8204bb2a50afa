"""bench/client_credentials.py still runs (briefly) and prints the figure the issue asks for."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.live import ROOT


@pytest.mark.slow
def test_client_credentials_bench_runs(child_env):
    env = {k: v for k, v in child_env.items() if k != "DJANGO_SETTINGS_MODULE"}
    command = [
        "bench/client_credentials.py",
        "--seconds",
        "0.5",
        "--clients",
        "2",
        "--reuse-database",
    ]
    result = subprocess.run(
        [sys.executable, *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(
        r"client_credentials under gunicorn .*: [\d,]+ tokens/s \(\d+ tokens, 0 errors\)",
        result.stdout,
    ), result.stdout
