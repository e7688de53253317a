"""The Python client against a live console: freshness, push, disk, failure policy."""

import json
import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import requests
from django.db import transaction
from django.utils import timezone

from opsconsole_client import OverridesAuthError, OverridesClient, OverridesUnavailable
from overrides import services
from overrides.models import OverrideChange, ServingInstance
from tests.conftest import ROOT, wait_until
from tests.factories import make_block, make_boost

from .conftest import DEAD_CONSOLE_URL

pytestmark = pytest.mark.django_db(transaction=True)

CANDIDATES = [
    {"item_id": "sku-1", "score": 0.9},
    {"item_id": "sku-2", "score": 0.3},
    {"item_id": "sku-3", "score": 0.8},
    {"item_id": "sku-4", "score": 0.7},
    {"item_id": "sku-5", "score": 0.6},
    {"item_id": "sku-6", "score": 0.25},
    {"item_id": "sku-7", "score": 0.5},
    {"item_id": "sku-8", "score": 0.5},
]


def _item_ids(ranked: dict, key: str = "items") -> list[str]:
    return [entry["item_id"] for entry in ranked[key]]


def _dead_client(**options) -> OverridesClient:
    options.setdefault("poll_interval", 0.05)
    return OverridesClient(DEAD_CONSOLE_URL, "ock_not-a-real-key", **options)


def _break(monkeypatch, client: OverridesClient) -> None:
    """From now on every request the client makes fails as if the console were down."""

    def unreachable(*args, **kwargs):
        raise requests.ConnectionError("console down (test)")

    for session in (client._session, client._lookup_session):
        monkeypatch.setattr(session, "get", unreachable)
        monkeypatch.setattr(session, "post", unreachable)


def test_import__fresh_interpreter__does_not_import_django():
    code = (
        "import sys, opsconsole_client, opsconsole_client.client; "
        "assert opsconsole_client.OverridesClient; "
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('django', 'rest_framework', 'overrides', 'opsconsole')); "
        "assert not leaked, leaked"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_rank__initial_snapshot__matches_server_rank(
    make_client, live_server, api_key, agent, manager
):
    # Given rules in and out of the client's scope, a scheduled block, boosts that
    # stack in different scopes, and a customer who opted out of personalisation
    tomorrow = timezone.now() + timedelta(days=1)
    make_block(agent, "sku-1")
    make_block(agent, "sku-3", surface="home", region="SA")
    make_block(agent, "sku-4", surface="search", region="SG")
    make_block(agent, "sku-5", surface="home", region="SG")
    make_block(agent, "sku-8", starts_at=tomorrow)
    make_boost(manager, "sku-2", factor=2.0)
    make_boost(manager, "sku-6", factor=1.5)
    make_boost(manager, "sku-6", factor=3.0, surface="home", region="SG")
    make_boost(manager, "sku-1", factor=4.0)
    services.optout_register(
        customer_id="c-out", kinds=["personalization"], source="ticket-1"
    )

    # When the client ranks locally and the console ranks the same request
    client = make_client(surface="home", region="SG")
    for customer_id in ("c-out", "c-in"):
        local = client.rank(CANDIDATES, customer_id=customer_id).to_response()
        response = requests.post(
            f"{live_server.url}/api/v1/serving/rank",
            json={
                "surface": "home",
                "region": "SG",
                "customer_id": customer_id,
                "candidates": CANDIDATES,
            },
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=5,
        )
        assert response.status_code == 200, response.text

        # Then both answers are the same, to the float
        assert local == response.json()
    assert local["personalized"] is True
    assert (
        client.rank(CANDIDATES, customer_id="c-out").to_response()["personalized"]
        is False
    )
    assert _item_ids(local, "removed") == ["sku-1", "sku-5"]
    assert _item_ids(local) == ["sku-3", "sku-6", "sku-4", "sku-2", "sku-7", "sku-8"]
    # The larger of the two boosts that apply, not their product
    assert local["items"][1] == {
        "item_id": "sku-6",
        "score": 0.75,
        "original_score": 0.25,
        "boosted": True,
        "rule_id": local["items"][1]["rule_id"],
    }
    assert client.version == local["version"] == 9
    assert client.is_blocked("sku-5")
    assert not client.is_blocked("sku-3")
    assert client.is_blocked("sku-8", now=tomorrow.timestamp() + 1)


def test_refresh__block_made_while_running__visible_within_a_second(
    make_client, db_turn, agent
):
    client = make_client(surface="home", region="SG", poll_interval=0.5)
    assert client.is_blocked("sku-1") is False

    with db_turn():
        block = make_block(agent, "sku-1", surface="home")
    made_at = time.monotonic()

    wait_until(lambda: client.is_blocked("sku-1"), timeout=1.0, interval=0.01)
    assert time.monotonic() - made_at < 1.0
    assert client.version == block.changed_version


