"""A live console, a serving key, and clients that are always closed after a test."""

import contextlib
import itertools
import threading

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.db import connection

from opsconsole.services import api_key_create
from opsconsole_client import OverridesClient
from overrides import serving

# Nothing listens on the discard port: connections to it are refused at once.
DEAD_CONSOLE_URL = "http://127.0.0.1:9"

_key_names = itertools.count()


@pytest.fixture(autouse=True)
def _forget_server_ruleset():
    """The server caches its RuleSet per process; each test starts from its own DB."""
    serving.forget_ruleset()
    yield
    serving.forget_ruleset()


@pytest.fixture
def api_key(transactional_db):
    _key, raw_key = api_key_create(
        name=f"serving-client-{next(_key_names)}", scopes=["serving:read"]
    )
    return raw_key


@pytest.fixture
def db_turn(live_server, monkeypatch):
    """`with db_turn():` around the test's own queries while a client is running.

    With SQLite in memory, the live server's threads share the test's one connection,
    so overlapping queries see each other's open transactions (and SQLite refuses a
    savepoint while another statement runs). Requests and the test's queries then
    take turns. On PostgreSQL every thread has its own connection: nothing to do.
    """
    if not (connection.vendor == "sqlite" and connection.is_in_memory_db()):
        return contextlib.nullcontext
    turn = threading.RLock()
    handle = WSGIHandler.__call__

    def one_request_at_a_time(self, environ, start_response):
        with turn:
            return handle(self, environ, start_response)

    monkeypatch.setattr(WSGIHandler, "__call__", one_request_at_a_time)
    return lambda: turn


@pytest.fixture
def make_client(live_server, api_key, db_turn):
    """`make_client(**options)`: a client on the live console, closed at teardown.

    Defaults poll fast and never refresh or heartbeat on their own during a test, so
    a test sees only the traffic it causes.
    """
    clients = []

    def make(base_url=None, key=None, **options):
        options.setdefault("poll_interval", 0.05)
        options.setdefault("refresh_interval", 300.0)
        options.setdefault("heartbeat_interval", 300.0)
        client = OverridesClient(
            live_server.url if base_url is None else base_url,
            api_key if key is None else key,
            **options,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def request_log():
    """`request_log(session)`: record every URL the session fetches (GET and POST)."""

    def spy(session):
        urls = []
        for method in ("get", "post"):
            original = getattr(session, method)

            def recording(url, *args, _original=original, **kwargs):
                params = kwargs.get("params")
                urls.append((url, dict(params or {})))
                return _original(url, *args, **kwargs)

            setattr(session, method, recording)
        return urls

    return spy
