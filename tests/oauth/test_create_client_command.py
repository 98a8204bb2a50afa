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


def test_json_output_is_clean_as_a_process_and_the_audit_is_still_recorded(child_env):
    """Run as an operator would: stdout is exactly one JSON object, stderr is empty (no audit log
    line that reads like an error), and the client.created event is in the audit table."""
    from audit.models import AuthEvent
    from tests.live import manage

    result = manage(
        "create_client",
        "--name",
        "Scripted",
        "--type",
        "confidential",
        "--grant",
        "client_credentials",
        "--scope",
        "orders:read",
        "--json",
        env=child_env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    data = json.loads(result.stdout)
    assert set(data) >= {"client_id", "client_secret"}
    assert AuthEvent.objects.filter(
        event_type="client.created", client_id=data["client_id"]
    ).exists()
    bad = manage("create_client", "--name", "X", "--type", "public", env=child_env)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr


def test_create_user_prints_one_line(child_env):
    from tests.live import manage

    result = manage(
        "create_user",
        "hal",
        "--email",
        "hal@example.com",
        env=child_env,
        stdin="a long and unusual passphrase\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.strip().startswith("created user hal")
    assert len(result.stdout.strip().splitlines()) == 1


def test_claim_mappings_from_the_command_line():
    data = json.loads(
        run(
            "--name",
            "Reports",
            "--type",
            "confidential",
            "--redirect-uri",
            "https://app.example.com/cb",
            "--grant",
            "authorization_code",
            "--scope",
            "openid groups email",
            "--access-token-claim",
            "roles=groups",
            "--id-token-claim",
            "roles = groups",
            "--userinfo-claim",
            "contact=email",
            "--json",
        )
    )
    assert data["claims"] == {
        "id_token": ["roles = groups"],
        "userinfo": ["contact = email"],
        "access_token": ["roles = groups"],
    }
    client = Client.objects.get(client_id=data["client_id"])
    assert client.access_token_claims == "roles = groups"


@pytest.mark.parametrize(
    ("claim", "message"),
    [("sub=username", "'sub' is a reserved claim"), ("roles=shoe_size", "not a user attribute")],
)
def test_a_bad_claim_mapping_is_a_one_line_command_error(claim, message):
    with pytest.raises(CommandError, match=message):
        run(
            "--name",
            "Reports",
            "--type",
            "confidential",
            "--redirect-uri",
            "https://app.example.com/cb",
            "--grant",
            "authorization_code",
            "--scope",
            "openid groups",
            "--access-token-claim",
            claim,
        )
    assert not Client.objects.exists()
