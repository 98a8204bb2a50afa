"""The OAuth setting: bounded, refused with one line naming it."""

from __future__ import annotations

import pytest

from tests.live import base_env, manage


@pytest.mark.parametrize("value", ["ten", "10", "7200"])
def test_id_token_ttl_out_of_bounds_is_refused(value):
    # 7200 exceeds the default AUTHSERVER_SIGNED_TOKEN_MAX_LIFETIME (3600).
    result = manage("check", env=base_env(AUTHSERVER_ID_TOKEN_TTL=value))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "AUTHSERVER_ID_TOKEN_TTL" in lines[0], result.stderr


def test_id_token_ttl_within_bounds():
    env = base_env(AUTHSERVER_ID_TOKEN_TTL="900")
    result = manage(
        "shell",
        "-c",
        "from authserver.conf import get_config; print(get_config().id_token_ttl)",
        "--no-imports",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "900"
