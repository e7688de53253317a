"""The overrides REST API (contract, Overrides): roles, refused input, flows, schema."""

from datetime import UTC, timedelta

import pytest
from django.db import OperationalError
from django.test import Client
from django.urls import include, path
from django.utils import timezone
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema

from overrides import selectors, services
from overrides.models import Block, Boost, OverrideChange
from tests.factories import CatalogItemFactory, UserFactory, make_block, make_boost

BLOCKS = "/api/v1/blocks"
BOOSTS = "/api/v1/boosts"
BULK = "/api/v1/blocks/bulk"
AUDIT = "/api/v1/audit"

BLOCK_FIELDS = {
    "id",
    "item_id",
    "item_title",
    "surface",
    "region",
    "reason",
    "status",
    "starts_at",
    "expires_at",
    "created_at",
    "created_by",
    "lifted_at",
    "lifted_by",
    "lift_reason",
}
BOOST_FIELDS = {
    "id",
    "item_id",
    "item_title",
    "factor",
    "surface",
    "region",
    "reason",
    "status",
    "starts_at",
    "ends_at",
    "created_at",
    "created_by",
    "ended_at",
    "ended_by",
    "end_reason",
}

pytestmark = pytest.mark.django_db


def iso(moment) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def in_days(days: float) -> str:
    return iso(timezone.now() + timedelta(days=days))


def in_days_dt(days: float):
    return timezone.now() + timedelta(days=days)


def post_json(client, url: str, body, **extra):
    return client.post(url, body, content_type="application/json", **extra)


def block_body(**changes) -> dict:
    body = {
        "item_id": "sku-1",
        "surface": "home",
        "region": "SG",
        "reason": "Recalled by the supplier",
    }
    body.update(changes)
    return body


def boost_body(**changes) -> dict:
    body = {
        "item_id": "sku-9",
        "factor": 2.0,
        "surface": "home",
        "region": None,
        "reason": "Launch week",
        "ends_at": in_days(7),
    }
    body.update(changes)
    return body


def written() -> tuple:
    """Everything a write touches; a refused request must leave it unchanged."""
    return (
        Block.objects.count(),
        Boost.objects.count(),
        OverrideChange.objects.count(),
        selectors.current_version(),
    )


