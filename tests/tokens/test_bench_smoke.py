"""bench/issuance.py still runs (briefly) and prints the figures the issue asks for."""

from __future__ import annotations

import re

import pytest

from tests.live import run_python


@pytest.mark.slow
def test_issuance_bench_runs_and_reports_rates(child_env):
    env = {k: v for k, v in child_env.items() if k != "DJANGO_SETTINGS_MODULE"}
    command = ["bench/issuance.py", "--seconds", "0.4", "--clients", "2", "--reuse-database"]
    result = run_python(*command, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert re.search(r"JWKS under gunicorn .*: [\d,]+ req/s \(0 errors\)", result.stdout)
    assert re.search(r"issuance service .*: [\d,]+ tokens/s", result.stdout)
    assert re.search(r"ratio issuance / raw sign: \d+\.\d\d", result.stdout)
