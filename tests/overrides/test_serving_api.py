"""Contract tests for the serving endpoints (contract, Authentication and Serving)."""

import hashlib
import hmac
import math
import socket
import time
import warnings
from datetime import timedelta

import pytest
from django.core.cache.backends.base import CacheKeyWarning
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from opsconsole import services as console_services
from opsconsole.customer_ids import hash_customer_id, hash_customer_ids
from opsconsole.models import ApiKey
from overrides import selectors, services, serving
from overrides.api.serving import ServingError, candidate_columns
from overrides.models import OverrideChange, ServingInstance
from tests.factories import make_block, make_boost

SNAPSHOT = "/api/v1/serving/snapshot"
RANK = "/api/v1/serving/rank"
OPTOUTS = "/api/v1/serving/optouts/check"
CHANGES = "/api/v1/serving/changes"
HEARTBEAT = "/api/v1/serving/heartbeat"


def _post(client, url, body):
    return client.post(url, body, content_type="application/json")


def _candidates(*pairs):
    return [{"item_id": item_id, "score": score} for item_id, score in pairs]


# Authentication -------------------------------------------------------------------


@pytest.mark.parametrize("url", [SNAPSHOT, f"{CHANGES}?since=0"])
def test_serving_get__no_key__401_with_bearer_challenge(client, db, url):
    response = client.get(url)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize("url", [RANK, OPTOUTS, HEARTBEAT])
def test_serving_post__no_key__401(client, db, url):
    assert _post(client, url, {}).status_code == 401


def test_serving__unknown_key__401(db):
    client = Client(HTTP_AUTHORIZATION="Bearer opc_not-a-real-key")
    assert client.get(SNAPSHOT).status_code == 401


def test_serving__revoked_key__401_at_once(
    api_key_for, django_capture_on_commit_callbacks
):
    raw_key = api_key_for("serving:read")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    assert client.get(SNAPSHOT).status_code == 200
    key = ApiKey.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        console_services.api_key_revoke(key_id=key.pk, actor=None)
    response = client.get(SNAPSHOT)
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]


def test_serving__key_without_serving_scope__403_names_the_scope(api_key_for):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {api_key_for('overrides:write')}")
    response = client.get(SNAPSHOT)
    assert response.status_code == 403
    assert "serving:read" in response.json()["error"]["message"]


@pytest.mark.parametrize("parameter", ["api_key", "key", "token", "access_token"])
def test_serving__key_in_query_string__401(api_key_for, client, parameter):
    raw_key = api_key_for("serving:read")
    response = client.get(f"{SNAPSHOT}?{parameter}={raw_key}")
    assert response.status_code == 401
    assert "query string" in response.json()["error"]["message"]


def test_api__parameter_named_token_without_a_key__not_refused(agent, client_for):
    response = client_for(agent).get("/api/v1/blocks", {"token": "null"})
    assert response.status_code != 401


def test_serving__key_in_query_string_even_with_header__401(api_key_for):
    raw_key = api_key_for("serving:read")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    assert client.get(f"{SNAPSHOT}?surface={raw_key}").status_code == 401


def test_serving__staff_session__never_authenticates(admin_user, client_for):
    response = client_for(admin_user).get(SNAPSHOT)
    assert response.status_code == 401


def test_overrides_api__key_with_overrides_write__can_block(api_key_for):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {api_key_for('overrides:write')}")
    body = {"item_id": "sku-1", "surface": None, "region": None, "reason": "Recall"}
    response = _post(client, "/api/v1/blocks", body)
    assert response.status_code == 201
    assert response.json()["created_by"] == "apikey:test-key-1"


def test_overrides_api__serving_key__403(serving_client):
    assert serving_client.get("/api/v1/blocks").status_code == 403


def test_audit_api__any_key__403(api_key_for):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {api_key_for('overrides:write')}")
    assert client.get("/api/v1/audit").status_code == 403


