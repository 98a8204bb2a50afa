"""Tests of the benchmark (bench/)."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping

from tests.live import run_python


def bench_smoke(child_env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`bench/run.py --smoke --reuse-database ARGS` on the test database, as a child process
    (which configures Django itself: the test settings module is not passed on)."""
    env = {k: v for k, v in child_env.items() if k != "DJANGO_SETTINGS_MODULE"}
    return run_python("bench/run.py", "--smoke", "--reuse-database", *args, env=env, timeout=600)
