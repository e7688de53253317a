"""Serving pages: instance status, "live on N of M", and the ranking preview."""

import logging
import re
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from opsconsole.models import ApiKey
from overrides import selectors, services
from overrides.models import (
    Block,
    Boost,
    OptOut,
    OverrideChange,
    OverrideVersion,
    ServingInstance,
)
from tests.factories import make_block, make_boost

STATUS = reverse("overrides:serving_status")
PREVIEW = reverse("overrides:serving_preview")
READERS = {"support_agent", "account_manager", "admin"}


def _instance(name, version, *, seconds_ago=5):
    return ServingInstance.objects.create(
        name=name,
        version=version,
        last_seen_at=timezone.now() - timedelta(seconds=seconds_ago),
    )


def _stale_seconds(settings) -> int:
    return settings.SERVING_INSTANCE_ACTIVE_MINUTES * 60 + 60


def _text(response) -> str:
    """The page as text, tags removed and whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", response.content.decode()).split())


def _written() -> tuple:
    return (
        Block.objects.count(),
        Boost.objects.count(),
        OverrideVersion.objects.get().value,
        OverrideChange.objects.count(),
        OptOut.objects.count(),
        ServingInstance.objects.count(),
        ApiKey.objects.count(),
    )


# Who may open the pages -------------------------------------------------------------


@pytest.mark.parametrize("url", [STATUS, PREVIEW])
def test_serving_pages__anonymous__redirected_to_login(client, db, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


@pytest.mark.parametrize("url", [STATUS, PREVIEW])
@pytest.mark.parametrize("role", ["support_agent", "account_manager", "admin"])
def test_serving_pages__rule_readers__200(users, client_for, url, role):
    assert client_for(users[role]).get(url).status_code == 200


@pytest.mark.parametrize("url", [STATUS, PREVIEW])
def test_serving_pages__privacy_officer__403_naming_the_roles(officer, client_for, url):
    client = client_for(officer)
    for response in (client.get(url), client.post(url, {"candidates": "sku-1,1"})):
        assert response.status_code == 403
        body = response.content.decode()
        assert "support_agent" in body and "privacy_officer" in body


def test_navigation__serving_for_rule_readers_only(users, client_for):
    for role, user in users.items():
        nav = client_for(user).get(reverse("dashboard")).context["navigation"]
        labels = [entry["label"] for entry in nav]
        assert ("Serving" in labels) == (role in READERS), (role, labels)


# Status page --------------------------------------------------------------------------


def test_serving_status__no_instances__explains_how_they_appear(agent, client_for):
    text = _text(client_for(agent).get(STATUS))
    assert "No serving instance has reported yet" in text
    assert "POST /api/v1/serving/heartbeat" in text
    assert "client" in text


def test_serving_status__instances__version_behind_stale_and_heartbeat_age(
    agent, client_for, settings
):
    # Given the console is at version 3 and three instances reported
    for number in range(3):
        make_block(agent, item_id=f"sku-{number}")
    assert OverrideVersion.objects.get().value == 3
    _instance("serving-eu-1", 3, seconds_ago=12)
    _instance("serving-eu-2", 1, seconds_ago=30)
    _instance("serving-us-1", 3, seconds_ago=_stale_seconds(settings))

    # When the agent opens the status page
    response = client_for(agent).get(STATUS)

    # Then each instance shows its version, lag, heartbeat age and staleness
    rows = {row.name: row for row in response.context["instances"]}
    assert (rows["serving-eu-1"].behind, rows["serving-eu-1"].stale) == (0, False)
    assert (rows["serving-eu-2"].behind, rows["serving-eu-2"].stale) == (2, False)
    assert (rows["serving-us-1"].behind, rows["serving-us-1"].stale) == (0, True)
    assert re.fullmatch(r"1[23] s ago", rows["serving-eu-1"].last_seen)
    assert rows["serving-us-1"].last_seen == f"{_stale_seconds(settings) // 60} min ago"
    text = _text(response)
    assert re.search(r"serving-eu-1 3 up to date 1[23] s ago", text), text
    assert re.search(r"serving-eu-2 1 behind by 2 versions 3\d s ago", text), text
    assert re.search(r"serving-us-1 3 stale was up to date \d+ min ago", text), text
    assert (
        response.context["up_to_date"],
        response.context["behind"],
        response.context["stale"],
    ) == (1, 1, 1)


# Live on N of M ----------------------------------------------------------------------


@pytest.fixture
def rules_and_instances(agent, manager, settings):
    """A block at version 1 and a boost at version 2, two live instances at v1 and
    v2, and a stale one far ahead (which must not count)."""
    block = make_block(agent, item_id="sku-1")
    boost = make_boost(manager, item_id="sku-1")
    assert (block.changed_version, boost.changed_version) == (1, 2)
    _instance("serving-1", 1)
    _instance("serving-2", 2)
    _instance("serving-old", 99, seconds_ago=_stale_seconds(settings))
    return block, boost


def test_block_list__open_rule__live_on_instances_at_or_past_its_change(
    agent, client_for, rules_and_instances
):
    text = _text(client_for(agent).get(reverse("overrides:block_list")))
    assert "live on 2 of 2 instances" in text


def test_boost_list__open_rule__live_on_instances_at_or_past_its_change(
    manager, client_for, rules_and_instances
):
    text = _text(client_for(manager).get(reverse("overrides:boost_list")))
    assert "live on 1 of 2 instances" in text


def test_item_page__block_and_boost__each_with_its_own_live_count(
    agent, client_for, rules_and_instances
):
    response = client_for(agent).get(reverse("overrides:item_detail", args=["sku-1"]))
    overview = response.context["overview"]
    assert overview.open_blocks[0].live == (2, 2)
    assert overview.open_boosts[0].live == (1, 2)
    text = _text(response)
    assert "live on 2 of 2 instances" in text
    assert "live on 1 of 2 instances" in text


def test_item_page__block_and_boost_sharing_a_pk__counts_do_not_mix(
    agent, manager, client_for
):
    # Given a block (version 1) and a boost (version 2) with the same primary key
    block = make_block(agent, item_id="sku-1")
    Boost.objects.create(
        id=block.pk,
        item_id="sku-1",
        factor=2.0,
        reason="Cold start",
        created_by=manager,
        ends_at=timezone.now() + timedelta(days=7),
        changed_version=block.changed_version + 1,
    )
    _instance("serving-1", block.changed_version)

    response = client_for(agent).get(reverse("overrides:item_detail", args=["sku-1"]))

    overview = response.context["overview"]
    assert overview.open_blocks[0].live == (1, 1)
    assert overview.open_boosts[0].live == (0, 1)


def test_live_counts__block_and_boost_with_the_same_pk__one_answer_each(db):
    block = Block(pk=7, item_id="sku-1", changed_version=5)
    boost = Boost(pk=7, item_id="sku-1", changed_version=9)
    _instance("serving-1", 6)
    assert selectors.live_counts([block, boost]) == [(1, 1), (0, 1)]


def test_rule_lists__no_instance_reported__says_so(agent, manager, client_for):
    make_block(agent, item_id="sku-1")
    make_boost(manager, item_id="sku-2")
    for url in (reverse("overrides:block_list"), reverse("overrides:boost_list")):
        assert "no serving instance has reported yet" in _text(
            client_for(agent).get(url)
        )


def test_block_list__lifted_rule__no_live_count(agent, client_for):
    block = make_block(agent, item_id="sku-1")
    services.lift_block(block_id=block.pk, reason="Fixed", actor=agent)
    _instance("serving-1", 5)
    response = client_for(agent).get(reverse("overrides:block_list"))
    assert response.context["object_list"][0].live is None
    assert "live on" not in _text(response)


def test_block_list__live_counts__query_count_does_not_grow_with_rows(
    agent, client_for, django_assert_num_queries
):
    _instance("serving-1", 1)
    client = client_for(agent)
    make_block(agent, item_id="sku-0")
    client.get(reverse("overrides:block_list"))  # warm caches (permissions, etc.)
    with CaptureQueriesContext(connection) as one_row:
        client.get(reverse("overrides:block_list"))
    for number in range(1, 20):
        make_block(agent, item_id=f"sku-{number}")
    with django_assert_num_queries(len(one_row)):
        response = client.get(reverse("overrides:block_list"))
    assert len(response.context["object_list"]) == 20


# Preview -----------------------------------------------------------------------------


@pytest.fixture
def preview_rules(agent, manager):
    """sku-bad blocked everywhere; sku-up boosted 2x on home; sku-both boosted 3x
    and blocked (the block wins); sku-search boosted on search only."""
    return {
        "bad": make_block(agent, item_id="sku-bad", reason="Counterfeit listing"),
        "up": make_boost(
            manager, item_id="sku-up", factor=2.0, surface="home", reason="New range"
        ),
        "both_boost": make_boost(manager, item_id="sku-both", factor=3.0),
        "both_block": make_block(agent, item_id="sku-both", reason="Recalled"),
        "search": make_boost(
            manager, item_id="sku-search", factor=4.0, surface="search"
        ),
    }


CANDIDATES = "sku-a,0.9\nsku-bad,0.8\nsku-up 0.3\nsku-both,0.5\nsku-search,0.2"


def _preview(client, **data):
    data.setdefault("candidates", CANDIDATES)
    return client.post(PREVIEW, data)


def test_preview__block_beats_boost_and_boost_factor_applied(
    agent, client_for, preview_rules
):
    response = _preview(client_for(agent), surface="home", region="SG")

    assert response.status_code == 200
    preview = response.context["preview"]
    assert [(row.item_id, row.score) for row in preview.after] == [
        ("sku-a", 0.9),
        ("sku-up", 0.6),
        ("sku-search", 0.2),
    ]
    assert [(row.item_id, row.outcome) for row in preview.before] == [
        ("sku-a", ""),
        ("sku-bad", "removed"),
        ("sku-both", "removed"),
        ("sku-up", "boosted"),
        ("sku-search", ""),
    ]
    boosted = preview.after[1]
    assert (boosted.original_score, boosted.factor, boosted.moved) == (0.3, 2.0, 2)
    assert (preview.removed_count, preview.boosted_count) == (2, 1)


def test_preview__removed_and_boosted_items_name_their_rule_reason_and_scope(
    agent, client_for, preview_rules
):
    response = _preview(client_for(agent), surface="home")

    effects = {e.item_id: e for e in response.context["preview"].effects}
    assert effects["sku-bad"].rule == preview_rules["bad"]
    assert effects["sku-both"].rule == preview_rules["both_block"]
    assert effects["sku-up"].rule == preview_rules["up"]
    assert (effects["sku-bad"].before, effects["sku-bad"].after) == (2, None)
    text = _text(response)
    assert f"Block #{preview_rules['bad'].pk}" in text
    assert f"Block #{preview_rules['both_block'].pk}" in text
    assert f"Boost #{preview_rules['up'].pk}" in text
    assert "Counterfeit listing" in text and "Recalled" in text
    assert "New range" in text
    assert "home · all regions" in text
    item_page = reverse("overrides:item_detail", args=["sku-bad"])
    assert f'href="{item_page}"' in response.content.decode()


def test_preview__same_answer_as_the_rank_endpoint(
    agent, client_for, serving_client, preview_rules
):
    candidates = [
        {"item_id": "sku-a", "score": 0.9},
        {"item_id": "sku-bad", "score": 0.8},
        {"item_id": "sku-up", "score": 0.3},
        {"item_id": "sku-both", "score": 0.5},
        {"item_id": "sku-search", "score": 0.2},
    ]
    for surface in ("home", "search", ""):
        endpoint = serving_client.post(
            "/api/v1/serving/rank",
            {"surface": surface or None, "region": "SG", "candidates": candidates},
            content_type="application/json",
        ).json()
        preview = _preview(client_for(agent), surface=surface, region="SG").context[
            "preview"
        ]
        assert [(r.item_id, r.score) for r in preview.after] == [
            (item["item_id"], item["score"]) for item in endpoint["items"]
        ], surface
        assert sorted(e.item_id for e in preview.effects if e.outcome == "removed") == (
            sorted(item["item_id"] for item in endpoint["removed"])
        )
        assert preview.version == endpoint["version"]


def test_preview__other_surface_typed__used_as_given(agent, client_for, preview_rules):
    response = _preview(client_for(agent), surface="__other__", surface_other="search")
    preview = response.context["preview"]
    assert preview.surface == "search"
    assert {row.item_id for row in preview.after if row.outcome} == {"sku-search"}


def test_preview__unconfigured_surface__only_rules_for_all_surfaces(
    agent, client_for, preview_rules
):
    response = _preview(
        client_for(agent), surface="__other__", surface_other="checkout"
    )
    preview = response.context["preview"]
    assert preview.surface == "checkout"
    assert preview.boosted_count == 0
    assert preview.removed_count == 2


def test_preview__other_chosen_but_not_typed__error(agent, client_for):
    response = _preview(client_for(agent), region="__other__", region_other="  ")
    assert "Type the region" in " ".join(
        response.context["form"].errors["region_other"]
    )
    assert "preview" not in response.context


def test_preview__opted_out_customer__personalized_false(
    agent, client_for, preview_rules, caplog
):
    services.optout_register(
        customer_id="c-123", kinds=["personalization"], source="test"
    )
    client = client_for(agent)

    with caplog.at_level(logging.DEBUG):
        opted_out = _preview(client, customer_id="c-123")
        other = _preview(client, customer_id="c-456")

    assert opted_out.context["preview"].personalized is False
    assert "personalized: false" in _text(opted_out)
    assert other.context["preview"].personalized is True
    assert "personalized: true" in _text(other)
    # The raw id is echoed in the form, and neither stored nor logged.
    assert 'value="c-123"' in opted_out.content.decode()
    assert "c-123" not in caplog.text
    for row in OptOut.objects.values():
        assert "c-123" not in str(row.values())


def test_preview__training_opt_out_only__still_personalized(agent, client_for):
    services.optout_register(customer_id="c-1", kinds=["training"], source="test")
    response = _preview(client_for(agent), customer_id="c-1")
    assert response.context["preview"].personalized is True


def test_preview__no_customer__personalized_true_as_the_endpoint(agent, client_for):
    response = _preview(client_for(agent))
    assert response.context["preview"].personalized is True
    assert "no customer id given" in _text(response)


def test_preview__csv_upload_with_header_and_bom__ranked_and_kept_in_the_text_box(
    agent, client_for, preview_rules
):
    upload = SimpleUploadedFile(
        "candidates.csv",
        "\ufeffitem_id,score\r\nsku-bad,0.8\r\nsku-a,0.9\r\n".encode(),
        content_type="text/csv",
    )
    response = client_for(agent).post(
        PREVIEW, {"candidates_file": upload, "candidates": "ignored,1"}
    )
    preview = response.context["preview"]
    assert [row.item_id for row in preview.after] == ["sku-a"]
    assert preview.removed_count == 1
    assert "sku-bad,0.8" in response.context["form"]["candidates"].value()


def test_preview__valid__writes_nothing(agent, client_for, preview_rules):
    before = _written()
    response = _preview(client_for(agent), customer_id="c-9", surface="home")
    assert response.context["preview"]
    assert _written() == before
    assert "no-store" in response["Cache-Control"]


def _lines(count: int) -> str:
    return "\n".join(f"sku-{number},0.5" for number in range(count))


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"candidates": ""}, "candidates", "No candidates"),
        ({"candidates": "\n  \n"}, "candidates", "No candidates"),
        ({"candidates": "item_id,score\n"}, "candidates", "No candidates"),
        ({"candidates": "sku-1,0.5\nsku-2,abc"}, "candidates", "Line 2: the score"),
        ({"candidates": "sku-1"}, "candidates", "Line 1: expected item_id,score"),
        ({"candidates": "sku-1,0.5,7"}, "candidates", "Line 1: expected"),
        (
            {"candidates": "sku-1,0.5\n\nsku-2,0.1\nsku-1,0.4"},
            "candidates",
            "Line 4: duplicate item_id 'sku-1'",
        ),
        ({"candidates": "sku-1,nan"}, "candidates", "Line 1: score must be a finite"),
        ({"candidates": "sku-1,inf"}, "candidates", "finite"),
        ({"candidates": '"sku 1",0.5'}, "candidates", "Line 1: item_id must be"),
        ({"candidates": _lines(10_001)}, "candidates", "At most 10,000 candidates"),
        ({"customer_id": "c 1"}, "customer_id", "whitespace"),
        ({"surface": "moon"}, "surface", "Select a valid choice"),
    ],
)
def test_preview__bad_input__form_error_and_nothing_written(
    agent, client_for, data, field, message
):
    before = _written()
    data = {"candidates": "sku-1,0.5", **data}
    response = client_for(agent).post(PREVIEW, data)
    assert response.status_code == 200
    errors = " ".join(response.context["form"].errors.get(field, []))
    assert message in errors, response.context["form"].errors
    assert "preview" not in response.context
    assert _written() == before


def test_preview__10000_candidates__accepted(agent, client_for):
    response = client_for(agent).post(PREVIEW, {"candidates": _lines(10_000)})
    preview = response.context["preview"]
    assert preview.candidate_count == 10_000
    assert len(preview.after) == preview.row_limit


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("item_id,score\nsku-é,0.5\n".encode("latin-1"), "not UTF-8"),
        (b"item_id,score\nsku-1,x\n", "Line 2: the score"),
        (b"", "empty"),
        (b"item_id,score\n", "No candidates"),
    ],
)
def test_preview__bad_upload__error_on_the_file_field(
    agent, client_for, content, message
):
    upload = SimpleUploadedFile("c.csv", content, content_type="text/csv")
    response = client_for(agent).post(PREVIEW, {"candidates_file": upload})
    errors = response.context["form"].errors
    assert message in " ".join(errors.get("candidates_file", [])), errors
    assert "preview" not in response.context


def test_preview__upload_over_the_size_limit__error_without_reading_it(
    agent, client_for, monkeypatch
):
    monkeypatch.setattr("overrides.forms.CANDIDATE_FILE_MAX_BYTES", 16)
    upload = SimpleUploadedFile("c.csv", b"item_id,score\nsku-1,0.5\n")
    response = client_for(agent).post(PREVIEW, {"candidates_file": upload})
    errors = response.context["form"].errors
    assert "too large" in " ".join(errors.get("candidates_file", [])), errors