def test_serving__rate_limit__429_with_retry_after(api_key_for):
    raw_key = api_key_for("serving:read", rate_limit_per_minute=2)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    assert [client.get(SNAPSHOT).status_code for _ in range(2)] == [200, 200]
    response = client.get(SNAPSHOT)
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    assert response.json()["error"]["code"] == "too_many_requests"


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b'{"customer_id": "has space", "candidates": [{"item_id": "a", "score": 1}]}',
    ],
    ids=["unparseable", "not an object", "bad customer_id"],
)
def test_rank__bad_body_over_the_limit__429_first_then_400(api_key_for, body):
    # rank reads its body before counting (its opt-out question rides with the
    # count), yet answers in the same order as every endpoint: the limit first
    raw_key = api_key_for("serving:read", rate_limit_per_minute=1)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    first = client.post(RANK, body, content_type="application/json")
    second = client.post(RANK, body, content_type="application/json")
    assert (first.status_code, second.status_code) == (400, 429)
    assert "Retry-After" in second


@pytest.mark.services
def test_rate_limit__window_counter__expires_after_the_window(api_key_for):
    from django_redis import get_redis_connection

    redis = get_redis_connection("default")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {api_key_for('serving:read')}")
    assert [client.get(SNAPSHOT).status_code for _ in range(3)] == [200] * 3

    (counter,) = redis.keys("*ratelimit:*")
    assert int(redis.get(counter)) == 3
    assert 60 <= redis.ttl(counter) <= 65


def test_serving__cache_unreachable__answers_without_rate_limit(
    serving_client, agent, settings, caplog
):
    # Given the cache that counts rate limits is a Redis nobody listens on
    make_block(agent, item_id="sku-1")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_port}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    }

    # When the serving layer keeps asking
    rank = serving_client.post(
        RANK,
        {"candidates": [{"item_id": "sku-1", "score": 1.0}]},
        content_type="application/json",
    )
    snapshot = serving_client.get(SNAPSHOT)
    changes = serving_client.get(CHANGES, {"since": 0})

    # Then it is answered (the limit waits for the cache), and the outage is logged
    assert rank.status_code == 200, rank.content
    assert rank.json()["removed"][0]["item_id"] == "sku-1"
    assert snapshot.status_code == 200 and changes.status_code == 200
    assert "rate limits are not enforced" in caplog.text


def test_serving__key_use__recorded_as_last_used(serving_client):
    assert ApiKey.objects.get().last_used_at is None
    serving_client.get(SNAPSHOT)
    assert ApiKey.objects.get().last_used_at is not None


def test_create_api_key_command__prints_the_key_once_and_stores_its_hash(db, capsys):
    call_command(
        "create_api_key", "serving-eu-1", "--scopes", "serving:read,predictions:write"
    )
    raw_key = capsys.readouterr().out.strip()
    key = ApiKey.objects.get(name="serving-eu-1")
    assert raw_key.startswith("opc_") and raw_key not in (key.key_hash, key.prefix)
    assert key.scopes == ["predictions:write", "serving:read"]
    assert (
        Client(HTTP_AUTHORIZATION=f"Bearer {raw_key}").get(SNAPSHOT).status_code == 200
    )


@pytest.mark.parametrize(
    ("scopes", "message"),
    [("serving:write", "Unknown scope"), ("", "at least one scope")],
)
def test_create_api_key_command__bad_scopes__error_and_nothing_stored(
    db, scopes, message
):
    with pytest.raises(CommandError, match=message):
        call_command("create_api_key", "bad", "--scopes", scopes)
    assert not ApiKey.objects.exists()


# Snapshot -------------------------------------------------------------------------


