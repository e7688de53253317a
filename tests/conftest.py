"""Shared fixtures: one user per role, clients signed in as them, fast hashing."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.cache import cache
from django.test import Client

from opsconsole.auth import ROLES

from .factories import UserFactory

ROOT = Path(__file__).resolve().parent.parent
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
    """Each test starts with empty caches: Django's, API keys', the serving rules',
    the model versions'."""
    from explanations.selectors import forget_model_versions
    from opsconsole import auth
    from overrides import serving

    cache.clear()
    auth._key_cache.clear()
    serving.forget_ruleset()
    forget_model_versions()
    yield
    cache.clear()
    auth._key_cache.clear()
    serving.forget_ruleset()
    forget_model_versions()


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


def start_celery_worker(
    queue: str, log_path: Path, *, extra_env: dict | None = None
) -> subprocess.Popen:
    """Start a real Celery worker on the test database; return once it is ready."""
    from django.db import connection

    database = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": (
            f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/"
            f"{database['NAME']}"
        ),
        "CELERY_QUEUE": queue,
        **(extra_env or {}),
    }
    with open(log_path, "a") as log:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "opsconsole",
                "worker",
                "--pool=solo",
                "-Q",
                queue,
                "--loglevel=INFO",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    ready_before = log_path.read_text().count(" ready.")
    deadline = time.monotonic() + 60
    while log_path.read_text().count(" ready.") <= ready_before:
        if worker.poll() is not None or time.monotonic() > deadline:
            worker.kill()
            raise RuntimeError(f"Celery worker did not start:\n{log_path.read_text()}")
        time.sleep(0.2)
    return worker


def stop_celery_worker(worker: subprocess.Popen) -> None:
    worker.terminate()
    try:
        worker.wait(timeout=20)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


@pytest.fixture
def celery_worker(transactional_db, tmp_path):
    """A real Celery worker process on this test database and Redis (services pass).

    Yields the queue name to send tasks to; the worker is stopped before the test
    database is flushed.
    """
    queue = f"opsconsole-test-{os.getpid()}"
    worker = start_celery_worker(queue, tmp_path / "worker.log")
    yield queue
    stop_celery_worker(worker)


def wait_until(condition, *, timeout: float = 20.0, interval: float = 0.1):
    """Poll `condition()` until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


@pytest.fixture
def api_key_for(db):
    """`api_key_for(*scopes, **options)`: a raw API key with those scopes."""
    from opsconsole.services import api_key_create

    counter = iter(range(1, 1000))

    def _make(*scopes: str, **options) -> str:
        _key, raw_key = api_key_create(
            name=f"test-key-{next(counter)}", scopes=list(scopes), **options
        )
        return raw_key

    return _make


@pytest.fixture
def serving_client(api_key_for):
    """A test client that sends a `serving:read` key on every request."""
    return Client(HTTP_AUTHORIZATION=f"Bearer {api_key_for('serving:read')}")
