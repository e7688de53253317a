"""The Content-Security-Policy holds on the real pages: Chromium reports no violation.

The policy allows no inline script or style (opsconsole.settings); a page that still
had one would be broken in production, and Chromium says so with a
`securitypolicyviolation` event and a console error. Every main page of each area
is opened signed in as the admin (who may open them all), plus the sign-in page,
an error page and the API docs; the force plot must still be drawn by shap.
"""

import pytest
from playwright.sync_api import expect

from explanations import services as explanation_services
from privacy import services as privacy_services
from tests.explanations.conftest import prediction_body
from tests.factories import CatalogItemFactory, make_block, make_boost

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

# Runs before any page script; CSP does not apply to it (it comes from DevTools).
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__cspViolations.push(
    event.violatedDirective + " " + (event.blockedURI || "inline") + " at " +
    (event.sourceFile || location.pathname) + ":" + event.lineNumber
  );
});
"""


@pytest.fixture
def watched_page(page):
    """The page, recording CSP violations (DOM events) and console errors."""
    console_errors = []
    page.add_init_script(RECORD_VIOLATIONS)
    page.on(
        "console",
        lambda message: (
            console_errors.append(message.text) if message.type == "error" else None
        ),
    )
    page.console_errors = console_errors
    return page


def _violations(page) -> list[str]:
    page.wait_for_load_state("load")
    found = page.evaluate("window.__cspViolations || []")
    found += [text for text in page.console_errors if "Content Security Policy" in text]
    page.console_errors.clear()
    return found


@pytest.fixture
def world(register, admin_user, agent, manager):
    CatalogItemFactory(item_id="sku-777", title="Cordless Drill", category="Tools")
    block = make_block(agent, item_id="sku-777")
    boost = make_boost(manager, item_id="sku-778")
    model_version = register("lightgbm-classifier", name="churn")
    explanation_services.log_predictions(
        records=[prediction_body(model_version, "p-csp-1")]
    )
    request = privacy_services.deletion_request_create(
        customer_id="cust-csp-1", source="ZD-1", actor=admin_user
    )
    return {"block": block, "boost": boost, "request": request}


def test_main_pages__admin__no_csp_violation_and_force_plot_drawn(
    watched_page, sign_in, live_server, admin_user, world
):
    page = watched_page
    problems = {}

    # The sign-in page itself, before signing in
    page.goto(f"{live_server.url}/login/")
    problems["/login/"] = _violations(page)
    sign_in(admin_user)
    problems["/ (after sign-in)"] = _violations(page)

    paths = [
        "/",
        "/blocks/",
        "/blocks/new/",
        "/blocks/bulk/",
        f"/blocks/{world['block'].pk}/lift/",
        "/boosts/",
        "/boosts/new/",
        f"/boosts/{world['boost'].pk}/end/",
        "/items/?q=drill",
        "/items/sku-777/",
        "/serving/",
        "/audit/",
        "/explanations/",
        "/privacy/",
        "/privacy/optouts/",
        f"/privacy/requests/{world['request'].pk}/",
        "/settings/api-keys/",
        "/settings/api-keys/new/",
        "/password/change/",
        "/admin/",
        "/admin/overrides/block/",
        "/no-such-page/",
    ]
    for path in paths:
        page.goto(f"{live_server.url}{path}")
        problems[path] = _violations(page)

    # The prediction page: shap's bundle draws the plot under the policy
    page.goto(f"{live_server.url}/explanations/predictions/p-csp-1/")
    expect(page.locator("#force-plot svg").first).to_be_visible()
    problems["prediction page"] = _violations(page)

    # Swagger UI, started from its own script file, renders the operations
    page.goto(f"{live_server.url}/api/docs/")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    problems["/api/docs/"] = _violations(page)

    # The item lookup (fetch from console.js) and the bulk preview table
    page.goto(f"{live_server.url}/blocks/new/")
    page.fill("input[data-item-lookup]", "sku-777")
    expect(page.locator(".lookup-hint")).to_contain_text("Cordless Drill")
    problems["block form lookup"] = _violations(page)

    assert not {path: found for path, found in problems.items() if found}, problems


def test_csp__inline_script__is_blocked_and_reported(watched_page, live_server, db):
    """The check above can fail: an inline script injected into a served page is
    refused by Chromium and reported."""
    page = watched_page
    page.goto(f"{live_server.url}/login/")
    page.evaluate(
        "var s = document.createElement('script');"
        "s.textContent = 'window.__ran = true';"
        "document.body.appendChild(s);"
    )
    # The violation event is dispatched asynchronously: wait for it, not a time
    page.wait_for_function("window.__cspViolations.length > 0")
    assert page.evaluate("window.__ran === undefined")
    assert any("script-src" in found for found in _violations(page))
