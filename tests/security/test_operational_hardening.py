"""Operational hardening: what reaches the logs, login throttling behind proxies,
/metrics during a database outage, the secrets file, the CSP fast path, the 503
for a lost database, the rate limiter's failure mode, and session-expiry notice."""

import json
import logging
import os
import stat
import time

import pytest
from csp.exceptions import CSPNonceError
from csp.middleware import CSPMiddleware
from django.db import OperationalError
from django.http import HttpResponse, JsonResponse
from django.test import Client, RequestFactory
from django.urls import reverse

from opsconsole import errors, metrics
from opsconsole.login_throttle import client_ip_address
from opsconsole.logs import ConsoleJsonFormatter
from opsconsole.middleware import (
    ContentSecurityPolicyMiddleware,
)
from tests.factories import PASSWORD
from tests.security.conftest_matrix import age_session, metric_value

pytestmark = pytest.mark.django_db

RANK = "/api/v1/serving/rank"
SNAPSHOT = "/api/v1/serving/snapshot"
CSP = "Content-Security-Policy"
CSP_RO = "Content-Security-Policy-Report-Only"


# Logs ------------------------------------------------------------------------------


def test_json_log__django_request_with_query_key__no_secret_or_customer_id(
    client, caplog
):
    caplog.set_level(logging.INFO, logger="django.request")
    response = client.get(
        SNAPSHOT, {"api_key": "opc_secretsecret", "customer_id": "cust-4711"}
    )
    assert response.status_code == 401
    records = [r for r in caplog.records if r.name == "django.request"]
    assert records, "django.request logged nothing for a 401"
    for record in records:
        assert hasattr(record, "request")  # what used to be written with its repr
        text = ConsoleJsonFormatter().format(record)
        assert "opc_secretsecret" not in text and "cust-4711" not in text
        line = json.loads(text)
        assert line["method"] == "GET" and line["path"] == SNAPSHOT
        assert line["status_code"] == 401


def test_json_log__unknown_extra_field__not_written():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", (), None)
    record.customer_id = "cust-4711"
    record.route = "healthz"
    line = json.loads(ConsoleJsonFormatter().format(record))
    assert "customer_id" not in line and line["route"] == "healthz"


def _access_records(caplog):
    return [r for r in caplog.records if r.name == "opsconsole.access"]


def test_access_log__successful_serving_read__no_line_unless_enabled(
    serving_client, caplog, settings
):
    caplog.set_level(logging.INFO, logger="opsconsole.access")
    body = {"candidates": [{"item_id": "a", "score": 1}]}
    ok = serving_client.post(RANK, body, content_type="application/json")
    assert ok.status_code == 200
    assert serving_client.get(SNAPSHOT).status_code == 200
    assert _access_records(caplog) == []

    # A failed serving call is still logged
    bad = serving_client.post(RANK, {"candidates": 3}, content_type="application/json")
    assert bad.status_code == 400
    (record,) = _access_records(caplog)
    assert record.status == 400 and record.route == "serving-rank"

    # ACCESS_LOG_SERVING=1: every serving call
    caplog.clear()
    settings.ACCESS_LOG_SERVING = True
    serving_client.post(RANK, body, content_type="application/json")
    assert [r.status for r in _access_records(caplog)] == [200]


def test_access_log__other_pages__still_logged(client, caplog):
    caplog.set_level(logging.INFO, logger="opsconsole.access")
    client.get("/healthz")
    assert [r.route for r in _access_records(caplog)] == ["healthz"]


# Rank counter ----------------------------------------------------------------------


