"""`manage.py create_client`: the documented flags, JSON output, the secret printed once."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from oauth.models import Client

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command("create_client", *args, stdout=out)
    return out.getvalue()


def test_confidential_client_json():
    output = run(
        "--name",
        "Web App",
        "--type",
        "confidential",
        "--redirect-uri",
        "https://app.example.com/cb",
        "--redirect-uri",
        "https://app.example.com/cb2",
        "--grant",
        "authorization_code",
        "--grant",
        "refresh_token",
        "--scope",
        "openid profile",
        "--scope",
        "offline_access",
        "--post-logout-redirect-uri",
        "https://app.example.com/bye",
        "--json",
    )
    data = json.loads(output)
    client = Client.objects.get(client_id=data["client_id"])
    assert client.check_client_secret(data["client_secret"])
    assert data["redirect_uris"] == ["https://app.example.com/cb", "https://app.example.com/cb2"]
    assert data["grant_types"] == ["authorization_code", "refresh_token"]
    assert data["scope"] == "openid profile offline_access"
    assert data["pkce_required"] is True and client.pkce_required
    assert client.post_logout_redirect_uri_list == ["https://app.example.com/bye"]


def test_public_client_has_null_secret():
    data = json.loads(
        run(
            "--name",
            "SPA",
            "--type",
            "public",
            "--redirect-uri",
            "http://127.0.0.1:5173/cb",
            "--grant",
            "authorization_code",
            "--scope",
            "openid",
            "--json",
        )
    )
    assert data["client_secret"] is None


def test_machine_client_options():
    data = json.loads(
        run(
            "--name",
            "Billing",
            "--type",
            "confidential",
            "--grant",
            "client_credentials",
            "--scope",
            "invoices:read",
            "--audience",
            "https://billing.example.com",
            "--access-token-lifetime",
            "120",
            "--resource-server",
            "--json",
        )
    )
    client = Client.objects.get(client_id=data["client_id"])
    assert client.audience_list == ["https://billing.example.com"]
    assert client.access_token_lifetime == 120 and client.is_resource_server


def test_no_pkce_exempts_a_confidential_client():
    args = ["--redirect-uri", "https://a.example.com/cb", "--grant", "authorization_code"]
    data = json.loads(
        run("--name", "Legacy", "--type", "confidential", *args, "--no-pkce", "--json")
    )
    assert data["pkce_required"] is False
    assert Client.objects.get().pkce_required is False


def test_text_output_mentions_the_secret_once():
    output = run(
        "--name",
        "A",
        "--type",
        "confidential",
        "--redirect-uri",
        "https://a.example.com/cb",
        "--grant",
        "authorization_code",
        "--first-party",
    )
    assert output.count("client_secret:") == 1
    assert Client.objects.get().skip_consent


@pytest.mark.parametrize(
    "args",
    [
        ["--name", "A", "--type", "public", "--grant", "implicit"],
        ["--name", "A", "--type", "public", "--grant", "authorization_code"],
        [
            "--name",
            "A",
            "--type",
            "public",
            "--grant",
            "authorization_code",
            "--redirect-uri",
            "https://a.example.com/cb",
            "--no-pkce",
        ],
        [
            "--name",
            "A",
            "--type",
            "confidential",
            "--grant",
            "authorization_code",
            "--redirect-uri",
            "https://a.example.com/*",
        ],
    ],
)
def test_errors_are_one_line(args):
    with pytest.raises(CommandError) as excinfo:
        run(*args)
    assert "\n" not in str(excinfo.value)
    assert not Client.objects.exists()
