"""Run examples/webapp (the relying-party demo) as a real process for black-box tests."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from tests.live import BIN, ROOT, free_port


class Webapp:
    """examples/webapp under gunicorn on 127.0.0.1, addressed as http://localhost:<port> so the
    browser treats it as another site than authserver on 127.0.0.1."""

    def __init__(self, issuer: str, client_id: str, client_secret: str = "", port: int = 0):
        self.port = port or free_port()
        self.url = f"http://localhost:{self.port}"
        # Nothing of authserver's or the test run's configuration leaks into the app.
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("DJANGO_", "AUTHSERVER_", "PYTEST_", "DATABASE_", "REDIS_"))
            and key != "SECRET_KEY"
        }
        self.env.update(
            DJANGO_SETTINGS_MODULE="webapp.settings",
            WEBAPP_AUTHSERVER_ISSUER=issuer,
            WEBAPP_CLIENT_ID=client_id,
            WEBAPP_CLIENT_SECRET=client_secret,
            PYTHONUNBUFFERED="1",
        )
        self.log = tempfile.NamedTemporaryFile(prefix="webapp-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Webapp:
        self.proc = subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                "webapp.wsgi",
                "--chdir",
                str(ROOT / "examples" / "webapp"),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "1",
            ],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("webapp exited early:\n" + self.output())
            try:
                requests.get(self.url + "/", timeout=1)
                return self
            except requests.RequestException:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("webapp did not start:\n" + self.output())

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
