"""The override pages: who may open what, and each form's happy and unhappy paths."""

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from overrides import services
from overrides.models import Block, Boost, OverrideVersion
from tests.factories import CatalogItemFactory, make_block, make_boost

ALLOWED = "allowed"
DENIED = "denied"

# page -> role -> outcome (GET). Anonymous visitors are always sent to the login page.
PAGE_ACCESS = {
    "overrides:block_list": {
        "support_agent": ALLOWED,
        "account_manager": ALLOWED,
        "privacy_officer": DENIED,
        "admin": ALLOWED,
    },
    "overrides:block_create": {
        "support_agent": ALLOWED,
        "account_manager": DENIED,
        "privacy_officer": DENIED,
        "admin": ALLOWED,
    },
    "overrides:block_bulk": {
        "support_agent": ALLOWED,
        "account_manager": DENIED,
        "privacy_officer": DENIED,
        "admin": ALLOWED,
    },
    "overrides:boost_list": {
        "support_agent": ALLOWED,
        "account_manager": ALLOWED,
        "privacy_officer": DENIED,
        "admin": ALLOWED,
    },
    "overrides:boost_create": {
        "support_agent": DENIED,
        "account_manager": ALLOWED,
        "privacy_officer": DENIED,
        "admin": ALLOWED,
    },
    "overrides:item_search": {
        "support_agent": ALLOWED,
        "account_manager": ALLOWED,
        "privacy_officer": DENIED,
        "admin": ALLOWED,
    },
    "overrides:item_lookup": {
        "support_agent": ALLOWED,
        "account_manager": ALLOWED,
        "privacy_officer": DENIED,
        "admin": ALLOWED,
    },
    "overrides:audit": {
        "support_agent": DENIED,
        "account_manager": DENIED,
        "privacy_officer": DENIED,
        "admin": ALLOWED,
    },
    "overrides:audit_export": {
        "support_agent": DENIED,
        "account_manager": DENIED,
        "privacy_officer": DENIED,
        "admin": ALLOWED,
    },
    "dashboard": {
        "support_agent": ALLOWED,
        "account_manager": ALLOWED,
        "privacy_officer": ALLOWED,
        "admin": ALLOWED,
    },
}


@pytest.mark.parametrize("url_name", sorted(PAGE_ACCESS))
def test_page__anonymous__redirects_to_login(client, db, url_name):
    response = client.get(reverse(url_name))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


@pytest.mark.parametrize(
    ("url_name", "role"),
    [
        (url_name, role)
        for url_name, roles in sorted(PAGE_ACCESS.items())
        for role in roles
    ],
)
def test_page__each_role__allowed_or_403_naming_the_role(
    users, client_for, url_name, role
):
    response = client_for(users[role]).get(reverse(url_name))
    if PAGE_ACCESS[url_name][role] == ALLOWED:
        assert response.status_code == 200
    else:
        assert response.status_code == 403
        assert "role" in response.content.decode()
        assert "You are signed in with" in response.content.decode()


def test_rule_pages__by_id__role_matrix(users, client_for, agent, manager):
    block = make_block(agent)
    boost = make_boost(manager)
    pages = {
        reverse("overrides:block_lift", args=[block.pk]): {"support_agent", "admin"},
        reverse("overrides:boost_end", args=[boost.pk]): {"account_manager", "admin"},
        reverse("overrides:item_detail", args=[block.item_id]): {
            "support_agent",
            "account_manager",
            "admin",
        },
    }
    for url, allowed in pages.items():
        for role, user in users.items():
            status = client_for(user).get(url).status_code
            assert status == (200 if role in allowed else 403), (url, role, status)


