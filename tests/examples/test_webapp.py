"""examples/webapp on its own, without authserver: configuration and the checks authlib makes
before any request leaves the app. The full sign-in is tests/flows/test_browser_login.py."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from tests.examples.webapp_process import Webapp
from tests.live import ROOT, free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def webapp_without_provider():
    # Nothing listens on the issuer's port: discovery cannot be fetched.
    with Webapp(f"http://127.0.0.1:{free_port()}", "demo-client") as running:
        yield running


def test_webapp_refuses_to_start_without_its_configuration():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT / "examples" / "webapp",
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "WEBAPP_AUTHSERVER_ISSUER is required" in result.stderr


def test_signed_out_home_page_offers_sign_in(webapp_without_provider):
    page = requests.get(webapp_without_provider.url + "/", timeout=10)
    assert page.status_code == 200
    assert 'href="/login"' in page.text


def test_unreachable_provider_is_a_clear_error_page(webapp_without_provider):
    page = requests.get(webapp_without_provider.url + "/login", timeout=30)
    assert page.status_code == 502
    assert "provider_unavailable" in page.text


def test_callback_it_did_not_start_is_refused(webapp_without_provider):
    forged = requests.get(
        webapp_without_provider.url + "/callback?code=stolen&state=forged", timeout=10
    )
    assert forged.status_code == 400
    assert "mismatching_state" in forged.text
