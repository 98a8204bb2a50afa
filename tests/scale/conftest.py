from __future__ import annotations

import pytest

from accounts.services import user_create
from authserver import settings as app_settings
from tests.conftest import PASSWORD


@pytest.fixture
def production_hashers(settings):
    """authserver child processes run the production hasher list: hash test passwords with it."""
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS


@pytest.fixture
def make_account(child_env, production_hashers):
    def make(username: str, **extra):
        return user_create(
            username=username, email=f"{username}@example.com", password=PASSWORD, **extra
        )

    return make
