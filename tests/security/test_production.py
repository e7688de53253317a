"""Production mode: security headers, caching rule, sessions, login throttling,
password hashing, error pages, request ids, JSON logs and /metrics."""

import json
import logging
import os
import re
import subprocess
import sys
import time

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from opsconsole import metrics
from opsconsole.logs import ConsoleJsonFormatter, RequestIdFilter, request_id_var
from opsconsole.middleware import SESSION_SEEN_KEY, SESSION_STARTED_KEY
from tests.conftest import ROOT
from tests.factories import PASSWORD
from tests.security.conftest_matrix import age_session, metric_value

pytestmark = pytest.mark.django_db

PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "x7Rk2pVq9LmZ4tYw8NcB3hJd6FsQ1aGe5UoXiTlKvMnCbWyRzPq",
    "ALLOWED_HOSTS": "console.example.com",
    "CUSTOMER_ID_HMAC_KEY": "a" * 64,
    "CUSTOMER_ID_ENCRYPTION_KEY": "b" * 64,
}


def _production_env(tmp_path) -> dict[str, str]:
    return {
        **{
            k: v
            for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "REDIS_URL")
        },
        **PRODUCTION_ENV,
        "OPSCONSOLE_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "opsconsole.settings",
    }


@pytest.fixture(scope="module")
def static_root(tmp_path_factory):
    """collectstatic as production runs it (compressed manifest storage), once."""
    root = tmp_path_factory.mktemp("static")
    env = {**_production_env(root), "STATIC_ROOT": str(root / "static")}
    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return root / "static"


def _production_python(code: str, tmp_path, static_root=None):
    """Run `code` after django.setup() with DEBUG=0 settings (a fresh process: the
    settings module reads the environment once)."""
    env = _production_env(tmp_path)
    if static_root is not None:
        env["STATIC_ROOT"] = str(static_root)
    script = "import django\ndjango.setup()\n" + code
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


# Headers ---------------------------------------------------------------------------


def test_page__any__csp_without_unsafe_inline_and_frame_ancestors_none(client, agent):
    client.force_login(agent)
    response = client.get(reverse("dashboard"))
    policy = response["Content-Security-Policy"]
    directives = dict(
        (part.split()[0], part.split()[1:]) for part in policy.split("; ")
    )
    assert directives["script-src"] == ["'self'"]
    # Styles: files, and shap's two fixed force-plot stylesheets by hash
    assert directives["style-src"][0] == "'self'"
    assert len(directives["style-src"]) == 3
    assert all(source.startswith("'sha256-") for source in directives["style-src"][1:])
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["object-src"] == ["'none'"]
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_production_settings__hsts_secure_cookies_argon2_first(tmp_path):
    result = _production_python(
        "from django.conf import settings as s\n"
        "import json\n"
        "print(json.dumps([s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS,"
        " s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT,"
        " s.PASSWORD_HASHERS[0], s.DEBUG, s.LOG_FORMAT,"
        " s.STORAGES['staticfiles']['BACKEND']]))\n",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [
        31536000,
        True,
        True,
        True,
        True,
        "django.contrib.auth.hashers.Argon2PasswordHasher",
        False,
        "json",
        "whitenoise.storage.CompressedManifestStaticFilesStorage",
    ]


def test_production__https_response__carries_hsts(tmp_path):
    result = _production_python(
        "from django.test import Client\n"
        "r = Client().get('/healthz', secure=True, HTTP_HOST='console.example.com')\n"
        "print(r.status_code, r['Strict-Transport-Security'])\n",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        "200 max-age=31536000; includeSubDomains; preload"
    )


def test_static_files__production__whitenoise_hashed_compressed_cached(
    tmp_path, static_root
):
    result = _production_python(
        "from django.test import Client\n"
        "from django.templatetags.static import static\n"
        "url = static('css/console.css')\n"
        "c = Client(HTTP_HOST='console.example.com')\n"
        "r = c.get(url, secure=True, HTTP_ACCEPT_ENCODING='gzip')\n"
        "print(url, r.status_code, r['Cache-Control'], r.get('Content-Encoding'),"
        " sep='|')\n",
        tmp_path,
        static_root,
    )
    assert result.returncode == 0, result.stderr
    last_line = result.stdout.strip().splitlines()[-1]
    url, status, cache_control, encoding = last_line.split("|")
    assert re.fullmatch(r"/static/css/console\.[0-9a-f]{12}\.css", url)
    assert status == "200" and encoding == "gzip"
    assert "immutable" in cache_control


# Caching rule ----------------------------------------------------------------------


def test_cache_control__pages_and_api__no_store_unless_view_chose(
    client, agent, officer, serving_client
):
    client.force_login(agent)
    for url in (
        reverse("dashboard"),
        reverse("explanations:lookup"),
        "/api/v1/blocks",
        "/no-such-page/",
    ):
        assert "no-store" in client.get(url)["Cache-Control"], url
    client.force_login(officer)
    assert "no-store" in client.get(reverse("privacy:optouts"))["Cache-Control"]
    # The snapshot holds rules only and is revalidated by ETag: its own choice stays.
    assert serving_client.get("/api/v1/serving/snapshot")["Cache-Control"] == (
        "no-cache"
    )


# Request ids and logs ----------------------------------------------------------


def test_request_id__sane_incoming__echoed(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="edge-7f3a.1")
    assert response["X-Request-ID"] == "edge-7f3a.1"


@pytest.mark.parametrize("incoming", ["", "a" * 200, "bad id\nINFO forged", "ü"])
def test_request_id__missing_or_unsafe__replaced_by_a_new_one(client, incoming):
    response = client.get("/healthz", HTTP_X_REQUEST_ID=incoming)
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])