def test_snapshot__scope__rules_for_it_and_for_all_including_scheduled(
    serving_client, agent, manager
):
    global_block = make_block(agent, item_id="g")
    home_sa = make_block(agent, item_id="h", surface="home", region="SA")
    make_block(agent, item_id="s", surface="search")
    later = make_block(
        agent, item_id="later", starts_at=timezone.now() + timedelta(days=1)
    )
    lifted = make_block(agent, item_id="lifted")
    services.lift_block(block_id=lifted.pk, reason="Fixed", actor=agent)
    boost = make_boost(manager, item_id="b", surface="home")

    body = serving_client.get(SNAPSHOT, {"surface": "home", "region": "SA"}).json()

    assert {rule["id"] for rule in body["blocked"]} == {
        global_block.pk,
        home_sa.pk,
        later.pk,
    }
    assert [rule["id"] for rule in body["boosts"]] == [boost.pk]
    assert body["version"] == 7
    assert body["generated_at"].endswith("Z")
    assert set(body["blocked"][0]) == {
        "id",
        "item_id",
        "surface",
        "region",
        "starts_at",
        "expires_at",
    }
    assert set(body["boosts"][0]) == {
        "id",
        "item_id",
        "factor",
        "surface",
        "region",
        "starts_at",
        "ends_at",
    }


def test_snapshot__no_parameters__every_rule(serving_client, agent):
    make_block(agent, item_id="a", surface="home")
    make_block(agent, item_id="b", surface="search", region="DE")
    assert len(serving_client.get(SNAPSHOT).json()["blocked"]) == 2


def test_snapshot__unconfigured_surface__accepted_and_gets_global_rules(
    serving_client, agent
):
    make_block(agent, item_id="a")
    body = serving_client.get(SNAPSHOT, {"surface": "push", "region": "ZZ"}).json()
    assert [rule["item_id"] for rule in body["blocked"]] == ["a"]


def test_snapshot__long_scope_with_control_characters__served_and_cached_safely(
    serving_client, agent, django_assert_max_num_queries
):
    # Serving accepts any scope string; the cache key must stay short and clean.
    make_block(agent, item_id="a")
    scope = {"surface": "x\x01" * 300, "region": "\u2028" * 50}
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheKeyWarning)
        first = serving_client.get(SNAPSHOT, scope)
        with django_assert_max_num_queries(1):  # the version at most: cached
            again = serving_client.get(SNAPSHOT, scope)

    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert [rule["item_id"] for rule in first.json()["blocked"]] == ["a"]


def test_snapshot__scope_with_nul__only_rules_for_all(serving_client, agent):
    # PostgreSQL refuses a NUL in a query; no configured code can hold one
    make_block(agent, item_id="everywhere")
    make_block(agent, item_id="home-only", surface="home")

    response = serving_client.get(SNAPSHOT, {"surface": "ho\x00me", "region": "\x00"})

    assert response.status_code == 200
    assert [rule["item_id"] for rule in response.json()["blocked"]] == ["everywhere"]


def test_snapshot__etag_then_304_until_a_change(
    serving_client, agent, django_capture_on_commit_callbacks
):
    make_block(agent, item_id="a")
    first = serving_client.get(SNAPSHOT)
    assert first["ETag"] == '"1"'
    not_modified = serving_client.get(SNAPSHOT, HTTP_IF_NONE_MATCH='"1"')
    assert not_modified.status_code == 304 and not_modified.content == b""
    with django_capture_on_commit_callbacks(execute=True):  # announces the version
        make_block(agent, item_id="b")
    changed = serving_client.get(SNAPSHOT, HTTP_IF_NONE_MATCH='"1"')
    assert changed.status_code == 200 and changed["ETag"] == '"2"'


def test_snapshot__304_path__no_rule_query(
    serving_client, agent, django_assert_max_num_queries
):
    make_block(agent, item_id="a")
    serving_client.get(SNAPSHOT)
    with django_assert_max_num_queries(1):  # the version (none when it is in Redis)
        assert serving_client.get(SNAPSHOT, HTTP_IF_NONE_MATCH='"1"').status_code == 304


# Rank -----------------------------------------------------------------------------


