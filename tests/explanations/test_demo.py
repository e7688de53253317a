"""The demo's purchase-propensity model: deterministic data, idempotent loading,
and predictions a new user can look up and read explained."""

import math
from io import StringIO

import numpy as np
import pandas as pd
import pytest
import shap
from django.core.management import call_command
from django.urls import reverse

from explanations import demo, explainers, services
from explanations.models import Explanation, ModelVersion, Prediction
from opsconsole.customer_ids import hash_customer_id

from .conftest import inked_fraction

DEMO_PREDICTIONS = demo.CUSTOMERS * demo.PREDICTIONS_PER_CUSTOMER


@pytest.fixture
def loaded(artifact_dir, admin_user):
    """The demo loaded once; returns the lines it printed."""
    return demo.load(admin=admin_user)


def test_training_data__same_seed__same_frame_and_labels():
    first_frame, first_labels = demo.training_data(rows=500)
    second_frame, second_labels = demo.training_data(rows=500)
    other_frame, _ = demo.training_data(rows=500, seed=demo.SEED + 10)

    pd.testing.assert_frame_equal(first_frame, second_frame)
    np.testing.assert_array_equal(first_labels, second_labels)
    assert not first_frame.equals(other_frame)
    assert list(first_frame.columns) == demo.FEATURE_NAMES


def test_training_data__plausible__some_buy_and_some_never_ordered():
    frame, labels = demo.training_data(rows=2_000)

    assert 0.05 < labels.mean() < 0.4
    assert frame["days_since_last_order"].isna().any()
    assert frame["price"].between(2, 900).all()
    assert set(frame["age_band"].unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert [f["name"] for f in demo.FEATURES if f.get("sensitive")] == ["age_band"]


def test_load__first_run__registers_active_model_and_logs_predictions(
    loaded, admin_user
):
    model_version = ModelVersion.objects.get()
    assert (model_version.name, model_version.version) == (
        demo.MODEL_NAME,
        demo.MODEL_VERSION,
    )
    assert model_version.is_active and model_version.framework == "lightgbm"
    assert model_version.registered_by == admin_user
    assert model_version.output_space == "log_odds"
    assert Prediction.objects.filter(model_version=model_version).count() == (
        DEMO_PREDICTIONS
    )
    assert "registered and active" in loaded[0]
    assert f"{DEMO_PREDICTIONS} logged" in loaded[1]


def test_load__second_run__reuses_model_version_and_predictions(loaded, admin_user):
    first = ModelVersion.objects.get()
    digests = dict(Prediction.objects.values_list("prediction_id", "request_digest"))

    lines = demo.load(admin=admin_user)

    assert list(ModelVersion.objects.all()) == [first]
    assert "already registered, reused" in lines[0]
    assert f"0 logged, {DEMO_PREDICTIONS} already there" in lines[1]
    assert (
        dict(Prediction.objects.values_list("prediction_id", "request_digest"))
        == digests
    )


def test_load_demo_command__twice__prints_the_demo_model(artifact_dir, db):
    output = StringIO()

    call_command("load_demo", stdout=output)
    call_command("load_demo", stdout=output)

    text = output.getvalue()
    assert f"{demo.MODEL_NAME} v{demo.MODEL_VERSION} registered and active" in text
    assert "already registered, reused" in text
    assert Prediction.objects.count() == DEMO_PREDICTIONS


@pytest.mark.filterwarnings("ignore:LightGBM binary classifier")
def test_demo_prediction__explained__matches_shap_and_adds_up(loaded):
    # Given the newest demo prediction, and the model straight from its artifact
    prediction = Prediction.objects.select_related("model_version").first()
    model = explainers.load_estimator(prediction.model_version)
    names = demo.FEATURE_NAMES
    features = prediction.features  # key order is the database's (jsonb sorts)
    frame = pd.DataFrame(
        [[math.nan if features[name] is None else features[name] for name in names]],
        columns=names,
        dtype=float,
    )

    # When it is explained
    explanation = services.explain_prediction(prediction_id=prediction.prediction_id)

    # Then the values are shap's own and add up to the model's log odds
    values = shap.TreeExplainer(model).shap_values(frame)
    values = np.asarray(values[-1] if isinstance(values, list) else values).ravel()
    by_feature = {c["feature"]: c["shap"] for c in explanation.contributions}
    for name, value in zip(demo.FEATURE_NAMES, values, strict=True):
        assert by_feature[name] == pytest.approx(value, rel=1e-6, abs=1e-9)
    total = explanation.base_value + sum(by_feature.values())
    assert abs(total - explanation.output) <= 1e-6 * max(1.0, abs(explanation.output))
    # And the logged output is the probability of that same score
    probability = 1 / (1 + math.exp(-explanation.output))
    assert prediction.output == pytest.approx(probability, abs=1e-6)


def test_demo_never_ordered_customer__missing_value__explained(loaded):
    prediction = next(
        p
        for p in Prediction.objects.all()
        if p.features["days_since_last_order"] is None
    )

    explanation = services.explain_prediction(prediction_id=prediction.prediction_id)

    total = explanation.base_value + sum(c["shap"] for c in explanation.contributions)
    assert abs(total - explanation.output) <= 1e-6 * max(1.0, abs(explanation.output))
    assert Explanation.objects.count() == 1


def test_lookup__demo_customer__lists_their_predictions(loaded, client_for, agent):
    # Given a demo customer and their predictions, newest first
    customer_id = demo.demo_customer_id(7)
    own_ids = list(
        Prediction.objects.filter(customer_hash=hash_customer_id(customer_id))
        .order_by("-created_at")
        .values_list("prediction_id", flat=True)
    )

    # When an agent searches for them
    response = client_for(agent).post(
        reverse("explanations:lookup"), {"by": "customer", "query": customer_id}
    )

    # Then their predictions are listed, newest first, under the demo model
    html = response.content.decode()
    assert response.status_code == 200
    assert len(own_ids) == demo.PREDICTIONS_PER_CUSTOMER
    assert f">{demo.MODEL_NAME} <" in html
    positions = [html.index(f">{prediction_id}<") for prediction_id in own_ids]
    assert positions == sorted(positions)


def test_demo_prediction_page__force_plot_and_customer_safe_summary(
    loaded, client_for, agent
):
    # Given the newest demo prediction, which the load suggests trying
    prediction_id = f"pred-demo-{DEMO_PREDICTIONS:04d}"
    assert prediction_id in loaded[1]

    response = client_for(agent).get(
        reverse("explanations:prediction_detail", args=[prediction_id])
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="force-plot-data"' in html and "Category affinity" in html
    summary = html.split('id="customer-summary"')[1].split("</textarea>")[0]
    assert "Price" in summary and "Age band" not in summary


def test_demo_force_plot_image__newest_prediction__drawn_not_blank(
    loaded, client_for, agent
):
    # The newest demo prediction has a low probability: shap's matplotlib plot with
    # a logit axis came out blank for it (its axis went below probability 0).
    prediction_id = f"pred-demo-{DEMO_PREDICTIONS:04d}"

    response = client_for(agent).get(
        reverse("explanations:force_plot_image", args=[prediction_id])
    )

    inked = inked_fraction(response.content)
    assert inked > 0.01, f"only {inked:.2%} of the image is drawn"