def test_changes__after_first_snapshot__arrive_as_deltas_not_snapshots(
    make_client, db_turn, request_log, agent, manager
):
    # Given a client that has its first snapshot
    client = make_client(surface="home", region="SG", start=False)
    log = request_log(client._session)
    client.start()

    # When rules are added and removed, in and out of its scope
    with db_turn():
        blocked = make_block(agent, "sku-1")
        boost = make_boost(manager, "sku-2", factor=2.0, region="SG")
        make_block(agent, "sku-3", region="SA")
        services.lift_block(block_id=blocked.pk, reason="Back in stock", actor=agent)
    wait_until(lambda: client.version == boost.changed_version + 2, timeout=2.0)

    # Then it holds exactly the rules that apply to it, fetched from `changes`
    assert not client.is_blocked("sku-1")
    ranked = client.rank(CANDIDATES[:3]).to_response()
    assert _item_ids(ranked) == ["sku-1", "sku-3", "sku-2"]
    assert ranked["items"][2]["boosted"] is True
    rules = client._rules
    assert [rule["item_id"] for rule in rules.blocks.values()] == []
    assert [rule["item_id"] for rule in rules.boosts.values()] == ["sku-2"]
    paths = [url.rsplit("/", 1)[-1] for url, _params in log]
    assert paths.count("snapshot") == 1
    assert paths.count("changes") >= 1


def test_refresh__redis_unreachable__falls_back_to_polling(make_client, db_turn, agent):
    client = make_client(redis_url="redis://127.0.0.1:9/0", poll_interval=0.1)

    with db_turn():
        make_block(agent, "sku-1")

    wait_until(lambda: client.is_blocked("sku-1"), timeout=1.0, interval=0.01)


@pytest.mark.services
def test_push__redis_announcement__applied_before_the_next_poll(
    make_client, db_turn, request_log, agent, settings
):
    import redis

    # A channel of our own: other test runs publish on the default one.
    settings.OVERRIDES_CHANNEL = f"opsconsole:overrides:test-client-{os.getpid()}"
    client = make_client(
        redis_url=os.environ["REDIS_URL"],
        channel=settings.OVERRIDES_CHANNEL,
        poll_interval=30.0,
        start=False,
    )
    log = request_log(client._session)
    client.start()
    listener = redis.Redis.from_url(os.environ["REDIS_URL"])
    wait_until(
        lambda: dict(listener.pubsub_numsub(settings.OVERRIDES_CHANNEL)).get(
            settings.OVERRIDES_CHANNEL.encode()
        ),
        timeout=2.0,
        interval=0.01,
    )
    changes_before = sum(url.endswith("/changes") for url, _params in log)

    with db_turn():
        block = make_block(agent, "sku-1")
    made_at = time.monotonic()

    wait_until(lambda: client.is_blocked("sku-1"), timeout=1.0, interval=0.005)
    elapsed = time.monotonic() - made_at
    assert elapsed < 0.5, f"took {elapsed:.3f} s"
    assert client.version == block.changed_version
    assert sum(url.endswith("/changes") for url, _params in log) > changes_before
    assert sum(url.endswith("/snapshot") for url, _params in log) == 1
    listener.close()


@pytest.mark.parametrize("saved", [None, "{not json", '{"format": 99}'])
def test_console_down_at_start__no_usable_disk_snapshot__blocks_fail_closed(
    tmp_path, saved
):
    path = tmp_path / "rules.json"
    if saved is not None:
        path.write_text(saved)
    client = _dead_client(snapshot_path=path)
    try:
        assert client.version is None
        assert client.stale_seconds is None
        with pytest.raises(OverridesUnavailable):
            client.rank(CANDIDATES).to_response()
        with pytest.raises(OverridesUnavailable):
            client.is_blocked("sku-1")
    finally:
        client.close()


def test_console_down_at_start__disk_snapshot__serves_it(
    make_client, db_turn, tmp_path, agent, manager
):
    # Given a client that saw a block and a boost, and saved them on close
    path = tmp_path / "rules" / "home-SG.json"
    first = make_client(surface="home", region="SG", snapshot_path=path)
    with db_turn():
        block = make_block(agent, "sku-1")
    wait_until(lambda: first.version == block.changed_version, timeout=2.0)
    with db_turn():
        make_boost(manager, "sku-2", factor=2.0)
    wait_until(lambda: first.version == block.changed_version + 1, timeout=2.0)
    first.close()
    assert json.loads(path.read_text())["snapshot"]["version"] == first.version
    assert [file.name for file in path.parent.iterdir()] == ["home-SG.json"]

    # When a new client starts for the same scope while the console is down
    second = _dead_client(surface="home", region="SG", snapshot_path=path)
    try:
        # Then it serves the saved rules, boosts included (they are recent)
        assert second.version == first.version
        assert second.is_blocked("sku-1")
        ranked = second.rank(CANDIDATES[:3]).to_response()
        assert _item_ids(ranked, "removed") == ["sku-1"]
        assert ranked["items"][1] == {
            "item_id": "sku-2",
            "score": 0.6,
            "original_score": 0.3,
            "boosted": True,
            "rule_id": ranked["items"][1]["rule_id"],
        }
        assert second.stale_seconds < 5
    finally:
        second.close()

    # And a client for another scope does not trust that file
    other = _dead_client(surface="home", region="SA", snapshot_path=path)
    try:
        with pytest.raises(OverridesUnavailable):
            other.is_blocked("sku-1")
    finally:
        other.close()