def test_block_create__valid__blocks_and_redirects_to_item_page(agent, client_for):
    CatalogItemFactory(item_id="sku-1", title="Garden Chair")
    response = client_for(agent).post(
        reverse("overrides:block_create"),
        {"item_id": "sku-1", "surface": "home", "region": "SA", "reason": "Unsafe"},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == reverse(
        "overrides:item_detail", args=["sku-1"]
    )
    block = Block.objects.get()
    assert (block.item_id, block.surface_id, block.region_id, block.reason) == (
        "sku-1",
        "home",
        "SA",
        "Unsafe",
    )
    assert "Garden Chair" in response.content.decode()


def test_block_create__unknown_item__allowed_with_a_warning(agent, client_for):
    response = client_for(agent).post(
        reverse("overrides:block_create"),
        {"item_id": "sku-unknown", "reason": "Unsafe"},
        follow=True,
    )
    assert Block.objects.filter(item_id="sku-unknown").exists()
    assert "not in the catalog" in response.content.decode()


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"item_id": "", "reason": "x"}, "item_id", "This field is required."),
        ({"item_id": "a" * 129, "reason": "x"}, "item_id", "at most 128 characters"),
        ({"item_id": "sku 1", "reason": "x"}, "item_id", "whitespace"),
        ({"item_id": "sku-1", "reason": "   "}, "reason", "required"),
        (
            {"item_id": "sku-1", "reason": "x", "surface": "moon"},
            "surface",
            "Select a valid choice",
        ),
        (
            {"item_id": "sku-1", "reason": "x", "expires_at": "2001-01-01T00:00"},
            "expires_at",
            "must be",
        ),
        (
            {
                "item_id": "sku-1",
                "reason": "x",
                "starts_at": "2099-02-01T00:00",
                "expires_at": "2099-01-01T00:00",
            },
            "expires_at",
            "after the start",
        ),
    ],
)
def test_block_create__bad_input__field_error_and_nothing_written(
    agent, client_for, data, field, message
):
    version = OverrideVersion.objects.get().value
    response = client_for(agent).post(reverse("overrides:block_create"), data)
    assert response.status_code == 200
    errors = " ".join(response.context["form"].errors.get(field, []))
    assert message in errors, response.context["form"].errors
    assert not Block.objects.exists()
    assert OverrideVersion.objects.get().value == version


def test_block_create__duplicate__conflict_message_names_the_existing_block(
    agent, client_for
):
    existing = make_block(agent, item_id="sku-1", surface="home")
    response = client_for(agent).post(
        reverse("overrides:block_create"),
        {"item_id": "sku-1", "surface": "home", "reason": "again"},
    )
    assert response.status_code == 200
    assert f"block #{existing.pk}" in " ".join(
        response.context["form"].non_field_errors()
    )
    assert Block.objects.count() == 1


def test_block_lift__confirm_then_lift__records_reason(agent, client_for):
    block = make_block(agent)
    client = client_for(agent)
    confirm = client.get(reverse("overrides:block_lift", args=[block.pk]))
    assert "Yes, lift it" in confirm.content.decode()
    client.post(reverse("overrides:block_lift", args=[block.pk]), {"reason": "Fixed"})
    block.refresh_from_db()
    assert block.withdrawn_by == agent and block.withdrawal_reason == "Fixed"


def test_block_lift__already_lifted__error_message_and_no_change(agent, client_for):
    block = make_block(agent)
    client = client_for(agent)
    client.post(reverse("overrides:block_lift", args=[block.pk]), {"reason": "Fixed"})
    response = client.post(
        reverse("overrides:block_lift", args=[block.pk]),
        {"reason": "Again"},
        follow=True,
    )
    assert "already lifted" in response.content.decode()
    block.refresh_from_db()
    assert block.withdrawal_reason == "Fixed"


def test_block_lift__unknown_id__404(agent, client_for):
    assert (
        client_for(agent).get(reverse("overrides:block_lift", args=[999])).status_code
        == 404
    )


def test_boost_create__defaults__ends_fourteen_days_out(manager, client_for):
    response = client_for(manager).get(reverse("overrides:boost_create"))
    ends_at = response.context["form"].initial["ends_at"]
    assert abs((ends_at - timezone.now()) - timedelta(days=14)) < timedelta(minutes=1)


