"""The Redis copy of opt-outs: used only when ready, fails closed, survives rebuilds."""

import pytest
from django.db import transaction
from django.test import Client

from opsconsole.customer_ids import hash_customer_id
from overrides import optout_mirror, selectors, services, tasks
from overrides.models import OptOut

pytestmark = pytest.mark.services
RANK = "/api/v1/serving/rank"


def _register(customer_id, kinds=("personalization",)):
    services.optout_register(customer_id=customer_id, kinds=list(kinds), source="T-1")


def test_lookup__not_rebuilt_yet__none_so_readers_use_the_database(db):
    _register("c-1")
    assert optout_mirror.lookup([hash_customer_id("c-1")]) is None
    assert selectors.is_opted_out(hash_customer_id("c-1"), "personalization")


def test_rebuild__copies_active_opt_outs_only(db):
    _register("c-1", ["personalization", "training"])
    _register("c-2", ["training"])
    services.optout_withdraw(customer_id="c-2", kinds=["training"], source="T-2")

    assert optout_mirror.rebuild() == 2

    hashes = [hash_customer_id(raw) for raw in ("c-1", "c-2", "c-3")]
    assert optout_mirror.lookup(hashes) == {
        "personalization": {hashes[0]},
        "training": {hashes[0]},
    }


def test_register_and_withdraw__reach_the_copy_at_once(
    db, django_capture_on_commit_callbacks
):
    optout_mirror.rebuild()
    customer_hash = hash_customer_id("c-9")
    with django_capture_on_commit_callbacks(execute=True):
        _register("c-9")
    assert optout_mirror.lookup([customer_hash])["personalization"] == {customer_hash}
    with django_capture_on_commit_callbacks(execute=True):
        services.optout_withdraw(
            customer_id="c-9", kinds=["personalization"], source="T"
        )
    assert optout_mirror.lookup([customer_hash])["personalization"] == set()


def test_register__rolled_back__copy_errs_on_the_side_of_opted_out(db):
    optout_mirror.rebuild()
    with pytest.raises(RuntimeError), transaction.atomic():
        _register("c-rollback")
        raise RuntimeError("the request failed after the write")
    assert not OptOut.objects.exists()
    customer_hash = hash_customer_id("c-rollback")
    assert optout_mirror.lookup([customer_hash])["personalization"] == {customer_hash}
    optout_mirror.rebuild()  # the daily reconciliation drops it
    assert optout_mirror.lookup([customer_hash])["personalization"] == set()


def test_registered_during_a_rebuild__not_lost(db, monkeypatch):
    _register("c-before")
    merge = optout_mirror._merge

    def merge_then_register(redis, staging, pending):
        merge(redis, staging, pending)
        if not OptOut.objects.filter(source="during").exists():
            services.optout_register(
                customer_id="c-during", kinds=["personalization"], source="during"
            )

    monkeypatch.setattr(optout_mirror, "_merge", merge_then_register)
    optout_mirror.rebuild()

    hashes = [hash_customer_id("c-before"), hash_customer_id("c-during")]
    assert optout_mirror.lookup(hashes)["personalization"] == set(hashes)


def test_redis_lost_its_data__readers_fall_back_then_the_task_rebuilds(db):
    _register("c-1")
    optout_mirror.rebuild()
    optout_mirror._redis().flushdb()  # Redis restarted: it keeps nothing on disk
    customer_hash = hash_customer_id("c-1")

    assert optout_mirror.lookup([customer_hash]) is None
    assert selectors.is_opted_out(customer_hash, "personalization")
    assert tasks.ensure_optout_mirror() == 1
    assert optout_mirror.lookup([customer_hash])["personalization"] == {customer_hash}
    assert tasks.ensure_optout_mirror() == 0


def test_serving_check__copy_ready__no_database_query(
    api_key_for, django_assert_num_queries
):
    _register("c-1")
    optout_mirror.rebuild()
    client = Client(HTTP_AUTHORIZATION=f"Bearer {api_key_for('serving:read')}")
    body = {"customer_ids": ["c-1", "c-2"]}
    client.post("/api/v1/serving/optouts/check", body, content_type="application/json")
    with django_assert_num_queries(0):
        response = client.post(
            "/api/v1/serving/optouts/check", body, content_type="application/json"
        )
    assert response.json() == {"personalization": ["c-1"], "training": []}


def test_invalidate__readers_use_the_database_until_a_rebuild(db):
    _register("c-1")
    optout_mirror.rebuild()
    assert optout_mirror.is_ready()
    optout_mirror.invalidate()
    customer_hash = hash_customer_id("c-1")
    assert not optout_mirror.is_ready()
    assert optout_mirror.lookup([customer_hash]) is None
    assert selectors.opted_out_among(["c-1", "c-2"]) == {
        "personalization": ["c-1"],
        "training": [],
    }
    assert tasks.ensure_optout_mirror() == 1
    assert optout_mirror.lookup([customer_hash])["personalization"] == {customer_hash}


def test_opt_out_check__not_carried__asks_the_copy_itself(
    db, django_assert_num_queries
):
    _register("c-out")
    optout_mirror.rebuild()

    out = selectors.OptOutCheck(hash_customer_id("c-out"), "personalization")
    in_ = selectors.OptOutCheck(hash_customer_id("c-in"), "training")
    with django_assert_num_queries(0):  # the copy answers, not the database
        answers = (out.opted_out(), in_.opted_out())

    assert answers == (True, False)


def test_opt_out_check__redis_failed_on_the_way__the_database_decides(db):
    _register("c-out")
    optout_mirror.rebuild()
    check = selectors.OptOutCheck(hash_customer_id("c-out"), "personalization")
    check.question.reply = None  # what the rate limiter leaves when Redis failed

    assert check.opted_out() is True


def _count_round_trips(monkeypatch) -> list:
    """Every write of commands to Redis (a pipeline writes all of its at once)."""
    from redis.connection import AbstractConnection

    sent = []
    real = AbstractConnection.send_packed_command

    def counting(connection, command, *args, **kwargs):
        chunks = [command] if isinstance(command, bytes | str) else command
        sent.append(
            b"".join(
                bytes(chunk, "utf-8") if isinstance(chunk, str) else bytes(chunk)
                for chunk in chunks
            )
        )
        return real(connection, command, *args, **kwargs)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    return sent


def test_rank__customer_id__opt_out_asked_in_the_rate_limit_round_trip(
    serving_client, monkeypatch
):
    _register("c-out")
    optout_mirror.rebuild()
    candidates = [{"item_id": "a", "score": 1}]
    serving_client.post(
        RANK, {"candidates": candidates}, content_type="application/json"
    )
    sent = _count_round_trips(monkeypatch)

    # When a customer's rank and an anonymous one are asked
    for body in (
        {"customer_id": "c-out", "candidates": candidates},
        {"candidates": candidates},
    ):
        response = serving_client.post(RANK, body, content_type="application/json")
        assert response.status_code == 200

    # Then the opt-out question went with the rate limit's count, in one write
    # (other writes, such as an occasional read of the rules' version, aside)
    counts = [command for command in sent if b"INCR" in command]
    questions = [command for command in sent if b"HMGET" in command]
    assert len(counts) == 2
    assert len(questions) == 1 and questions[0] in counts


def test_rank__opted_out_customer__not_personalized_from_the_copy(serving_client):
    _register("c-out")
    optout_mirror.rebuild()
    body = {"customer_id": "c-out", "candidates": [{"item_id": "a", "score": 1}]}

    response = serving_client.post(RANK, body, content_type="application/json")

    assert response.status_code == 200
    assert response.json()["personalized"] is False