def test_console_down_mid_run__keeps_blocks__drops_boosts_once_stale(
    make_client, monkeypatch, agent, manager
):
    # Given a running client with a block and a boost
    make_block(agent, "sku-1")
    make_boost(manager, "sku-2", factor=2.0)
    client = make_client(max_boost_staleness=0.3)
    version = client.version
    assert client.rank(CANDIDATES[:3]).to_response()["items"][1]["boosted"] is True

    # When the console stops answering
    _break(monkeypatch, client)

    # Then the last rules keep applying, boosts only until they are too old
    assert client.rank(CANDIDATES[:3]).to_response()["items"][1]["boosted"] is True
    wait_until(lambda: client.stale_seconds > 0.3, timeout=2.0, interval=0.02)
    ranked = client.rank(CANDIDATES[:3]).to_response()
    assert _item_ids(ranked, "removed") == ["sku-1"]
    assert ranked["items"] == [
        {"item_id": "sku-3", "score": 0.8, "original_score": 0.8, "boosted": False},
        {"item_id": "sku-2", "score": 0.3, "original_score": 0.3, "boosted": False},
    ]
    assert client.is_blocked("sku-1")
    assert client.version == version
    # And customers it cannot ask about are not personalised
    assert ranked["personalized"] is True
    assert (
        client.rank(CANDIDATES, customer_id="c-1").to_response()["personalized"]
        is False
    )


def test_optouts__console_unreachable_nothing_cached__fail_closed():
    client = _dead_client()
    try:
        assert client.is_opted_out("c-1") is True
        assert client.is_opted_out("c-1", kind="training") is True
        assert client.check_optouts(["c-1", "c-2"]) == {
            "personalization": {"c-1", "c-2"},
            "training": {"c-1", "c-2"},
        }
    finally:
        client.close()


def test_optouts__within_cache_ttl__answered_without_a_request(
    make_client, request_log, monkeypatch
):
    services.optout_register(
        customer_id="c-out", kinds=["personalization"], source="ticket-1"
    )
    client = make_client(optout_cache_seconds=30.0)
    log = request_log(client._lookup_session)

    assert client.is_opted_out("c-out") is True
    assert client.is_opted_out("c-out") is True
    assert client.is_opted_out("c-out", kind="training") is False
    assert len(log) == 1

    # Only the ids not cached yet are asked about
    assert client.check_optouts(["c-out", "c-in"]) == {
        "personalization": {"c-out"},
        "training": set(),
    }
    assert len(log) == 2

    # A cached answer still holds while the console is down
    _break(monkeypatch, client)
    assert client.is_opted_out("c-in") is False
    assert client.is_opted_out("c-new") is True


def test_optouts__cache_expired__asks_again(make_client, request_log):
    client = make_client(optout_cache_seconds=0.05)
    log = request_log(client._lookup_session)
    assert client.is_opted_out("c-1") is False
    time.sleep(0.06)
    assert client.is_opted_out("c-1") is False
    assert len(log) == 2


def test_heartbeat__reports_the_version__again_right_after_a_change(
    make_client, db_turn, agent
):
    make_block(agent, "sku-1")
    client = make_client(instance="serving-test-1", heartbeat_interval=300.0)

    def reported(version):
        with db_turn():
            return ServingInstance.objects.filter(
                name="serving-test-1", version=version
            ).exists()

    wait_until(lambda: reported(client.version), timeout=2.0)

    with db_turn():
        block = make_block(agent, "sku-2")
    wait_until(lambda: reported(block.changed_version), timeout=2.0)


def test_changes_gone__falls_back_to_a_snapshot(make_client, db_turn, agent):
    # Given a client that polls rarely, and changes it missed that were pruned
    client = make_client(poll_interval=30.0, start=False)
    statuses = []
    client._session.hooks["response"].append(
        lambda response, **kwargs: statuses.append(
            (response.url.split("?")[0].rsplit("/", 1)[-1], response.status_code)
        )
    )
    client.start()
    with db_turn(), transaction.atomic():
        block = make_block(agent, "sku-1")
        OverrideChange.objects.all().delete()

    # When it catches up
    assert client.refresh() == block.changed_version

    # Then the feed said 410 and it took a snapshot instead
    assert client.is_blocked("sku-1")
    reads = [entry for entry in statuses if entry[0] != "heartbeat"]
    assert reads[0] == ("snapshot", 200)
    assert ("changes", 410) in reads
    assert reads[reads.index(("changes", 410)) + 1] == ("snapshot", 200)


def test_bad_key__start__raises_auth_error(live_server, transactional_db):
    with pytest.raises(OverridesAuthError, match="401"):
        OverridesClient(live_server.url, "ock_wrong-key")


def test_key_without_serving_scope__start__raises_auth_error(
    live_server, transactional_db
):
    from opsconsole.services import api_key_create

    _key, raw_key = api_key_create(name="writer", scopes=["overrides:write"])
    with pytest.raises(OverridesAuthError, match="403"):
        OverridesClient(live_server.url, raw_key)