def test_rank__contract_example__removed_boosted_sorted(serving_client, agent, manager):
    block = make_block(agent, item_id="sku-1")
    boost = make_boost(manager, item_id="sku-9", factor=2.0, surface="home")
    response = _post(
        serving_client,
        RANK,
        {
            "customer_id": "c-123",
            "surface": "home",
            "region": "SG",
            "candidates": _candidates(
                ("sku-1", 0.93), ("sku-9", 0.40), ("sku-5", 0.70)
            ),
        },
    )
    assert response.status_code == 200
    assert response.json() == {
        "version": 2,
        "personalized": True,
        "items": [
            {
                "item_id": "sku-9",
                "score": 0.8,
                "original_score": 0.4,
                "boosted": True,
                "rule_id": boost.pk,
            },
            {"item_id": "sku-5", "score": 0.7, "original_score": 0.7, "boosted": False},
        ],
        "removed": [{"item_id": "sku-1", "reason": "blocked", "rule_id": block.pk}],
    }


def test_rank__opted_out_customer__not_personalized(serving_client, officer):
    services.optout_register(
        customer_id="c-9", kinds=["personalization"], source="T-1", actor=officer
    )
    body = _post(
        serving_client,
        RANK,
        {"customer_id": "c-9", "candidates": _candidates(("a", 1))},
    ).json()
    assert body["personalized"] is False
    other = _post(
        serving_client,
        RANK,
        {"customer_id": "c-10", "candidates": _candidates(("a", 1))},
    )
    assert other.json()["personalized"] is True


def test_rank__training_opt_out_only__still_personalized(serving_client):
    services.optout_register(customer_id="c-9", kinds=["training"], source="T-1")
    body = _post(
        serving_client,
        RANK,
        {"customer_id": "c-9", "candidates": _candidates(("a", 1))},
    ).json()
    assert body["personalized"] is True


def test_rank__change_after_first_request__seen_on_the_next(
    serving_client, agent, django_capture_on_commit_callbacks
):
    body = {"candidates": _candidates(("a", 1.0))}
    assert _post(serving_client, RANK, body).json()["removed"] == []
    with django_capture_on_commit_callbacks(execute=True):  # announces the version
        make_block(agent, item_id="a")
    assert _post(serving_client, RANK, body).json()["removed"][0]["item_id"] == "a"


def test_rank__common_case__no_query_for_rules(
    serving_client, agent, django_assert_num_queries, settings
):
    make_block(agent, item_id="a")
    body = {"surface": "home", "candidates": _candidates(("a", 1.0), ("b", 0.5))}
    _post(serving_client, RANK, body)  # warm: loads the rules once
    with django_assert_num_queries(0):  # the version is remembered for 0.1 s
        assert _post(serving_client, RANK, body).status_code == 200
    settings.SERVING_VERSION_MEMO_SECONDS = 0
    time.sleep(0.11)  # let the remembered version lapse
    expected = 0 if settings.REDIS_URL else 1  # the version check alone
    with django_assert_num_queries(expected):
        assert _post(serving_client, RANK, body).status_code == 200
    with django_assert_num_queries(expected + 1):  # + the opt-out lookup
        _post(serving_client, RANK, {**body, "customer_id": "c-1"})


