"""The explanation pages: lookup, prediction page with force plot, PNG, view log."""

import logging
import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from explanations import services
from explanations.models import PredictionView

from .conftest import inked_fraction, prediction_body

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RAW_CUSTOMER_ID = "cust-raw-7f3a91"


@pytest.fixture
def classifier(register):
    return register("lightgbm-classifier", name="churn")


@pytest.fixture
def logged(classifier):
    services.log_predictions(records=[prediction_body(classifier, "p-1")])
    return "p-1"


def _urls(prediction_id: str) -> dict[str, str]:
    return {
        "lookup": reverse("explanations:lookup"),
        "detail": reverse("explanations:prediction_detail", args=[prediction_id]),
        "image": reverse("explanations:force_plot_image", args=[prediction_id]),
        "views": reverse("explanations:views"),
    }


# Roles -----------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["lookup", "detail", "image"])
@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("support_agent", 200),
        ("admin", 200),
        ("account_manager", 403),
        ("privacy_officer", 403),
    ],
)
def test_explanation_pages__by_role__allowed_or_403(
    client_for, users, logged, page, role, expected
):
    response = client_for(users[role]).get(_urls(logged)[page])

    assert response.status_code == expected
    if expected == 403:
        assert "support_agent" in response.content.decode()


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("admin", 200),
        ("support_agent", 403),
        ("account_manager", 403),
        ("privacy_officer", 403),
    ],
)
def test_view_log__by_role__admin_only(client_for, users, role, expected):
    response = client_for(users[role]).get(reverse("explanations:views"))

    assert response.status_code == expected


@pytest.mark.parametrize("page", ["lookup", "detail", "image", "views"])
def test_explanation_pages__anonymous__sent_to_login(client, logged, page):
    response = client.get(_urls(logged)[page])

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_navigation__agent__has_explanations_entry(client_for, agent, db):
    response = client_for(agent).get(reverse("dashboard"))

    assert f'href="{reverse("explanations:lookup")}"' in response.content.decode()


# Lookup ----------------------------------------------------------------------------


def test_lookup__known_prediction_id__redirects_to_its_page(client_for, agent, logged):
    response = client_for(agent).post(
        reverse("explanations:lookup"), {"by": "prediction", "query": logged}
    )

    assert response.status_code == 302
    assert response["Location"] == _urls(logged)["detail"]


def test_lookup__unknown_prediction_id__says_so(client_for, agent, logged):
    response = client_for(agent).post(
        reverse("explanations:lookup"), {"by": "prediction", "query": "p-nope"}
    )

    assert response.status_code == 200
    assert "No prediction “p-nope”" in response.content.decode()


def test_lookup__customer_id__lists_its_predictions_newest_first_per_model(
    client_for, agent, register, caplog
):
    # Given two models and predictions for two customers at different times
    churn = register("lightgbm-classifier", name="churn")
    spend = register("lightgbm-regressor", name="spend")
    services.log_predictions(
        records=[
            prediction_body(
                churn,
                "churn-old",
                customer_id=RAW_CUSTOMER_ID,
                created_at="2026-11-01T10:00Z",
            ),
            prediction_body(
                churn,
                "churn-new",
                customer_id=RAW_CUSTOMER_ID,
                created_at="2026-11-20T10:00Z",
            ),
            prediction_body(
                spend,
                "spend-mid",
                customer_id=RAW_CUSTOMER_ID,
                created_at="2026-11-10T10:00Z",
            ),
            prediction_body(churn, "someone-else", customer_id="other-customer"),
        ]
    )

    # When the agent searches by the customer id
    with caplog.at_level(logging.DEBUG):
        response = client_for(agent).post(
            reverse("explanations:lookup"),
            {"by": "customer", "query": RAW_CUSTOMER_ID},
        )

    # Then that customer's predictions are listed, newest first, grouped per model
    html = response.content.decode()
    assert response.status_code == 200
    positions = [html.index(name) for name in ("churn-new", "churn-old", "spend-mid")]
    assert positions == sorted(positions)
    assert html.index(">churn <") < html.index(">spend <")
    assert "someone-else" not in html
    # And the raw id is kept nowhere: not in the database, not in the logs
    dump = StringIO()
    call_command("dumpdata", stdout=dump)
    assert RAW_CUSTOMER_ID not in dump.getvalue()
    assert RAW_CUSTOMER_ID not in caplog.text