def test_request_id__two_requests__differ(client):
    assert (
        client.get("/healthz")["X-Request-ID"]
        != (client.get("/healthz")["X-Request-ID"])
    )


def test_access_log__request__json_line_with_its_request_id(client, caplog):
    caplog.set_level(logging.INFO, logger="opsconsole.access")
    response = client.get("/healthz", HTTP_X_REQUEST_ID="req-42")
    records = [r for r in caplog.records if r.name == "opsconsole.access"]
    assert len(records) == 1
    line = json.loads(ConsoleJsonFormatter().format(records[0]))
    assert line["request_id"] == "req-42" == response["X-Request-ID"]
    assert line["route"] == "healthz" and line["status"] == 200
    assert line["method"] == "GET" and line["level"] == "INFO"
    assert line["time"].endswith("Z") and line["duration_ms"] >= 0


def test_json_formatter__exception__one_line_with_traceback():
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom %s", (1,), None)
    try:
        raise ValueError("inner")
    except ValueError:
        record.exc_info = sys.exc_info()
    token = request_id_var.set("rid-1")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id_var.reset(token)
    text = ConsoleJsonFormatter().format(record)
    assert "\n" not in text
    line = json.loads(text)
    assert line["message"] == "boom 1" and line["request_id"] == "rid-1"
    assert "ValueError: inner" in line["exception"]


def test_celery_task__enqueued_in_a_request__carries_its_request_id():
    from opsconsole.logs import REQUEST_ID_HEADER, _add_request_id_header

    headers = {}
    token = request_id_var.set("req-task")
    try:
        _add_request_id_header(headers=headers)
    finally:
        request_id_var.reset(token)
    assert headers == {REQUEST_ID_HEADER: "req-task"}


# Sessions --------------------------------------------------------------------------


def test_session__idle_past_limit__signed_out(client, agent, settings):
    settings.SESSION_IDLE_SECONDS = 600
    client.force_login(agent)
    now = time.time()
    age_session(client, started=now - 700, seen=now - 601)
    response = client.get(reverse("dashboard"))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_session__active_within_limits__stays_signed_in(client, agent, settings):
    settings.SESSION_IDLE_SECONDS = 600
    client.force_login(agent)
    now = time.time()
    age_session(client, started=now - 3000, seen=now - 300)
    assert client.get(reverse("dashboard")).status_code == 200
    # The idle clock moved (written at most once a minute)
    assert client.session[SESSION_SEEN_KEY] > now - 5


def test_session__past_absolute_limit__signed_out_even_if_active(
    client, agent, settings
):
    settings.SESSION_COOKIE_AGE = 3600
    client.force_login(agent)
    now = time.time()
    age_session(client, started=now - 3601, seen=now - 1)
    response = client.get(reverse("dashboard"))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_session__login__starts_both_clocks(client, agent):
    client.force_login(agent)
    assert abs(client.session[SESSION_STARTED_KEY] - time.time()) < 5
    assert client.session[SESSION_SEEN_KEY] == client.session[SESSION_STARTED_KEY]