def test_rank__change_in_another_process__seen_once_the_memo_expires(
    serving_client, agent, settings
):
    settings.SERVING_VERSION_MEMO_SECONDS = 0.05
    body = {"candidates": _candidates(("a", 1.0))}
    _post(serving_client, RANK, body)
    make_block(agent, item_id="a")  # no commit hook here: as if another process
    if settings.REDIS_URL:
        from django.core.cache import cache

        cache.delete(serving.VERSION_CACHE_KEY)  # what the TTL does there
    time.sleep(0.06)
    assert _post(serving_client, RANK, body).json()["removed"][0]["item_id"] == "a"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "candidates"),
        ({"candidates": []}, "candidates"),
        ({"candidates": "sku-1"}, "candidates"),
        (
            {
                "candidates": [
                    {"item_id": "a", "score": 1},
                    {"item_id": "a", "score": 2},
                ]
            },
            "candidates",
        ),
        ({"candidates": [{"item_id": "a", "score": "high"}]}, "candidates"),
        ({"candidates": [{"item_id": "a", "score": True}]}, "candidates"),
        ({"candidates": [{"item_id": "a b", "score": 1}]}, "candidates"),
        ({"candidates": [{"item_id": "", "score": 1}]}, "candidates"),
        ({"candidates": [{"item_id": "x" * 129, "score": 1}]}, "candidates"),
        ({"candidates": [{"score": 1}]}, "candidates"),
        ({"candidates": [["a", 1]]}, "candidates"),
        ({"surface": 5, "candidates": [{"item_id": "a", "score": 1}]}, "surface"),
        (
            {"customer_id": "c 1", "candidates": [{"item_id": "a", "score": 1}]},
            "customer_id",
        ),
        (
            {"customer_id": "", "candidates": [{"item_id": "a", "score": 1}]},
            "customer_id",
        ),
    ],
)
def test_rank__bad_input__400_naming_the_field(serving_client, body, field):
    response = _post(serving_client, RANK, body)
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_rank__candidates_with_extra_keys__answer_has_the_contract_keys_only(
    serving_client, manager
):
    make_boost(manager, item_id="b", factor=2.0)
    body = {
        "candidates": [
            {"item_id": "a", "score": 0.5, "note": "x"},
            {"score": 0.3, "item_id": "b"},
        ]
    }
    items = _post(serving_client, RANK, body).json()["items"]
    assert items[0] == {
        "item_id": "b",
        "score": 0.6,
        "original_score": 0.3,
        "boosted": True,
        "rule_id": items[0]["rule_id"],
    }
    assert items[1] == {
        "item_id": "a",
        "score": 0.5,
        "original_score": 0.5,
        "boosted": False,
    }


def test_rank__10001_candidates__400(serving_client):
    body = {"candidates": [{"item_id": f"i{n}", "score": 1.0} for n in range(10_001)]}
    response = _post(serving_client, RANK, body)
    assert response.status_code == 400
    assert "At most 10000" in response.json()["error"]["message"]