def test_rank_counter__invalid_customer_id__not_counted(serving_client):
    before = metrics.RANK_CALLS._value.get()
    response = serving_client.post(
        RANK,
        {"customer_id": "has space", "candidates": [{"item_id": "a", "score": 1}]},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert metrics.RANK_CALLS._value.get() == before
    serving_client.post(
        RANK,
        {"customer_id": "c-1", "candidates": [{"item_id": "a", "score": 1}]},
        content_type="application/json",
    )
    assert metrics.RANK_CALLS._value.get() == before + 1


# Login throttling ------------------------------------------------------------------


def test_client_ip__no_trusted_proxy__forwarded_header_ignored(settings):
    settings.TRUSTED_PROXY_COUNT = 0
    request = RequestFactory().get(
        "/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.5"
    )
    assert client_ip_address(request) == "10.0.0.1"


@pytest.mark.parametrize(
    ("count", "forwarded", "expected"),
    [
        (1, "203.0.113.5", "203.0.113.5"),
        (1, "6.6.6.6, 203.0.113.5", "203.0.113.5"),  # the left entry is a claim
        (2, "6.6.6.6, 203.0.113.5, 10.0.0.2", "203.0.113.5"),
        (2, "203.0.113.5", "10.0.0.1"),  # bypassed a proxy: its own address
        (1, "", "10.0.0.1"),
    ],
)
def test_client_ip__trusted_proxies__their_entry_from_the_right(
    settings, count, forwarded, expected
):
    settings.TRUSTED_PROXY_COUNT = count
    request = RequestFactory().get(
        "/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=forwarded
    )
    assert client_ip_address(request) == expected


def _sign_in(address: str, username: str, password: str) -> int:
    client = Client(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=address)
    response = client.post(
        reverse("login"), {"username": username, "password": password}
    )
    return response.status_code


def test_login__behind_proxy__lockout_is_per_client_not_per_proxy(agent, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.AXES_FAILURE_LIMIT = 2
    assert _sign_in("203.0.113.5", agent.username, "wrong") == 200
    assert _sign_in("203.0.113.5", agent.username, "wrong") == 429
    assert _sign_in("203.0.113.5", agent.username, PASSWORD) == 429
    # Another client behind the same proxy still signs in
    assert _sign_in("198.51.100.7", agent.username, PASSWORD) == 302


def test_login__many_user_names_from_one_address__address_locked(
    agent, manager, officer, settings
):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.AXES_FAILURE_LIMIT = 5
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 3
    assert _sign_in("203.0.113.5", agent.username, "wrong") == 200
    assert _sign_in("203.0.113.5", officer.username, "wrong") == 200
    # No pair reached 5, but the address reached 3: locked, right password or not
    assert _sign_in("203.0.113.5", "nobody", "wrong") == 429
    assert _sign_in("203.0.113.5", manager.username, PASSWORD) == 429
    assert _sign_in("198.51.100.7", manager.username, PASSWORD) == 302


def test_login_settings__lockout_parameters(settings):
    from django.conf import settings as live

    assert live.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]
    assert live.AXES_HANDLER == "opsconsole.login_throttle.AddressLimitedHandler"
    assert live.AXES_CLIENT_IP_CALLABLE == (
        "opsconsole.login_throttle.client_ip_address"
    )
    assert live.LOGIN_ADDRESS_FAILURE_LIMIT > live.AXES_FAILURE_LIMIT
    assert live.TRUSTED_PROXY_COUNT == 0  # default: REMOTE_ADDR only


# /metrics during a database outage -------------------------------------------------


def test_metrics__database_down__counters_kept_and_database_up_0(
    api_key_for, monkeypatch
):
    from overrides import selectors

    scraper = Client(HTTP_AUTHORIZATION=f"Bearer {api_key_for('metrics:read')}")
    body = scraper.get("/metrics").content.decode()
    assert metric_value(body, "opsconsole_database_up") == 1
    assert "opsconsole_override_version " in body

    def database_down():
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(selectors, "current_version", database_down)
    response = scraper.get("/metrics")
    assert response.status_code == 200
    body = response.content.decode()
    assert metric_value(body, "opsconsole_database_up") == 0
    assert "opsconsole_override_version " not in body
    assert metric_value(body, "opsconsole_rank_calls_total") >= 0  # process counters


# The secrets file ------------------------------------------------------------------


def test_production_secrets__existing_loose_file__kept_and_tightened(tmp_path):
    from deploy import prepare

    path = tmp_path / "production.env"
    path.write_text("CUSTOMER_ID_HMAC_KEY=" + "c" * 64 + "\n")
    path.chmod(0o644)
    values = prepare.production_secrets(tmp_path, {})
    assert values["CUSTOMER_ID_HMAC_KEY"] == "c" * 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "CUSTOMER_ID_ENCRYPTION_KEY=" in path.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["production.env"]


def test_production_secrets__crash_while_writing__old_file_intact(
    tmp_path, monkeypatch
):
    from deploy import prepare

    path = tmp_path / "production.env"
    original = "CUSTOMER_ID_HMAC_KEY=" + "c" * 64 + "\n"
    path.write_text(original)

    def power_cut(descriptor):
        raise OSError("disk gone")

    monkeypatch.setattr(prepare.os, "fsync", power_cut)
    with pytest.raises(OSError, match="disk gone"):
        prepare.production_secrets(tmp_path, {})
    assert path.read_text() == original
    assert [p.name for p in tmp_path.iterdir()] == ["production.env"]


def test_self_signed_certificate__existing_loose_key__tightened(tmp_path):
    from deploy import prepare

    (tmp_path / "tls").mkdir()
    key = tmp_path / "tls" / "key.pem"
    key.write_text("old")
    key.chmod(0o644)
    prepare.self_signed_certificate(tmp_path)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


# CSP fast path ---------------------------------------------------------------------


def _html(**attributes) -> HttpResponse:
    response = HttpResponse("<p>hi</p>")
    for name, value in attributes.items():
        setattr(response, name, value)
    return response


CASES = {
    "plain": {},
    "update": {"_csp_update": {"img-src": ["https://img.example"]}},
    "replace": {"_csp_replace": {"img-src": ["https://img.example"]}},
    "config": {"_csp_config": {"default-src": ["'self'"]}},
    "exempt": {"_csp_exempt": True},
    "update_ro": {"_csp_update_ro": {"img-src": ["https://img.example"]}},
    "config_ro": {"_csp_config_ro": {"default-src": ["'self'"]}},
    "exempt_ro": {"_csp_exempt_ro": True},
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("nonce", [False, True])
def test_csp_middleware__html__same_headers_as_django_csp(case, nonce):
    headers = []
    for middleware in (CSPMiddleware, ContentSecurityPolicyMiddleware):
        request = RequestFactory().get("/")
        instance = middleware(lambda request: None)
        instance.process_request(request)
        if nonce:
            str(request.csp_nonce)
            request._csp_nonce = "fixed-nonce"
        response = instance.process_response(request, _html(**CASES[case]))
        headers.append((response.get(CSP), response.get(CSP_RO)))
    assert headers[0] == headers[1]
    if case == "plain":
        assert headers[1][0]


def test_csp_middleware__nonce_after_header__error_like_django_csp():
    request = RequestFactory().get("/")
    instance = ContentSecurityPolicyMiddleware(lambda request: None)
    instance.process_request(request)
    instance.process_response(request, _html())
    with pytest.raises(CSPNonceError):
        str(request.csp_nonce)


def test_csp_middleware__json__no_header():
    request = RequestFactory().get("/")
    instance = ContentSecurityPolicyMiddleware(lambda request: None)
    instance.process_request(request)
    response = instance.process_response(request, JsonResponse({"a": 1}))
    assert CSP not in response


def test_csp__api_json_answers__none_but_html_error_pages_keep_it(
    serving_client, client
):
    assert CSP not in serving_client.get(SNAPSHOT)
    assert CSP not in client.get(SNAPSHOT)  # a JSON 401
    missing = client.get("/no-such-page/")
    assert missing.status_code in (302, 404)
    assert CSP in missing
    page = client.get(reverse("login"))
    assert page["Content-Type"].startswith("text/html") and CSP in page


# 503 for a lost database -----------------------------------------------------------


def test_database_unavailable__503_message_and_one_warning_a_minute(
    caplog, monkeypatch
):
    monkeypatch.setattr(errors, "_database_warned_at", 0.0)
    caplog.set_level(logging.WARNING, logger="opsconsole.errors")
    first = errors.api_exception_handler(OperationalError("deadlock detected"), {})
    second = errors.api_exception_handler(OperationalError("deadlock detected"), {})
    assert first.status_code == second.status_code == 503
    message = first.data["error"]["message"]
    assert "may not have been applied" in message and "nothing" not in message
    warnings = [r for r in caplog.records if r.name == "opsconsole.errors"]
    assert len(warnings) == 1


# Rate limiter failure mode ---------------------------------------------------------


def _break_counting(monkeypatch, error):
    """The rate limiter's counter raises `error`, on whichever cache is configured."""
    from opsconsole import auth

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(auth, "_count_request", broken)


def test_rate_limit__cache_connection_lost__answers(serving_client, monkeypatch):
    from django_redis.exceptions import ConnectionInterrupted

    from opsconsole import auth

    # (the once-a-minute warning's clock is put back afterwards for other tests)
    monkeypatch.setattr(auth, "_throttle_warned_at", 0.0)
    _break_counting(monkeypatch, ConnectionInterrupted("gone"))
    assert serving_client.get(SNAPSHOT).status_code == 200
    assert auth._throttle_warned_at > 0  # the outage was logged


def test_rate_limit__programming_error__not_hidden(serving_client, monkeypatch):
    _break_counting(monkeypatch, TypeError("a bug"))
    with pytest.raises(TypeError, match="a bug"):
        serving_client.get(SNAPSHOT)


# Session expiry notice -------------------------------------------------------------


def test_session__idle_past_limit__login_page_says_why(client, agent, settings):
    settings.SESSION_IDLE_SECONDS = 600
    client.force_login(agent)
    now = time.time()
    age_session(client, started=now - 700, seen=now - 601)
    response = client.get(reverse("dashboard"), follow=True)
    text = response.content.decode()
    assert response.redirect_chain and "/login/" in response.redirect_chain[-1][0]
    assert "Your session expired after 10 minutes of inactivity; sign in again." in text


def test_session__past_absolute_limit__login_page_says_why(client, agent, settings):
    settings.SESSION_COOKIE_AGE = 3600
    client.force_login(agent)
    now = time.time()
    age_session(client, started=now - 3601, seen=now - 1)
    text = client.get(reverse("dashboard"), follow=True).content.decode()
    assert "Your session ended 1 hour after you signed in; sign in again." in text


def test_session__active__no_expiry_message(client, agent):
    client.force_login(agent)
    text = client.get(reverse("dashboard")).content.decode()
    assert "session expired" not in text and "session ended" not in text


def test_secrets_file_writer__mode_600_even_with_loose_umask(tmp_path):
    from deploy import prepare

    previous = os.umask(0)
    try:
        prepare._replace_private_file(tmp_path / "f.env", "A=1\n")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "f.env").stat().st_mode) == 0o600