# Login throttling ------------------------------------------------------------------


def test_login__too_many_failures__429_lockout_even_with_right_password(
    agent, settings
):
    from axes.models import AccessAttempt, AccessFailureLog

    settings.AXES_FAILURE_LIMIT = 3
    client = Client()
    for _ in range(2):
        response = client.post(
            reverse("login"), {"username": agent.username, "password": "wrong"}
        )
        assert response.status_code == 200
        assert "do not match" in response.content.decode()
    response = client.post(
        reverse("login"), {"username": agent.username, "password": "wrong"}
    )
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.content.decode()
    # The right password is refused too while the lockout lasts
    response = client.post(
        reverse("login"), {"username": agent.username, "password": PASSWORD}
    )
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    # Audited: who, from where, how often
    attempt = AccessAttempt.objects.get(username=agent.username)
    assert attempt.failures_since_start >= 3
    assert AccessFailureLog.objects.filter(username=agent.username).count() >= 3


def test_login__other_user_same_address__not_locked(agent, manager, settings):
    settings.AXES_FAILURE_LIMIT = 2
    client = Client()
    for _ in range(2):
        client.post(reverse("login"), {"username": agent.username, "password": "no"})
    response = client.post(
        reverse("login"), {"username": manager.username, "password": PASSWORD}
    )
    assert response.status_code == 302


def test_password_hashers__argon2_first(settings):
    from django.conf import settings as live

    # The suite's autouse fixture swaps in MD5 for speed; the module's own list:
    from opsconsole import settings as module

    assert module.PASSWORD_HASHERS[0] == (
        "django.contrib.auth.hashers.Argon2PasswordHasher"
    )
    assert live.AUTHENTICATION_BACKENDS[0] == "axes.backends.AxesStandaloneBackend"


# Error pages -----------------------------------------------------------------------


def test_error_pages__production__generic_and_leak_nothing(tmp_path, static_root):
    # Given DEBUG=0 and a view that raises with an id and a secret in its message
    result = _production_python(
        "from django.test import Client\n"
        "from django.urls import path\n"
        "from opsconsole import urls\n"
        "def boom(request):\n"
        "    raise RuntimeError('pred-secret-123 ' + __import__('django.conf')"
        ".conf.settings.SECRET_KEY)\n"
        "urls.urlpatterns += [path('boom/', boom), path('api/v1/boom', boom)]\n"
        "c = Client(raise_request_exception=False, HTTP_HOST='console.example.com')\n"
        "import json\n"
        "out = {}\n"
        "for url in ('/boom/', '/api/v1/boom', '/no/such/cust-0042/',"
        " '/api/v1/nothing/cust-0042', '/settings/api-keys/'):\n"
        "    r = c.get(url, secure=True)\n"
        "    out[url] = [r.status_code, r['Content-Type'], r.content.decode()]\n"
        "print(json.dumps(out))\n",
        tmp_path,
        static_root,
    )
    assert result.returncode == 0, result.stderr
    pages = json.loads(result.stdout.strip().splitlines()[-1])
    for url, (_status, _content_type, body) in pages.items():
        for leak in (
            "Traceback",
            "pred-secret-123",
            "cust-0042",
            "SECRET_KEY",
            PRODUCTION_ENV["SECRET_KEY"],
            "RuntimeError",
            "settings.py",
        ):
            assert leak not in body, (url, leak)
    assert pages["/boom/"][0] == 500 and "Something went wrong" in pages["/boom/"][2]
    assert pages["/api/v1/boom"][0] == 500
    assert json.loads(pages["/api/v1/boom"][2])["error"]["code"] == "server_error"
    assert pages["/no/such/cust-0042/"][0] == 404
    assert "Nothing here" in pages["/no/such/cust-0042/"][2]
    assert json.loads(pages["/api/v1/nothing/cust-0042"][2])["error"]["code"] == (
        "not_found"
    )
    assert pages["/settings/api-keys/"][0] == 302  # anonymous: to the login page


# Metrics ---------------------------------------------------------------------------