def test_rank__10000_candidates_with_a_duplicate__400_names_it(serving_client):
    candidates = [{"item_id": f"i{n}", "score": 1.0} for n in range(9_999)]
    candidates.append({"item_id": "i42", "score": 0.5})
    response = _post(serving_client, RANK, {"candidates": candidates})
    assert response.status_code == 400
    assert "duplicate item_id 'i42'" in response.json()["error"]["message"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_rank__non_finite_score__400(serving_client, literal):
    body = '{"candidates": [{"item_id": "a", "score": ' + literal + "}]}"
    response = serving_client.post(RANK, body, content_type="application/json")
    assert response.status_code == 400


def test_rank__finite_scores_whose_sum_overflows__accepted(serving_client):
    # (finiteness is first asked of the scores' sum, which overflows here)
    candidates = _candidates(("a", 1.7e308), ("b", 1.7e308), ("c", -1.7e308))
    response = _post(serving_client, RANK, {"candidates": candidates})
    assert response.status_code == 200, response.content
    assert [item["item_id"] for item in response.json()["items"]] == ["a", "b", "c"]


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_candidate_columns__a_non_finite_score_among_many__names_it(bad):
    # (strict JSON cannot carry one; the preview's parsed input can)
    candidates = [{"item_id": f"i{n}", "score": 0.5} for n in range(500)]
    candidates[499]["score"] = bad
    with pytest.raises(
        ServingError, match=r"Item 499: score must be a finite number\."
    ):
        candidate_columns(candidates)


def test_rank__malformed_or_deeply_nested_json__400(serving_client):
    assert (
        serving_client.post(
            RANK, "{not json", content_type="application/json"
        ).status_code
        == 400
    )
    nested = "[" * 100_000 + "]" * 100_000
    assert (
        serving_client.post(RANK, nested, content_type="application/json").status_code
        == 400
    )


def test_rank__body_over_the_limit__413(serving_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = {"candidates": [{"item_id": f"item-{n}", "score": 0.5} for n in range(100)]}
    response = _post(serving_client, RANK, body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"


# Opt-out check --------------------------------------------------------------------


def test_optouts_check__lists_the_given_ids_that_opted_out_per_kind(serving_client):
    services.optout_register(
        customer_id="c-1", kinds=["personalization", "training"], source="T-1"
    )
    services.optout_register(customer_id="c-2", kinds=["training"], source="T-2")
    services.optout_register(customer_id="c-3", kinds=["training"], source="T-3")
    services.optout_withdraw(customer_id="c-3", kinds=["training"], source="T-4")
    response = _post(
        serving_client, OPTOUTS, {"customer_ids": ["c-1", "c-2", "c-3", "c-4"]}
    )
    assert response.json() == {"personalization": ["c-1"], "training": ["c-1", "c-2"]}


@pytest.mark.parametrize("key", ["k", "x" * 64, "long-" * 40])
def test_hash_customer_ids__same_as_one_by_one_hmac__any_key_length(settings, key):
    settings.CUSTOMER_ID_HMAC_KEY = key
    raw_ids = ["c-1", "C-1", "é-2", 'quote"d', "x" * 256]
    assert hash_customer_ids(raw_ids) == {hash_customer_id(raw): raw for raw in raw_ids}
    assert (
        hash_customer_id("c-1")
        == hmac.new(key.encode(), b"c-1", hashlib.sha256).hexdigest()
    )


def test_optouts_check__repeated_and_unicode_ids__each_listed_once(serving_client):
    services.optout_register(customer_id="kunde-ü", kinds=["training"], source="T")
    body = {"customer_ids": ["kunde-ü", "c-2", "kunde-ü"]}
    assert _post(serving_client, OPTOUTS, body).json() == {
        "personalization": [],
        "training": ["kunde-ü"],
    }


def test_optouts_check__one_query_for_many_ids(
    serving_client, django_assert_num_queries
):
    ids = [f"c-{n}" for n in range(1000)]
    _post(serving_client, OPTOUTS, {"customer_ids": ids[:1]})
    with django_assert_num_queries(1):
        assert _post(serving_client, OPTOUTS, {"customer_ids": ids}).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"customer_ids": []},
        {"customer_ids": "c-1"},
        {"customer_ids": ["c 1"]},
        {"customer_ids": [""]},
        {"customer_ids": [7]},
        {"customer_ids": ["c"] * 10_001},
    ],
)
def test_optouts_check__bad_input__400(serving_client, body):
    response = _post(serving_client, OPTOUTS, body)
    assert response.status_code == 400
    assert "customer_ids" in response.json()["error"]["fields"]


# Changes --------------------------------------------------------------------------


def test_changes__since__later_changes_in_order(serving_client, agent):
    first = make_block(agent, item_id="a")
    services.lift_block(block_id=first.pk, reason="Fixed", actor=agent)
    make_boost(agent_boost_actor(agent), item_id="b")
    body = serving_client.get(CHANGES, {"since": 1}).json()
    assert body["version"] == 3 and body["has_more"] is False
    assert [(change["version"], change["action"]) for change in body["changes"]] == [
        (2, "unblock"),
        (3, "boost"),
    ]
    assert body["changes"][0]["rule"]["id"] == first.pk


def agent_boost_actor(agent):
    return agent  # services do not check roles; the API and pages do


def test_changes__up_to_date__empty(serving_client, agent):
    make_block(agent, item_id="a")
    assert serving_client.get(CHANGES, {"since": 1}).json() == {
        "version": 1,
        "changes": [],
        "has_more": False,
    }


