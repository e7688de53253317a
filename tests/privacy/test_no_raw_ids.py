"""After a full scenario, no raw customer id is in the database, Redis, the logs or
any task's arguments: only keyed hashes are kept (contract, Identifiers)."""

import io
import json
import logging

import pytest
from celery.signals import task_prerun
from django.conf import settings
from django.core.management import call_command
from django.test import Client

from tests.explanations.conftest import ROW

RAW_ID = "cust-RAW-7f3a9c"


def _redis_dump() -> bytes:
    import redis

    connection = redis.Redis.from_url(settings.REDIS_URL)
    parts = []
    for key in connection.scan_iter(count=1000):
        parts.append(key)
        kind = connection.type(key)
        if kind == b"string":
            parts.append(connection.get(key) or b"")
        elif kind == b"hash":
            for field, value in connection.hgetall(key).items():
                parts += [field, value]
        elif kind == b"set":
            parts += list(connection.smembers(key))
        elif kind == b"list":
            parts += connection.lrange(key, 0, -1)
        elif kind == b"zset":
            parts += connection.zrange(key, 0, -1)
    return b"\n".join(parts)


@pytest.mark.usefixtures("eager_tasks")
def test_full_scenario__no_raw_customer_id_at_rest(
    api_key_for,
    client_for,
    officer,
    agent,
    register,
    downstream_server,
    caplog,
    django_capture_on_commit_callbacks,
):
    caplog.set_level(logging.DEBUG)
    task_arguments = []

    def remember(sender=None, args=None, kwargs=None, **extra):
        task_arguments.append(repr((args, kwargs)))

    task_prerun.connect(remember, weak=False)
    try:
        _scenario(
            api_key_for,
            client_for,
            officer,
            agent,
            register,
            downstream_server,
            django_capture_on_commit_callbacks,
        )
    finally:
        task_prerun.disconnect(remember)

    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    assert RAW_ID not in dump.getvalue()
    assert RAW_ID not in caplog.text
    assert all(RAW_ID not in str(record.args) for record in caplog.records)
    assert task_arguments and all(RAW_ID not in args for args in task_arguments)
    if settings.REDIS_URL:
        assert RAW_ID.encode() not in _redis_dump()


def _post(client, url, body):
    return client.post(url, json.dumps(body), content_type="application/json")


def _scenario(
    api_key_for,
    client_for,
    officer,
    agent,
    register,
    downstream_server,
    django_capture_on_commit_callbacks,
):
    from privacy import services

    server = downstream_server(fail_first=1)
    services.downstream_create(
        name="crm", url=server.url(), secret="s3cret-shared-with-downstream"
    )
    serving = Client(HTTP_AUTHORIZATION=f"Bearer {api_key_for('serving:read')}")
    logger = Client(HTTP_AUTHORIZATION=f"Bearer {api_key_for('predictions:write')}")
    privacy = Client(HTTP_AUTHORIZATION=f"Bearer {api_key_for('privacy:write')}")
    version = register("lightgbm-classifier", name="propensity")

    logged = _post(
        logger,
        "/api/v1/predictions",
        [
            {
                "prediction_id": f"p-{index}",
                "model": version.name,
                "model_version": version.version,
                "customer_id": RAW_ID,
                "features": ROW,
                "output": 0.3,
            }
            for index in range(3)
        ],
    )
    assert logged.status_code == 201
    agent_client = client_for(agent)
    assert agent_client.get("/explanations/predictions/p-0/").status_code == 200
    lookup = agent_client.post("/explanations/", {"by": "customer", "query": RAW_ID})
    assert b"p-0" in lookup.content
    rank = {"customer_id": RAW_ID, "candidates": [{"item_id": "a", "score": 1.0}]}
    assert _post(serving, "/api/v1/serving/rank", rank).json()["personalized"]
    assert (
        _post(
            privacy,
            "/api/v1/privacy/optouts",
            {"customer_id": RAW_ID, "kinds": ["personalization"], "source": "ZD-1"},
        ).status_code
        == 200
    )
    assert not _post(serving, "/api/v1/serving/rank", rank).json()["personalized"]
    _post(serving, "/api/v1/serving/optouts/check", {"customer_ids": [RAW_ID]})
    officer_client = client_for(officer)
    officer_client.post("/privacy/optouts/", {"search-customer_id": RAW_ID})
    with django_capture_on_commit_callbacks(execute=True):
        accepted = _post(
            privacy,
            "/api/v1/privacy/deletion-requests",
            {"customer_id": RAW_ID, "source": "ZD-2"},
        )
    assert accepted.status_code == 202
    request_id = accepted.json()["id"]
    officer_client.post(f"/privacy/requests/{request_id}/retry/")
    detail = privacy.get(f"/api/v1/privacy/deletion-requests/{request_id}").json()
    assert detail["status"] == "completed"
    assert [json.loads(call["body"])["customer_id"] for call in server.calls] == [
        RAW_ID,
        RAW_ID,
    ]
    officer_client.post("/privacy/", {"customer_id": RAW_ID})
