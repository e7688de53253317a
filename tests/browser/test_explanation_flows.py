"""A support agent reads a prediction's explanation, with and without JavaScript."""

import pytest
from playwright.sync_api import expect

from explanations import services
from tests.browser.conftest import SCREENSHOTS
from tests.explanations.conftest import prediction_body
from tests.factories import PASSWORD

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


@pytest.fixture
def prediction_id(register):
    model_version = register("lightgbm-classifier", name="churn")
    services.log_predictions(records=[prediction_body(model_version, "p-browser-1")])
    return "p-browser-1"


def test_agent__opens_a_prediction__force_plot_drawn_by_shap(
    sign_in, page, live_server, agent, screenshot, prediction_id
):
    sign_in(agent)

    # Given the agent looks the prediction up by its id
    page.click("nav a:has-text('Explanations')")
    page.fill("input[name=query]", prediction_id)
    page.click("button:has-text('Search')")

    # Then shap's bundle draws the force plot, naming the features
    expect(page.locator("h1")).to_have_text(prediction_id)
    plot = page.locator("#force-plot svg").filter(has_text="Tenure").first
    expect(plot).to_be_visible()
    expect(page.locator("table.features")).to_contain_text("35.5 SGD")
    expect(page.locator("#customer-summary")).not_to_contain_text("Sex")
    page.wait_for_function(
        "document.querySelector('img.force-plot-image').naturalWidth > 0"
    )
    screenshot("explanation-page")


def test_agent__without_javascript__static_image_and_table_shown(
    browser, live_server, agent, prediction_id
):
    # Given a browser with JavaScript turned off, signed in as the agent
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, java_script_enabled=False
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", agent.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")

        # When they open the prediction page
        page.goto(f"{live_server.url}/explanations/predictions/{prediction_id}/")

        # Then the static image has loaded, the table is there and no plot was drawn
        expect(page.locator("img.force-plot-image")).to_be_visible()
        assert page.evaluate(
            "document.querySelector('img.force-plot-image').naturalWidth"
        )
        expect(page.locator("table.features")).to_be_visible()
        expect(page.locator("table.features")).to_contain_text("Tenure")
        expect(page.locator("#force-plot svg")).to_have_count(0)
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(
            path=str(SCREENSHOTS / "explanation-page-no-js.png"), full_page=True
        )
    finally:
        context.close()