def test_changes__paged__has_more(serving_client, agent, settings):
    settings.SERVING_CHANGES_PAGE = 2
    for number in range(3):
        make_block(agent, item_id=f"i{number}")
    body = serving_client.get(CHANGES, {"since": 0}).json()
    assert [change["version"] for change in body["changes"]] == [1, 2]
    assert body["has_more"] is True


def test_changes__older_than_history__410(serving_client, agent):
    for number in range(3):
        make_block(agent, item_id=f"i{number}")
    OverrideChange.objects.filter(version__lte=2).delete()
    assert serving_client.get(CHANGES, {"since": 2}).status_code == 200
    response = serving_client.get(CHANGES, {"since": 1})
    assert response.status_code == 410
    assert "snapshot" in response.json()["error"]["message"]


@pytest.mark.parametrize("since", ["", "abc", "-1", "1.5"])
def test_changes__bad_since__400(serving_client, since):
    assert serving_client.get(CHANGES, {"since": since}).status_code == 400


# Heartbeat ------------------------------------------------------------------------


def test_heartbeat__records_instance_and_answers_current_version(serving_client, agent):
    make_block(agent)
    response = _post(
        serving_client, HEARTBEAT, {"instance": "serving-eu-1", "version": 1}
    )
    assert response.json() == {"version": 1}
    _post(serving_client, HEARTBEAT, {"instance": "serving-eu-1", "version": 2})
    instance = ServingInstance.objects.get()
    assert (instance.name, instance.version) == ("serving-eu-1", 2)
    assert instance.api_key == ApiKey.objects.get()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"version": 1}, "instance"),
        ({"instance": "a b", "version": 1}, "instance"),
        ({"instance": "x"}, "version"),
        ({"instance": "x", "version": -1}, "version"),
        ({"instance": "x", "version": "7"}, "version"),
    ],
)
def test_heartbeat__bad_input__400(serving_client, body, field):
    response = _post(serving_client, HEARTBEAT, body)
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert not ServingInstance.objects.exists()


def test_rank__after_changes__catches_up_through_the_feed_without_a_snapshot(
    serving_client, agent, monkeypatch, django_capture_on_commit_callbacks
):
    body = {"candidates": _candidates(("a", 1.0), ("b", 0.5))}
    _post(serving_client, RANK, body)  # first request: built from a snapshot
    snapshots = []
    build = selectors.serving_snapshot
    monkeypatch.setattr(
        selectors, "serving_snapshot", lambda **kw: snapshots.append(kw) or build(**kw)
    )
    with django_capture_on_commit_callbacks(execute=True):
        block = make_block(agent, item_id="a")
        make_block(agent, item_id="b")
        services.lift_block(block_id=block.pk, reason="Fixed", actor=agent)

    result = _post(serving_client, RANK, body).json()

    assert [removed["item_id"] for removed in result["removed"]] == ["b"]
    assert result["version"] == 3
    assert snapshots == []


def test_rank__feed_pruned_past_its_version__rebuilt_from_a_snapshot(
    serving_client, agent, django_capture_on_commit_callbacks
):
    body = {"candidates": _candidates(("a", 1.0), ("b", 0.5))}
    _post(serving_client, RANK, body)
    with django_capture_on_commit_callbacks(execute=True):
        make_block(agent, item_id="a")
        make_block(agent, item_id="b")
    OverrideChange.objects.filter(version=1).delete()

    result = _post(serving_client, RANK, body).json()

    assert sorted(removed["item_id"] for removed in result["removed"]) == ["a", "b"]


def test_heartbeat__version_beyond_the_database_range__400(serving_client):
    response = serving_client.post(
        HEARTBEAT,
        {"instance": "serving-eu-1", "version": 2**63},
        content_type="application/json",
    )

    assert response.status_code == 400
    assert not ServingInstance.objects.exists()
