"""Each role's main flow through the real pages in headless Chromium."""

import re

import pytest
from playwright.sync_api import expect

from overrides.models import Block, Boost
from tests.factories import CatalogItemFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def test_agent__blocks_an_item_on_home_in_saudi_arabia_then_lifts_it(
    sign_in, page, live_server, agent, screenshot
):
    CatalogItemFactory(item_id="sku-777", title="Cordless Drill", category="Tools")
    sign_in(agent)
    screenshot("dashboard-agent")

    # Given the agent finds the item by title
    page.fill("#dash-q", "cordless")
    page.click("text=Search")
    page.click("a:has-text('sku-777')")
    expect(page.locator("h1")).to_have_text("sku-777")

    # When they block it on the home page in Saudi Arabia with a reason
    page.click("main a.btn:has-text('Block')")
    expect(page.locator(".lookup-hint")).to_contain_text("Cordless Drill")
    page.select_option("#id_surface", "home")
    page.select_option("#id_region", "SA")
    page.fill("#id_reason", "Offensive listing reported by a customer")
    screenshot("block-form")
    page.click("button:has-text('Block item')")

    # Then the item page shows the active block and its history
    expect(page.locator(".messages")).to_contain_text("saved")
    expect(
        page.locator("text=Offensive listing reported by a customer").first
    ).to_be_visible()
    block = Block.objects.get(item_id="sku-777")
    assert (block.surface_id, block.region_id, block.created_by) == (
        "home",
        "SA",
        agent,
    )
    screenshot("item-page-blocked")

    # And the blocklist finds it by title
    page.goto(f"{live_server.url}/blocks/?q=Cordless")
    expect(page.locator("tbody tr")).to_have_count(1)
    screenshot("blocklist")

    # When they lift it, a confirmation step asks for a reason first
    page.click("a:has-text('Lift')")
    expect(page.locator("h1")).to_contain_text("Lift block")
    page.click("button:has-text('Yes, lift it')")
    expect(page.locator(".errorlist")).to_contain_text("required")
    page.fill("#id_reason", "Listing corrected by the seller")
    screenshot("lift-confirm")
    page.click("button:has-text('Yes, lift it')")
    expect(page.locator(".messages")).to_contain_text("lifted")
    block.refresh_from_db()
    assert block.withdrawal_reason == "Listing corrected by the seller"
    expect(page.locator("text=Lifted").first).to_be_visible()


def test_manager__boosts_a_new_product_2x_on_search_for_14_days(
    sign_in, page, live_server, manager, screenshot
):
    CatalogItemFactory(item_id="sku-new", title="Solar Lantern", category="Garden")
    sign_in(manager)
    page.goto(f"{live_server.url}/boosts/new/")
    page.fill("#id_item_id", "sku-new")
    page.fill("#id_factor", "2")
    page.select_option("#id_surface", "search")
    page.fill("#id_reason", "Cold start for a new product")
    screenshot("boost-form")
    page.click("button:has-text('Start boost')")

    expect(page.locator(".messages")).to_contain_text("saved")
    boost = Boost.objects.get(item_id="sku-new")
    assert boost.factor == 2.0 and boost.surface_id == "search"
    assert 13.9 < (boost.ends_at - boost.starts_at).total_seconds() / 86400 <= 14.01

    page.goto(f"{live_server.url}/boosts/")
    expect(page.locator(".countdown").first).to_have_text(re.compile(r"13d \d+h left"))
    screenshot("boost-list")


def test_manager__cannot_reach_the_block_form(
    sign_in, page, live_server, manager, screenshot
):
    sign_in(manager)
    expect(page.locator("nav.nav")).not_to_contain_text("Audit")
    response = page.goto(f"{live_server.url}/blocks/new/")
    assert response.status == 403
    expect(page.locator("body")).to_contain_text("support_agent")
    screenshot("forbidden-manager")
    assert not Block.objects.exists()