def test_lookup__unknown_customer__empty_state(client_for, agent, logged):
    response = client_for(agent).post(
        reverse("explanations:lookup"), {"by": "customer", "query": "nobody-here"}
    )

    assert "No predictions for this customer" in response.content.decode()


def test_lookup__invalid_customer_id__form_error(client_for, agent, db):
    response = client_for(agent).post(
        reverse("explanations:lookup"), {"by": "customer", "query": "bad\u200bid"}
    )

    assert response.status_code == 200
    assert 'class="errorlist"' in response.content.decode()


# Prediction page -------------------------------------------------------------------


def test_prediction_page__classifier__table_reasons_summary_and_plot(
    client_for, agent, logged
):
    response = client_for(agent).get(_urls(logged)["detail"])

    html = response.content.decode()
    assert response.status_code == 200
    assert len(response.content) < 30_000
    # the output as log odds and as a probability, with the model
    assert "Probability" in html
    assert "churn" in html
    # every feature, with value labels and units
    table = html[html.index('<table class="features">') :]
    for text in ("Tenure", "2 months", "Visits last week", "female", "35.5 SGD"):
        assert text in table
    # the reasons in words, and the customer-safe summary without sensitive features
    assert "Tenure of 2 months" in html
    summary = re.search(
        r'<textarea id="customer-summary"[^>]*>(.*?)</textarea>', html, re.S
    ).group(1)
    assert "Tenure" in summary
    assert "Sex" not in summary
    assert "Age" not in summary
    assert "months" not in summary
    # shap's own bundle, loaded once as a file, with no inline script
    assert html.count("shap/bundle.js") == 1
    assert re.search(r'<script src="[^"]*shap/bundle\.js"', html)
    assert '<script id="force-plot-data" type="application/json">' in html
    inline = re.findall(r"<script(?![^>]*\b(?:src|type=\"application/json\"))", html)
    assert inline == []
    assert f'src="{_urls(logged)["image"]}"' in html


def test_prediction_page__viewed__recorded_each_time(client_for, agent, logged):
    client = client_for(agent)

    client.get(_urls(logged)["detail"])
    client.get(_urls(logged)["detail"])

    views = PredictionView.objects.filter(prediction__prediction_id=logged)
    assert [view.user for view in views] == [agent, agent]


def test_prediction_page__unknown_id__404(client_for, agent, db):
    response = client_for(agent).get(_urls("p-unknown")["detail"])

    assert response.status_code == 404
    assert not PredictionView.objects.exists()


def test_bundle__static_finder__serves_shaps_own_file():
    from pathlib import Path

    import shap
    from django.contrib.staticfiles import finders

    found = finders.find("shap/bundle.js")

    assert found is not None
    shap_bundle = Path(shap.__file__).parent / "plots" / "resources" / "bundle.js"
    assert Path(found).read_bytes() == shap_bundle.read_bytes()


# Force plot image ------------------------------------------------------------------


def test_force_plot_image__known_prediction__png_never_cached(
    client_for, agent, logged
):
    response = client_for(agent).get(_urls(logged)["image"])

    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response.content.startswith(PNG_SIGNATURE)
    assert response["Cache-Control"] == "private, no-store"  # personal data


def test_force_plot_image__classifier_in_log_odds__plot_is_drawn(
    client_for, agent, logged
):
    response = client_for(agent).get(_urls(logged)["image"])

    # A blank canvas is a PNG too: the plot must have ink (bars, labels, an axis)
    inked = inked_fraction(response.content)
    assert inked > 0.01, f"only {inked:.2%} of the image is drawn"


def test_force_plot_image__unknown_id__404(client_for, agent, db):
    response = client_for(agent).get(_urls("p-unknown")["image"])

    assert response.status_code == 404


# View log --------------------------------------------------------------------------


def test_view_log__after_a_view__lists_who_and_which(
    client_for, agent, admin_user, logged
):
    client_for(agent).get(_urls(logged)["detail"])

    response = client_for(admin_user).get(reverse("explanations:views"))

    html = response.content.decode()
    assert agent.username in html
    assert _urls(logged)["detail"] in html
    assert "1 in all" in html


def test_view_log__no_views__empty_state(client_for, admin_user):
    response = client_for(admin_user).get(reverse("explanations:views"))

    assert "No views yet" in response.content.decode()