def assert_error(response, status: int, code: str | None = None) -> dict:
    """The contract's error format: {"error": {"code", "message", "fields"}}."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert {"code", "message", "fields"} <= set(error)
    assert error["message"]
    if code:
        assert error["code"] == code
    return error


@pytest.fixture
def agent_client(agent, client_for):
    return client_for(agent)


@pytest.fixture
def manager_client(manager, client_for):
    return client_for(manager)


@pytest.fixture
def admin_client(admin_user, client_for):
    return client_for(admin_user)


@pytest.fixture
def rules(admin_user):
    """One block and one boost, so the detail and action paths exist."""
    return {
        "block": make_block(admin_user, item_id="sku-existing"),
        "boost": make_boost(admin_user, item_id="sku-existing"),
    }


# Authentication and roles ----------------------------------------------------------

ENDPOINTS = [
    ("get", BLOCKS),
    ("post", BLOCKS),
    ("get", BLOCKS + "/{block}"),
    ("post", BLOCKS + "/{block}/lift"),
    ("post", BULK),
    ("get", BOOSTS),
    ("post", BOOSTS),
    ("get", BOOSTS + "/{boost}"),
    ("post", BOOSTS + "/{boost}/end"),
    ("get", AUDIT),
]


def _call(client, method: str, url: str, rules: dict):
    url = url.format(block=rules["block"].pk, boost=rules["boost"].pk)
    if method == "get":
        return client.get(url)
    return post_json(client, url, {"reason": "x"})


@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
def test_endpoint__anonymous__401_in_contract_format(method, url, rules):
    before = written()

    response = _call(Client(), method, url, rules)

    assert_error(response, 401, "unauthenticated")
    assert written() == before


@pytest.mark.parametrize(
    ("role", "method", "url"),
    [
        ("account_manager", "post", BLOCKS),
        ("account_manager", "post", BLOCKS + "/{block}/lift"),
        ("account_manager", "post", BULK),
        ("support_agent", "post", BOOSTS),
        ("support_agent", "post", BOOSTS + "/{boost}/end"),
        ("privacy_officer", "get", BLOCKS),
        ("privacy_officer", "get", BLOCKS + "/{block}"),
        ("privacy_officer", "get", BOOSTS),
        ("support_agent", "get", AUDIT),
        ("account_manager", "get", AUDIT),
        ("privacy_officer", "get", AUDIT),
    ],
)
def test_endpoint__wrong_role__403_names_the_needed_role(
    role, method, url, users, rules, client_for
):
    before = written()

    response = _call(client_for(users[role]), method, url, rules)

    error = assert_error(response, 403, "forbidden")
    assert "role" in error["message"]
    assert written() == before


@pytest.mark.parametrize(
    ("role", "url"),
    [
        ("account_manager", BLOCKS),
        ("support_agent", BLOCKS),
        ("support_agent", BOOSTS),
        ("account_manager", BOOSTS),
        ("admin", AUDIT),
    ],
)
def test_list__reading_role__200_paginated(role, url, users, rules, client_for):
    response = client_for(users[role]).get(url)

    assert response.status_code == 200
    body = response.json()
    assert {"count", "next", "previous", "results"} <= set(body)


# Blocks ----------------------------------------------------------------------------


def test_create_block__agent__201_with_the_block(agent_client):
    CatalogItemFactory(item_id="sku-1", title="Garden hose")

    response = post_json(agent_client, BLOCKS, block_body())

    assert response.status_code == 201, response.content
    data = response.json()
    assert set(data) == BLOCK_FIELDS | {"warnings"}
    block = Block.objects.get()
    assert data["id"] == block.pk
    assert data["item_id"] == "sku-1"
    assert data["item_title"] == "Garden hose"
    assert data["warnings"] == []
    assert (data["surface"], data["region"]) == ("home", "SG")
    assert data["status"] == "active"
    assert data["created_by"] == "support-agent"
    assert data["reason"] == "Recalled by the supplier"
    assert data["expires_at"] is None
    assert data["lifted_at"] is data["lifted_by"] is data["lift_reason"] is None
    assert data["starts_at"].endswith("Z")
    assert data["created_at"].endswith("Z")
    assert OverrideChange.objects.get().action == "block"


def test_create_block__unknown_item__201_with_null_title_and_warning(agent_client):
    response = post_json(agent_client, BLOCKS, block_body(item_id="sku-x"))

    assert response.status_code == 201, response.content
    assert response.json()["item_title"] is None
    assert response.json()["warnings"] == ["Item sku-x is not in the catalog."]


def test_create_block__everywhere_and_scheduled__201_scheduled_times_in_utc(
    agent_client,
):
    starts_at = timezone.now() + timedelta(days=1)
    body = block_body(
        surface=None,
        region=None,
        starts_at=starts_at.isoformat(),
        expires_at=(starts_at + timedelta(days=2)).isoformat(),
    )

    response = post_json(agent_client, BLOCKS, body)

    assert response.status_code == 201, response.content
    data = response.json()
    assert (data["surface"], data["region"]) == (None, None)
    assert data["status"] == "scheduled"
    assert data["starts_at"] == iso(starts_at)
    assert data["expires_at"] == iso(starts_at + timedelta(days=2))


def test_create_block__offset_time__stored_and_shown_in_utc(agent_client):
    body = block_body(starts_at="2030-01-01T08:00:00+08:00")

    response = post_json(agent_client, BLOCKS, body)

    assert response.status_code == 201, response.content
    assert response.json()["starts_at"] == "2030-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"item_id": ""}, "item_id"),
        ({"item_id": "s" * 129}, "item_id"),
        ({"item_id": "sku 1"}, "item_id"),
        ({"item_id": " sku-1"}, "item_id"),
        ({"item_id": "sku-1\t"}, "item_id"),
        ({"item_id": "sku\u200b1"}, "item_id"),
        ({"item_id": 123}, "item_id"),
        ({"item_id": None}, "item_id"),
        ({"surface": "moon"}, "surface"),
        ({"surface": ""}, "surface"),
        ({"surface": 7}, "surface"),
        ({"region": "XX"}, "region"),
        ({"region": "sg"}, "region"),
        ({"reason": ""}, "reason"),
        ({"reason": "   "}, "reason"),
        ({"reason": 123}, "reason"),
        ({"reason": None}, "reason"),
        ({"starts_at": "next tuesday"}, "starts_at"),
        ({"expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
        (
            {"starts_at": in_days(3), "expires_at": in_days(2)},
            "expires_at",
        ),
    ],
    ids=lambda value: repr(value)[:40],
)
def test_create_block__bad_input__400_names_the_field_and_writes_nothing(
    changes, field, agent_client
):
    before = written()

    response = post_json(agent_client, BLOCKS, block_body(**changes))

    error = assert_error(response, 400, "invalid")
    assert field in error["fields"], error
    assert written() == before


@pytest.mark.parametrize("missing", ["item_id", "surface", "region", "reason"])
def test_create_block__missing_field__400_names_it(missing, agent_client):
    body = block_body()
    del body[missing]

    response = post_json(agent_client, BLOCKS, body)

    error = assert_error(response, 400, "invalid")
    assert missing in error["fields"]
    assert Block.objects.count() == 0


def test_create_block__unknown_surface__400_names_valid_surfaces(agent_client):
    response = post_json(agent_client, BLOCKS, block_body(surface="moon"))

    error = assert_error(response, 400, "invalid")
    message = " ".join(error["fields"]["surface"])
    assert "moon" in message
    for surface in ("email", "home", "product_page", "search"):
        assert surface in message


@pytest.mark.parametrize(
    "raw",
    ['"sku-1"', "[]", "42", "null", '{"item_id": "sku-1",'],
    ids=["string", "list", "number", "null", "malformed"],
)
def test_create_block__body_not_an_object__400(raw, agent_client):
    response = agent_client.post(BLOCKS, raw, content_type="application/json")

    assert_error(response, 400)
    assert Block.objects.count() == 0


def test_create_block__malformed_json__400_parse_error(agent_client):
    response = agent_client.post(BLOCKS, "{", content_type="application/json")

    assert_error(response, 400, "parse_error")


def test_create_block__form_encoded__415(agent_client):
    response = agent_client.post(BLOCKS, {"item_id": "sku-1"})

    assert_error(response, 415, "unsupported_media_type")


def test_create_block__duplicate_active__409_names_existing_id(agent_client, agent):
    existing = make_block(agent, item_id="sku-1", surface="home", region="SG")
    before = written()

    response = post_json(agent_client, BLOCKS, block_body())

    error = assert_error(response, 409, "conflict")
    assert error["existing_id"] == existing.pk
    assert f"#{existing.pk}" in error["message"]
    assert written() == before


def test_create_block__same_item_other_scope__201(agent_client, agent):
    make_block(agent, item_id="sku-1", surface="home", region="SG")

    response = post_json(agent_client, BLOCKS, block_body(surface="search"))

    assert response.status_code == 201, response.content
    assert Block.objects.count() == 2


def test_retrieve_block__manager__200(manager_client, rules):
    block = rules["block"]

    response = manager_client.get(f"{BLOCKS}/{block.pk}")

    assert response.status_code == 200
    assert response.json()["id"] == block.pk
    assert response.json()["created_by"] == "admin"


@pytest.mark.parametrize("block_id", ["999999", "abc", "99999999999999999999999"])
def test_retrieve_block__no_such_id__404_json(block_id, agent_client):
    response = agent_client.get(f"{BLOCKS}/{block_id}")

    assert_error(response, 404, "not_found")


def test_create_block__trailing_slash__not_routed(agent_client):
    response = post_json(agent_client, BLOCKS + "/", block_body())

    assert response.status_code == 404
    assert Block.objects.count() == 0


def test_create_block__reason_over_1000_characters__400(agent_client):
    response = post_json(agent_client, BLOCKS, block_body(reason="x" * 1001))

    error = assert_error(response, 400, "invalid")
    assert "reason" in error["fields"]


# Lifting ---------------------------------------------------------------------------


def test_lift_block__agent__200_lifted_with_actor_and_reason(agent_client, rules):
    block = rules["block"]

    response = post_json(
        agent_client, f"{BLOCKS}/{block.pk}/lift", {"reason": "Back in stock"}
    )

    assert response.status_code == 200, response.content
    data = response.json()
    assert data["status"] == "lifted"
    assert data["lifted_by"] == "support-agent"
    assert data["lift_reason"] == "Back in stock"
    assert data["lifted_at"].endswith("Z")
    assert OverrideChange.objects.order_by("version").last().action == "unblock"


def test_lift_block__twice__409(agent_client, rules):
    url = f"{BLOCKS}/{rules['block'].pk}/lift"
    post_json(agent_client, url, {"reason": "Back in stock"})
    before = written()

    response = post_json(agent_client, url, {"reason": "Again"})

    error = assert_error(response, 409, "conflict")
    assert "already lifted" in error["message"]
    assert error["existing_id"] == rules["block"].pk
    assert written() == before


def test_lift_block__expired__409(agent_client, rules):
    block = rules["block"]
    past = timezone.now() - timedelta(days=2)
    Block.objects.filter(pk=block.pk).update(
        starts_at=past, expires_at=past + timedelta(days=1)
    )

    response = post_json(agent_client, f"{BLOCKS}/{block.pk}/lift", {"reason": "x"})

    error = assert_error(response, 409, "conflict")
    assert "expired" in error["message"]


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "  "}, {"reason": 1}])
def test_lift_block__no_reason__400_and_still_active(body, agent_client, rules):
    block = rules["block"]
    before = written()

    response = post_json(agent_client, f"{BLOCKS}/{block.pk}/lift", body)

    error = assert_error(response, 400, "invalid")
    assert "reason" in error["fields"]
    assert written() == before
    block.refresh_from_db()
    assert block.withdrawn_at is None


def test_lift_block__reason_over_1000_characters__400(agent_client, rules):
    url = f"{BLOCKS}/{rules['block'].pk}/lift"

    response = post_json(agent_client, url, {"reason": "x" * 1001})

    assert_error(response, 400, "invalid")


def test_lift_block__no_such_id__404_json(agent_client):
    response = post_json(agent_client, f"{BLOCKS}/424242/lift", {"reason": "x"})

    assert_error(response, 404, "not_found")


# Boosts ----------------------------------------------------------------------------


def test_create_boost__manager__201_with_the_boost(manager_client):
    ends_at = timezone.now() + timedelta(days=7)

    response = post_json(manager_client, BOOSTS, boost_body(ends_at=iso(ends_at)))

    assert response.status_code == 201, response.content
    data = response.json()
    assert set(data) == BOOST_FIELDS | {"warnings"}
    assert data["id"] == Boost.objects.get().pk
    assert data["factor"] == 2.0
    assert data["status"] == "active"
    assert data["created_by"] == "account-manager"
    assert data["ends_at"] == iso(ends_at)
    assert data["item_title"] is None
    assert data["warnings"] == ["Item sku-9 is not in the catalog."]
    assert data["ended_at"] is data["ended_by"] is data["end_reason"] is None


@pytest.mark.parametrize("factor", [5, 1.01, 3])
def test_create_boost__factor_in_bounds__201(factor, manager_client):
    response = post_json(manager_client, BOOSTS, boost_body(factor=factor))

    assert response.status_code == 201, response.content
    assert response.json()["factor"] == factor


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"factor": 0}, "factor"),
        ({"factor": 1}, "factor"),
        ({"factor": -2}, "factor"),
        ({"factor": 5.01}, "factor"),
        ({"factor": 1e308}, "factor"),
        ({"factor": "abc"}, "factor"),
        ({"factor": "2"}, "factor"),
        ({"factor": True}, "factor"),
        ({"factor": None}, "factor"),
        ({"factor": "NaN"}, "factor"),
        ({"item_id": ""}, "item_id"),
        ({"item_id": "a b"}, "item_id"),
        ({"surface": "moon"}, "surface"),
        ({"reason": ""}, "reason"),
        ({"ends_at": None}, "ends_at"),
        ({"ends_at": "soon"}, "ends_at"),
        ({"ends_at": in_days(-1)}, "ends_at"),
        ({"starts_at": in_days(3), "ends_at": in_days(2)}, "ends_at"),
        ({"ends_at": in_days(91)}, "ends_at"),
    ],
    ids=lambda value: repr(value)[:40],
)
def test_create_boost__bad_input__400_names_the_field_and_writes_nothing(
    changes, field, manager_client
):
    before = written()

    response = post_json(manager_client, BOOSTS, boost_body(**changes))

    error = assert_error(response, 400, "invalid")
    assert field in error["fields"], error
    assert written() == before


def test_create_boost__factor_too_high__message_gives_the_bounds(manager_client):
    response = post_json(manager_client, BOOSTS, boost_body(factor=5.01))

    error = assert_error(response, 400, "invalid")
    assert "at most 5" in " ".join(error["fields"]["factor"])


def test_create_boost__bad_factor_and_bad_window__400_names_both(manager_client):
    body = boost_body(factor=9, starts_at=in_days(3), ends_at=in_days(2))

    response = post_json(manager_client, BOOSTS, body)

    error = assert_error(response, 400, "invalid")
    assert {"factor", "ends_at"} <= set(error["fields"])


def test_create_boost__without_ends_at__400(manager_client):
    body = boost_body()
    del body["ends_at"]

    response = post_json(manager_client, BOOSTS, body)

    error = assert_error(response, 400, "invalid")
    assert "ends_at" in error["fields"]


def test_create_boost__overlapping__409_names_existing_id(manager_client, manager):
    existing = make_boost(manager, item_id="sku-9", surface="home")
    before = written()
    body = boost_body(starts_at=in_days(1), ends_at=in_days(30))

    response = post_json(manager_client, BOOSTS, body)

    error = assert_error(response, 409, "conflict")
    assert error["existing_id"] == existing.pk
    assert f"#{existing.pk}" in error["message"]
    assert written() == before


def test_create_boost__after_the_existing_one_ends__201(manager_client, manager):
    make_boost(manager, item_id="sku-9", surface="home", ends_at=in_days_dt(5))
    body = boost_body(starts_at=in_days(5), ends_at=in_days(10))
    response = post_json(manager_client, BOOSTS, body)

    assert response.status_code == 201, response.content


def test_end_boost__manager__200_ended(manager_client, rules):
    boost = rules["boost"]

    response = post_json(
        manager_client, f"{BOOSTS}/{boost.pk}/end", {"reason": "Stock ran out"}
    )

    assert response.status_code == 200, response.content
    data = response.json()
    assert data["status"] == "ended"
    assert data["ended_by"] == "account-manager"
    assert data["end_reason"] == "Stock ran out"
    assert data["ended_at"].endswith("Z")


def test_end_boost__twice__409(manager_client, rules):
    url = f"{BOOSTS}/{rules['boost'].pk}/end"
    post_json(manager_client, url, {"reason": "Stock ran out"})
    before = written()

    response = post_json(manager_client, url, {"reason": "Again"})

    assert_error(response, 409, "conflict")
    assert written() == before


def test_end_boost__missing_reason__400(manager_client, rules):
    response = post_json(manager_client, f"{BOOSTS}/{rules['boost'].pk}/end", {})

    error = assert_error(response, 400, "invalid")
    assert "reason" in error["fields"]


def test_retrieve_boost__no_such_id__404_json(manager_client):
    assert_error(manager_client.get(f"{BOOSTS}/31337"), 404, "not_found")


# Filters ---------------------------------------------------------------------------


@pytest.fixture
def assorted_blocks(agent):
    """One block per status and a spread of scopes, keyed by what sets it apart."""
    now = timezone.now()
    blocks = {
        "active_home_sg": make_block(agent, "sku-a", surface="home", region="SG"),
        "active_everywhere": make_block(agent, "sku-b"),
        "scheduled_search": make_block(
            agent, "sku-c", surface="search", starts_at=now + timedelta(days=1)
        ),
        "lifted": make_block(agent, "sku-d", region="SG"),
        "expired": make_block(agent, "sku-e", region="DE"),
    }
    blocks["lifted"] = _lift(blocks["lifted"], agent)
    Block.objects.filter(pk=blocks["expired"].pk).update(
        starts_at=now - timedelta(days=3), expires_at=now - timedelta(days=1)
    )
    return blocks


def _lift(block, actor):
    return services.lift_block(block_id=block.pk, reason="Fixed", actor=actor)


def _ids(response) -> set[int]:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=active", {"active_home_sg", "active_everywhere"}),
        ("status=scheduled", {"scheduled_search"}),
        ("status=lifted", {"lifted"}),
        ("status=expired", {"expired"}),
        ("surface=home", {"active_home_sg"}),
        ("surface=all", {"active_everywhere", "lifted", "expired"}),
        ("region=SG", {"active_home_sg", "lifted"}),
        ("region=all", {"active_everywhere", "scheduled_search"}),
        ("item_id=sku-c", {"scheduled_search"}),
        ("item_id=SKU-C", set()),
        ("status=active&surface=all", {"active_everywhere"}),
        ("search=sku-d", {"lifted"}),
    ],
)
def test_list_blocks__filter__returns_only_matching(
    query, expected, agent_client, assorted_blocks
):
    response = agent_client.get(f"{BLOCKS}?{query}")

    assert _ids(response) == {assorted_blocks[name].pk for name in expected}


def test_list_blocks__search_by_catalog_title__finds_the_item(
    agent_client, assorted_blocks
):
    CatalogItemFactory(item_id="sku-b", title="Cordless Lawn Mower")

    response = agent_client.get(f"{BLOCKS}?search=lawn")

    assert _ids(response) == {assorted_blocks["active_everywhere"].pk}
    assert response.json()["results"][0]["item_title"] == "Cordless Lawn Mower"


def test_list_blocks__unknown_status__400_names_status(agent_client):
    error = assert_error(agent_client.get(f"{BLOCKS}?status=gone"), 400, "invalid")

    assert "status" in error["fields"]


def test_list_blocks__newest_first_and_paginated(agent_client, agent):
    for number in range(3):
        make_block(agent, f"sku-{number}")

    response = agent_client.get(f"{BLOCKS}?page_size=2")

    body = response.json()
    assert body["count"] == 3
    assert [row["item_id"] for row in body["results"]] == ["sku-2", "sku-1"]
    assert body["next"]


def test_list_blocks__page_numbers_of_thousands_of_digits__404_and_400(agent_client):
    # (Python's int() refuses over 4,300 digits: this was a 500)
    huge = "9" * 5000
    assert agent_client.get(f"{BLOCKS}?page={huge}").status_code == 404
    error = assert_error(agent_client.get(f"{BLOCKS}?page_size={huge}"), 400, "invalid")
    assert "page_size" in error["fields"]
    assert agent_client.get(f"{BLOCKS}?page=0002").status_code == 404


def test_list_boosts__status_ended__only_ended(manager_client, manager, rules):
    ended = make_boost(manager, item_id="sku-ended")
    post_json(manager_client, f"{BOOSTS}/{ended.pk}/end", {"reason": "Over"})

    response = manager_client.get(f"{BOOSTS}?status=ended")

    assert _ids(response) == {ended.pk}
    assert response.json()["results"][0]["status"] == "ended"


def test_list_boosts__lifted_is_a_block_status__400(manager_client):
    assert_error(manager_client.get(f"{BOOSTS}?status=lifted"), 400, "invalid")


def test_list_boosts__surface_and_search(manager_client, manager):
    home = make_boost(manager, item_id="sku-h", surface="home")
    make_boost(manager, item_id="sku-e", surface="email")
    CatalogItemFactory(item_id="sku-h", title="Hammock")

    assert _ids(manager_client.get(f"{BOOSTS}?surface=home")) == {home.pk}
    assert _ids(manager_client.get(f"{BOOSTS}?search=hammock")) == {home.pk}


def _many_blocks(count: int) -> None:
    """Blocks by different people, some lifted, half with catalog titles."""
    for number in range(count):
        creator = UserFactory(username=f"creator-{number}", role="support_agent")
        block = make_block(creator, item_id=f"sku-{number:03d}")
        if number % 2:
            CatalogItemFactory(item_id=block.item_id)
        if number % 3 == 0:
            lifter = UserFactory(username=f"lifter-{number}", role="support_agent")
            _lift(block, lifter)


def test_list_blocks__thirty_rows__constant_query_count(
    agent_client, django_assert_max_num_queries
):
    _many_blocks(30)

    # Session, user, permissions, count, page: no query per row.
    with django_assert_max_num_queries(8):
        response = agent_client.get(BLOCKS)

    assert response.json()["count"] == 30
    assert {row["lifted_by"] for row in response.json()["results"]} > {None}


def test_list_boosts__thirty_rows__constant_query_count(
    manager_client, django_assert_max_num_queries
):
    for number in range(30):
        creator = UserFactory(username=f"creator-{number}", role="account_manager")
        make_boost(creator, item_id=f"sku-{number:03d}")
        CatalogItemFactory(item_id=f"sku-{number:03d}")

    with django_assert_max_num_queries(8):
        response = manager_client.get(BOOSTS)

    assert response.json()["count"] == 30


# Bulk ------------------------------------------------------------------------------


def post_csv(client, data: bytes, query: str = ""):
    return client.post(f"{BULK}{query}", data, content_type="text/csv")


GOOD_CSV = (
    b"item_id,surface,region,reason,starts_at,expires_at\n"
    b"sku-1,home,SG,Recall,,\n"
    b"sku-2,,,Counterfeit,,2031-01-01T00:00:00Z\n"
    b"sku-3,search,,Legal hold,,\n"
)


def test_bulk__csv__201_applies_every_row(agent_client):
    CatalogItemFactory(item_id="sku-1")

    response = post_csv(agent_client, GOOD_CSV)

    assert response.status_code == 201, response.content
    report = response.json()
    assert report["applied"] is True
    assert report["dry_run"] is False
    assert (report["created"], report["errors"]) == (3, 0)
    assert [row["line"] for row in report["rows"]] == [2, 3, 4]
    assert Block.objects.count() == 3
    first, second, _ = report["rows"]
    assert first["block_id"] == Block.objects.get(item_id="sku-1").pk
    assert first["warnings"] == []
    assert second["warnings"]
    assert (second["surface"], second["region"]) == (None, None)
    assert Block.objects.get(item_id="sku-2").expires_at.year == 2031


def test_bulk__json_list__201(agent_client):
    rows = [
        {"item_id": "sku-1", "surface": "home", "region": "SG", "reason": "Recall"},
        {"item_id": "sku-2", "reason": "Recall"},
    ]

    response = post_json(agent_client, BULK, rows)

    assert response.status_code == 201, response.content
    assert response.json()["created"] == 2
    assert [row["line"] for row in response.json()["rows"]] == [1, 2]
    assert Block.objects.count() == 2


def test_bulk__dry_run__200_reports_and_writes_nothing(agent_client):
    before = written()

    response = post_csv(agent_client, GOOD_CSV, "?dry_run=true")

    assert response.status_code == 200, response.content
    report = response.json()
    assert (report["applied"], report["dry_run"]) == (False, True)
    assert (report["created"], report["errors"]) == (0, 0)
    assert [row["block_id"] for row in report["rows"]] == [None, None, None]
    assert written() == before


def test_bulk__one_bad_row_among_good__400_report_and_nothing_written(agent_client):
    data = GOOD_CSV + b"sku 4,home,SG,Recall,,\n" + b"sku-5,moon,,Recall,,\n"
    before = written()

    response = post_csv(agent_client, data)

    body = response.json()
    error = assert_error(response, 400, "invalid")
    assert "nothing was blocked" in error["message"]
    assert any(line.startswith("Line 5: ") for line in error["fields"]["rows"])
    assert (body["applied"], body["errors"], body["created"]) == (False, 2, 0)
    bad = {row["line"]: row["errors"] for row in body["rows"] if row["errors"]}
    assert set(bad) == {5, 6}
    assert "whitespace" in " ".join(bad[5])
    assert "moon" in " ".join(bad[6])
    assert written() == before


def test_bulk__dry_run_with_bad_row__400_and_nothing_written(agent_client):
    before = written()

    response = post_csv(agent_client, b"item_id,reason\nsku-1,\n", "?dry_run=1")

    assert_error(response, 400, "invalid")
    assert response.json()["dry_run"] is True
    assert "reason" in " ".join(response.json()["rows"][0]["errors"])
    assert written() == before


def test_bulk__row_clashing_with_existing_block__400_names_it(agent_client, agent):
    existing = make_block(agent, item_id="sku-1", surface="home", region="SG")

    response = post_csv(agent_client, GOOD_CSV)

    assert_error(response, 400, "invalid")
    assert f"#{existing.pk}" in " ".join(response.json()["rows"][0]["errors"])
    assert Block.objects.count() == 1


def test_bulk__same_item_twice__400(agent_client):
    data = b"item_id,reason\nsku-1,Recall\nsku-1,Recall\n"

    response = post_csv(agent_client, data)

    assert_error(response, 400, "invalid")
    assert "line 2" in " ".join(response.json()["rows"][1]["errors"])


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"item_id\n\xff\xfe\n", "UTF-8"),
        (b"sku,reason\nsku-1,Recall\n", "item_id column"),
        (b"item_id,reason\n", "no rows"),
        (b"", "empty"),
    ],
    ids=["not-utf8", "no-item-id-column", "header-only", "empty"],
)
def test_bulk__unreadable_csv__400_with_a_clear_message(data, expected, agent_client):
    before = written()

    response = post_csv(agent_client, data)

    error = assert_error(response, 400, "invalid")
    assert expected in error["message"]
    assert written() == before


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"item_id": "sku-1"}, "JSON list"),
        (["sku-1"], "JSON list"),
        ([], "no rows"),
    ],
)
def test_bulk__json_not_a_list_of_objects__400(body, expected, agent_client):
    response = post_json(agent_client, BULK, body)

    error = assert_error(response, 400, "invalid")
    assert expected in error["message"]
    assert Block.objects.count() == 0


def test_bulk__empty_json_body__400(agent_client):
    response = agent_client.post(BULK, b"", content_type="application/json")

    assert "empty" in assert_error(response, 400, "invalid")["message"]


def test_bulk__malformed_json__400(agent_client):
    response = agent_client.post(BULK, b"[{", content_type="application/json")

    assert_error(response, 400, "parse_error")


def test_bulk__bad_dry_run_value__400_names_it(agent_client):
    response = post_csv(agent_client, GOOD_CSV, "?dry_run=perhaps")

    assert "dry_run" in assert_error(response, 400, "invalid")["fields"]
    assert Block.objects.count() == 0


def test_bulk__plain_text__415(agent_client):
    response = agent_client.post(BULK, b"sku-1", content_type="text/plain")

    assert_error(response, 415, "unsupported_media_type")


def test_bulk__csv_over_the_upload_limit__413(agent_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 64

    response = post_csv(agent_client, GOOD_CSV)

    assert_error(response, 413, "too_large")
    assert Block.objects.count() == 0


def test_bulk__more_rows_than_allowed__400(agent_client, settings):
    settings.BULK_MAX_ROWS = 2

    response = post_csv(agent_client, GOOD_CSV)

    assert "At most 2 rows" in assert_error(response, 400, "invalid")["message"]
    assert Block.objects.count() == 0


# Audit trail -----------------------------------------------------------------------


def _changes(entry: dict) -> dict:
    return {
        change["field"]: (change["before"], change["after"])
        for change in entry["changes"]
    }


def test_audit__after_block_and_lift__entries_with_before_and_after(
    agent_client, admin_client
):
    created = post_json(agent_client, BLOCKS, block_body()).json()
    post_json(agent_client, f"{BLOCKS}/{created['id']}/lift", {"reason": "Restocked"})

    response = admin_client.get(f"{AUDIT}?item_id=sku-1")

    assert response.status_code == 200, response.content
    lift, block = response.json()["results"]
    assert lift["kind"] == block["kind"] == "block"
    assert lift["object_id"] == block["object_id"] == created["id"]
    assert lift["history_id"] > block["history_id"]
    assert (lift["action"], lift["actor"], lift["reason"]) == (
        "Lifted",
        "support-agent",
        "Restocked",
    )
    assert lift["when"].endswith("Z")
    lift_changes = _changes(lift)
    assert lift_changes["withdrawal_reason"] == (None, "Restocked")
    assert lift_changes["withdrawn_by"] == (None, "support-agent")
    assert lift_changes["withdrawn_at"][1].endswith("Z")
    assert (block["action"], block["reason"]) == ("Blocked", "Recalled by the supplier")
    assert _changes(block)["item_id"] == (None, "sku-1")
    assert _changes(block)["surface"] == (None, "home")


def test_audit__filters__kind_actor_and_time(admin_client, agent, manager):
    make_block(agent, item_id="sku-1")
    make_boost(manager, item_id="sku-2")

    by_kind = admin_client.get(f"{AUDIT}?kind=boost").json()["results"]
    by_actor = admin_client.get(f"{AUDIT}?actor=support-agent").json()["results"]
    both = admin_client.get(f"{AUDIT}?kind=boost&kind=block").json()["results"]
    later = admin_client.get(f"{AUDIT}?since={in_days(1)}").json()["results"]
    earlier = admin_client.get(f"{AUDIT}?until={in_days(1)}&kind=boost&kind=block")
    earlier = earlier.json()["results"]

    assert [entry["item_id"] for entry in by_kind] == ["sku-2"]
    assert [entry["item_id"] for entry in by_actor] == ["sku-1"]
    assert len(both) == 2
    assert later == []
    assert len(earlier) == 2


@pytest.mark.parametrize("query", ["since=yesterday", "kind=widget"])
def test_audit__bad_filter__400(query, admin_client):
    response = admin_client.get(f"{AUDIT}?{query}")

    assert_error(response, 400, "invalid")


def test_audit__paginated(admin_client, agent):
    for number in range(3):
        make_block(agent, item_id=f"sku-{number}")

    body = admin_client.get(f"{AUDIT}?page_size=2&kind=block").json()

    assert body["count"] == 3
    assert [entry["item_id"] for entry in body["results"]] == ["sku-2", "sku-1"]


def test_audit__thirty_lifts__constant_query_count(
    admin_client, agent, django_assert_max_num_queries
):
    for number in range(30):
        _lift(make_block(agent, item_id=f"sku-{number:03d}"), agent)

    # Session, user, permissions, count, page, one per kind, usernames.
    with django_assert_max_num_queries(12):
        response = admin_client.get(AUDIT)

    # The 60 changes, and the fixture users' own records (accounts are audited).
    assert response.json()["count"] == 60 + type(agent).history.count()


# Schema ----------------------------------------------------------------------------


def test_schema__served__describes_the_override_paths(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    for expected in (
        "/api/v1/blocks",
        "/api/v1/blocks/{id}",
        "/api/v1/blocks/{id}/lift",
        "/api/v1/blocks/bulk",
        "/api/v1/boosts",
        "/api/v1/boosts/{id}",
        "/api/v1/boosts/{id}/end",
        "/api/v1/audit",
    ):
        assert expected in paths
    create = paths["/api/v1/blocks"]["post"]
    assert {"201", "400", "401", "403", "409"} <= set(create["responses"])


def test_schema__override_endpoints__valid_without_warnings():
    GENERATOR_STATS.reset()
    generator = SchemaGenerator(
        patterns=[path("api/v1/", include("overrides.api.urls"))]
    )

    schema = generator.get_schema(request=None, public=True)

    validate_schema(schema)
    assert not GENERATOR_STATS, dict(GENERATOR_STATS._warn_cache)


def test_blocks_api__database_unavailable__503_with_retry_after(
    agent_client, monkeypatch
):
    # Given the database drops the connection mid-request (as in a restart)
    def connection_lost(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(services, "block_item", connection_lost)

    response = agent_client.post(
        BLOCKS,
        {"item_id": "sku-1", "surface": None, "region": None, "reason": "Unsafe"},
        content_type="application/json",
    )

    # Then the client is told to retry, in the contract's error shape, not a 500
    assert_error(response, 503, "unavailable")
    assert response["Retry-After"] == "5"
    assert Block.objects.count() == 0
