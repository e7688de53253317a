"""Serving pages and API keys through the real pages in headless Chromium."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from opsconsole.models import ApiKey
from opsconsole.services import hash_api_key
from overrides.models import ServingInstance
from tests.factories import CatalogItemFactory, make_block, make_boost

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

CANDIDATES = """sku-1001,0.92
sku-1002,0.88
sku-1003 0.75
sku-1004,0.61
sku-1005,0.40
sku-1006,0.33"""


def _heartbeat(name: str, version: int, seconds_ago: int) -> None:
    ServingInstance.objects.create(
        name=name,
        version=version,
        last_seen_at=timezone.now() - timedelta(seconds=seconds_ago),
    )


def test_agent__previews_a_ranking_with_a_blocked_and_a_boosted_item(
    sign_in, page, live_server, agent, manager, screenshot
):
    # Given a boost (version 1), a block (version 2) and instances at various versions
    for item_id, title in [
        ("sku-1002", "Bluetooth Speaker"),
        ("sku-1005", "Solar Lantern"),
        ("sku-1001", "Garden Chair"),
    ]:
        CatalogItemFactory(item_id=item_id, title=title)
    make_boost(
        manager,
        item_id="sku-1005",
        factor=3.0,
        surface="home",
        reason="Cold start for a new product",
    )
    block = make_block(
        agent, item_id="sku-1002", reason="Recalled: battery overheating"
    )
    _heartbeat("serving-eu-1", 2, seconds_ago=8)
    _heartbeat("serving-eu-2", 1, seconds_ago=21)
    _heartbeat("serving-us-1", 2, seconds_ago=900)
    sign_in(agent)

    # The status page shows who runs what
    page.click("nav.nav >> text=Serving")
    expect(page.locator("h1")).to_have_text("Serving")
    expect(page.locator("tbody tr")).to_have_count(3)
    expect(page.locator("tr:has-text('serving-eu-2')")).to_contain_text(
        "behind by 1 version"
    )
    expect(page.locator("tr:has-text('serving-us-1')")).to_contain_text("stale")
    screenshot("serving-status")

    # When the agent previews candidates on the home page
    page.click("text=Preview a ranking")
    page.select_option("#id_surface", "home")
    page.select_option("#id_region", "SG")
    expect(page.locator("#id_surface_other")).to_be_hidden()
    page.fill("#id_customer_id", "c-42")
    page.fill("#id_candidates", CANDIDATES)
    page.click("button:has-text('Preview ranking')")

    # Then the blocked item is removed, naming its block, and the boost lifts the other
    effects = page.locator("table.effects")
    expect(effects.locator("tr:has-text('sku-1002')")).to_contain_text(
        f"Block #{block.pk}"
    )
    expect(effects.locator("tr:has-text('sku-1002')")).to_contain_text(
        "Recalled: battery overheating"
    )
    expect(effects.locator("tr:has-text('sku-1005')")).to_contain_text("boosted ×3")
    before = page.locator("#ranking-before")
    after = page.locator("#ranking-after")
    expect(before.locator("tbody tr")).to_have_count(6)
    expect(before.locator("tr:has-text('sku-1002')")).to_contain_text("removed")
    expect(after.locator("tbody tr")).to_have_count(5)
    expect(after).not_to_contain_text("sku-1002")
    expect(after.locator("tbody tr").first).to_contain_text("sku-1005")
    expect(after.locator("tbody tr").first).to_contain_text("1.2")
    expect(page.locator(".preview-summary")).to_contain_text("personalized: true")
    # The form keeps what was typed, for the next try
    expect(page.locator("#id_candidates")).to_have_value(CANDIDATES)
    expect(page.locator("#id_customer_id")).to_have_value("c-42")
    screenshot("serving-preview")

    # And the rule's item page is one click away
    effects.locator(f"a:has-text('Block #{block.pk}')").click()
    expect(page.locator("h1")).to_have_text("sku-1002")
    expect(page.locator("main")).to_contain_text("live on 1 of 2 instances")
    screenshot("item-page-live")


def test_agent__preview_with_bad_input__sees_the_line_to_fix(
    sign_in, page, live_server, agent
):
    sign_in(agent)
    page.goto(f"{live_server.url}/serving/preview/")
    page.fill("#id_candidates", "sku-1,0.5\nsku-2,high")
    page.click("button:has-text('Preview ranking')")
    expect(page.locator(".errorlist")).to_contain_text(
        "Line 2: the score 'high' is not a number."
    )
    expect(page.locator("#ranking-after")).to_have_count(0)

    # "Another surface…" reveals a box for any value
    page.select_option("#id_surface", "__other__")
    expect(page.locator("#id_surface_other")).to_be_visible()
    expect(page.locator("#id_surface_other")).to_be_focused()


def test_admin__creates_an_api_key_sees_it_once_then_revokes_it(
    sign_in, page, live_server, admin_user, screenshot
):
    sign_in(admin_user)
    page.click("nav.nav >> text=API keys")
    expect(page.locator(".empty")).to_contain_text("No API keys yet")
    page.click("main >> text=Create an API key")
    page.fill("#id_name", "serving-eu-1")
    page.check("input[value='serving:read']")
    page.fill("#id_rate_limit_per_minute", "1200")
    screenshot("api-key-form")
    page.click("button:has-text('Create key')")

    key_box = page.locator("#raw-key")
    raw_key = key_box.input_value()
    assert re.fullmatch(r"opc_[\w-]{40,}", raw_key)
    expect(page.locator(".callout")).to_contain_text("will not be shown again")
    expect(page.locator("button[data-copy]")).to_be_visible()
    assert ApiKey.objects.get().key_hash == hash_api_key(raw_key)
    screenshot("api-key-created")

    # The list never shows it again
    page.click("text=back to API keys")
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("main")).not_to_contain_text(raw_key)
    expect(page.locator("tbody tr")).to_contain_text("Active")

    # Revoking asks first
    page.click("a:has-text('Revoke')")
    expect(page.locator("h1")).to_contain_text("Revoke API key")
    page.click("button:has-text('Yes, revoke serving-eu-1')")
    expect(page.locator(".messages")).to_contain_text("revoked")
    expect(page.locator("tbody tr")).to_contain_text("Revoked")
    assert ApiKey.objects.get().revoked_at is not None
    screenshot("api-keys-list")
