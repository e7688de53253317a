"""Shared fixtures: one user per role, clients signed in as them, fast hashing."""

import os

import pytest
from django.core.cache import cache
from django.test import Client

from opsconsole.auth import ROLES

from .factories import UserFactory

SERVICES_CONFIGURED = bool(os.environ.get("REDIS_URL")) and os.environ.get(
    "DATABASE_URL", ""
).startswith("postgres")


def pytest_collection_modifyitems(config, items):
    """Tests marked `services` run only against PostgreSQL + Redis (second pass)."""
    if SERVICES_CONFIGURED:
        return
    selected = [item for item in items if "services" not in item.keywords]
    deselected = [item for item in items if "services" in item.keywords]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _clean_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def users(db):
    """One user per role, keyed by role name."""
    return {
        role: UserFactory(username=role.replace("_", "-"), role=role) for role in ROLES
    }


@pytest.fixture
def agent(users):
    return users["support_agent"]


@pytest.fixture
def manager(users):
    return users["account_manager"]


@pytest.fixture
def officer(users):
    return users["privacy_officer"]


@pytest.fixture
def admin_user(users):
    return users["admin"]


def _client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def client_for():
    """`client_for(user)`: a test client signed in as that user."""
    return _client_for