def test_metrics__anonymous_session_or_other_scope__refused(
    client, admin_user, api_key_for
):
    assert client.get("/metrics").status_code == 401
    client.force_login(admin_user)
    assert client.get("/metrics").status_code == 401  # sessions never authenticate
    other = Client(HTTP_AUTHORIZATION=f"Bearer {api_key_for('serving:read')}")
    response = other.get("/metrics")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_metrics__key_with_scope__requests_rank_version_and_lag(
    api_key_for, client, agent
):
    from overrides.models import ServingInstance
    from tests.factories import make_block

    scraper = Client(HTTP_AUTHORIZATION=f"Bearer {api_key_for('metrics:read')}")
    serving = Client(HTTP_AUTHORIZATION=f"Bearer {api_key_for('serving:read')}")
    before = scraper.get("/metrics").content.decode()
    rank_before = metric_value(before, "opsconsole_rank_calls_total")
    candidates_before = metric_value(before, "opsconsole_rank_candidates_total")

    # When a block is made, an instance reports an old version, and rank is called
    make_block(agent, item_id="sku-1")
    ServingInstance.objects.create(
        name="serving-eu-1", version=0, last_seen_at=timezone.now()
    )
    response = serving.post(
        "/api/v1/serving/rank",
        {
            "candidates": [
                {"item_id": "sku-1", "score": 1},
                {"item_id": "x", "score": 0},
            ]
        },
        content_type="application/json",
    )
    assert response.status_code == 200
    client.get("/healthz")

    response = scraper.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    body = response.content.decode()
    assert metric_value(body, "opsconsole_rank_calls_total") == rank_before + 1
    assert (
        metric_value(body, "opsconsole_rank_candidates_total") == candidates_before + 2
    )
    assert (
        metric_value(
            body,
            "opsconsole_http_requests_total",
            route="serving-rank",
            method="POST",
            status="200",
        )
        >= 1
    )
    assert (
        metric_value(
            body, "opsconsole_http_request_duration_seconds_count", route="healthz"
        )
        >= 1
    )
    version = metric_value(body, "opsconsole_override_version")
    assert version >= 1
    assert (
        metric_value(
            body, "opsconsole_serving_instance_versions_behind", instance="serving-eu-1"
        )
        == version
    )
    assert (
        0
        <= metric_value(
            body,
            "opsconsole_serving_instance_heartbeat_age_seconds",
            instance="serving-eu-1",
        )
        < 60
    )
    # A failed task shows up as a sample with its task name (not just the HELP line)
    failures_before = metrics.TASK_FAILURES.labels("tests.scraped_task")._value.get()
    metrics._task_failed(sender=type("Task", (), {"name": "tests.scraped_task"}))
    body = scraper.get("/metrics").content.decode()
    assert (
        metric_value(
            body, "opsconsole_celery_task_failures_total", task="tests.scraped_task"
        )
        == failures_before + 1
    )


def test_metrics__task_failure_signal__counted():
    class FakeTask:
        name = "tests.failing_task"

    before = metrics.TASK_FAILURES.labels("tests.failing_task")._value.get()
    metrics._task_failed(sender=FakeTask())
    sample = metrics.TASK_FAILURES.labels("tests.failing_task")._value.get()
    assert sample == before + 1


def test_metrics__odd_method__one_label_value(client):
    before = metrics.HTTP_REQUESTS.labels("healthz", "OTHER", "405")._value.get()
    client.generic("BREW", "/healthz")
    sample = metrics.HTTP_REQUESTS.labels("healthz", "OTHER", "405")._value.get()
    assert sample == before + 1


def test_requests__ordinary__no_database_query_added(
    client, django_assert_num_queries, serving_client, settings, monkeypatch
):
    from overrides import serving

    with django_assert_num_queries(0):
        client.get("/healthz")
    # Serving reads with a key: once the key, the override version and the rules
    # are remembered (the first calls), a rank and a snapshot read no table at all.
    settings.SERVING_VERSION_MEMO_SECONDS = 60  # not expiring mid-test
    monkeypatch.setattr(serving, "_memo", None)
    rank = {"candidates": [{"item_id": "sku-1", "score": 1.0}]}
    assert serving_client.get("/api/v1/serving/snapshot").status_code == 200
    serving_client.post("/api/v1/serving/rank", rank, content_type="application/json")
    with django_assert_num_queries(0):
        response = serving_client.post(
            "/api/v1/serving/rank", rank, content_type="application/json"
        )
        assert response.status_code == 200
    with django_assert_num_queries(0):
        assert serving_client.get("/api/v1/serving/snapshot").status_code == 200