@pytest.mark.parametrize(
    ("factor", "ok"),
    [("0", False), ("1", False), ("5.01", False), ("5", True), ("abc", False)],
)
def test_boost_create__factor_bounds(manager, client_for, factor, ok):
    ends_at = (timezone.localtime() + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
    response = client_for(manager).post(
        reverse("overrides:boost_create"),
        {"item_id": "sku-2", "factor": factor, "reason": "Launch", "ends_at": ends_at},
    )
    assert Boost.objects.exists() is ok
    if not ok:
        assert "factor" in response.context["form"].errors


def test_boost_end__ends_early(manager, client_for):
    boost = make_boost(manager)
    client_for(manager).post(
        reverse("overrides:boost_end", args=[boost.pk]), {"reason": "Out of stock"}
    )
    boost.refresh_from_db()
    assert boost.status == "ended"


def test_block_list__search_by_title_and_filters(agent, client_for):
    CatalogItemFactory(item_id="sku-a", title="Solar Lantern")
    make_block(agent, item_id="sku-a", surface="home")
    make_block(agent, item_id="sku-b", region="SA")
    client = client_for(agent)
    by_title = client.get(reverse("overrides:block_list"), {"q": "lantern"})
    assert [block.item_id for block in by_title.context["object_list"]] == ["sku-a"]
    by_region = client.get(reverse("overrides:block_list"), {"region": "SA"})
    assert [block.item_id for block in by_region.context["object_list"]] == ["sku-b"]
    global_surface = client.get(reverse("overrides:block_list"), {"surface": "all"})
    assert [block.item_id for block in global_surface.context["object_list"]] == [
        "sku-b"
    ]
    empty = client.get(reverse("overrides:block_list"), {"q": "nothing-like-this"})
    assert "No blocks match these filters" in empty.content.decode()


def test_block_list__paginates_25_per_page(agent, client_for):
    for number in range(30):
        make_block(agent, item_id=f"sku-{number}")
    response = client_for(agent).get(reverse("overrides:block_list"), {"page": 2})
    assert len(response.context["object_list"]) == 5
    assert "Page 2 of 2" in response.content.decode()


def test_bulk__pasted_ids__preview_writes_nothing_then_apply_writes_all(
    agent, client_for
):
    client = client_for(agent)
    data = {"item_ids": "sku-1\nsku-2\n\nsku-3", "surface": "email", "reason": "Recall"}
    preview = client.post(
        reverse("overrides:block_bulk"), {**data, "action": "preview"}
    )
    assert preview.context["result"].is_valid
    assert "Apply 3 blocks" in preview.content.decode()
    assert not Block.objects.exists()
    client.post(reverse("overrides:block_bulk"), {**data, "action": "apply"})
    assert sorted(Block.objects.values_list("item_id", flat=True)) == [
        "sku-1",
        "sku-2",
        "sku-3",
    ]


def test_bulk__csv_with_a_bad_row__preview_shows_it_and_apply_writes_nothing(
    agent, client_for
):
    csv_bytes = (
        b"item_id,surface,reason\n"
        b"sku-1,home,Recall\nsku 2,home,Recall\nsku-3,moon,Recall\n"
    )
    client = client_for(agent)
    upload = SimpleUploadedFile("blocks.csv", csv_bytes, content_type="text/csv")
    preview = client.post(
        reverse("overrides:block_bulk"), {"csv_file": upload, "action": "preview"}
    )
    result = preview.context["result"]
    assert [row.line for row in result.rows if row.errors] == [3, 4]
    assert "Apply" not in preview.content.decode()
    apply = client.post(
        reverse("overrides:block_bulk"),
        {"csv_text": csv_bytes.decode(), "action": "apply"},
    )
    assert not apply.context["result"].applied
    assert not Block.objects.exists()


def test_bulk__non_utf8_csv__clear_error_and_nothing_written(agent, client_for):
    upload = SimpleUploadedFile(
        "blocks.csv", b"item_id\n\xff\xfesku\n", content_type="text/csv"
    )
    response = client_for(agent).post(
        reverse("overrides:block_bulk"), {"csv_file": upload, "action": "apply"}
    )
    assert "not UTF-8" in " ".join(response.context["form"].non_field_errors())
    assert not Block.objects.exists()


def test_bulk__nothing_given__asks_for_ids_or_file(agent, client_for):
    response = client_for(agent).post(
        reverse("overrides:block_bulk"), {"action": "preview"}
    )
    assert (
        "Paste item ids or choose a CSV file."
        in response.context["form"].non_field_errors()
    )


def test_item_detail__shows_open_rules_and_history(agent, manager, client_for):
    make_block(agent, item_id="sku-1", surface="home", region="SA", reason="Offensive")
    make_boost(manager, item_id="sku-1", surface="search")
    response = client_for(agent).get(reverse("overrides:item_detail", args=["sku-1"]))
    overview = response.context["overview"]
    assert len(overview.open_blocks) == 1 and len(overview.open_boosts) == 1
    assert [entry.action for entry in overview.history] == ["Boosted", "Blocked"]


def test_item_detail__id_with_slash__reachable(agent, client_for):
    make_block(agent, item_id="cat/sku-1")
    url = reverse("overrides:item_detail", args=["cat/sku-1"])
    assert client_for(agent).get(url).context["overview"].item_id == "cat/sku-1"


def test_item_lookup__by_title__json_suggestions(agent, client_for):
    CatalogItemFactory(item_id="sku-9", title="Teak Garden Chair")
    data = client_for(agent).get(reverse("overrides:item_lookup"), {"q": "teak"}).json()
    assert data["items"] == [
        {"item_id": "sku-9", "title": "Teak Garden Chair", "category": "Garden"}
    ]


def test_audit__filters_and_csv_export(agent, manager, admin_user, client_for):
    block = make_block(agent, item_id="sku-1", reason="Unsafe")
    make_boost(manager, item_id="sku-2")
    services.lift_block(block_id=block.pk, reason="Fixed", actor=agent)
    client = client_for(admin_user)
    page = client.get(reverse("overrides:audit"), {"actor": agent.username})
    assert [entry.action for entry in page.context["entries"]] == ["Lifted", "Blocked"]
    export = client.get(reverse("overrides:audit_export"), {"item_id": "sku-1"})
    lines = b"".join(export.streaming_content).decode().strip().splitlines()
    assert lines[0].startswith("when,actor,kind")
    assert len(lines) == 3 and "Fixed" in lines[1] and "Unsafe" in lines[2]


def test_audit__time_filter_with_an_offset_past_15_59__answered(
    agent, admin_user, client_for
):
    # (PostgreSQL refuses such an offset in a comparison: the filter goes in UTC)
    make_block(agent, item_id="sku-1")
    client = client_for(admin_user)
    since = {"since": "2000-01-01T00:00:00+18:00", "item_id": "sku-1"}

    page = client.get(reverse("overrides:audit"), since)
    export = client.get(reverse("overrides:audit_export"), since)

    assert page.status_code == 200 and len(page.context["entries"]) == 1
    lines = b"".join(export.streaming_content).decode().strip().splitlines()
    assert len(lines) == 2 and "sku-1" in lines[1]


def test_dashboard__shows_boosts_ending_within_48_hours(manager, client_for):
    make_boost(
        manager, item_id="sku-soon", ends_at=timezone.now() + timedelta(hours=20)
    )
    make_boost(
        manager, item_id="sku-later", ends_at=timezone.now() + timedelta(days=10)
    )
    dashboard = client_for(manager).get(reverse("dashboard")).context["overrides"]
    assert [boost.item_id for boost in dashboard.boosts_ending_soon] == ["sku-soon"]
    assert dashboard.active_boosts == 2
