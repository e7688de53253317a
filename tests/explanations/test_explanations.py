"""SHAP explanations: correct against shap itself, computed once, read in words;
and the retention job."""

import math
import time
from datetime import timedelta

import joblib
import numpy as np
import pandas as pd
import pytest
import shap
from django.utils import timezone

from explanations import explainers, selectors, services, tasks
from explanations.models import Explanation, Prediction, PredictionView
from tests.conftest import wait_until

from .conftest import FEATURE_NAMES, ROW, TREE_KINDS, prediction_body


def _log(model_version, prediction_id="p-1", **overrides):
    services.log_predictions(
        records=[prediction_body(model_version, prediction_id, **overrides)]
    )


def _direct_shap(model, row: dict) -> tuple[float, np.ndarray]:
    """SHAP straight from the library, for the positive class / the regression."""
    frame = pd.DataFrame([row], columns=FEATURE_NAMES, dtype=float)
    explainer = shap.TreeExplainer(model)
    values = explainer.shap_values(frame)
    if isinstance(values, list):
        values = values[-1]
    values = np.asarray(values)
    if values.ndim == 3:
        values = values[..., -1]
    return float(np.ravel(explainer.expected_value)[-1]), values.reshape(-1)


def _relative_gap(left: float, right: float) -> float:
    return abs(left - right) / max(abs(right), 1.0)


@pytest.mark.parametrize("kind", TREE_KINDS)
def test_explain_prediction__tree_model__matches_shap_and_adds_up(
    register, model_files, kind
):
    # Given a registered tree model and a logged prediction
    model_version = register(kind)
    _log(model_version)

    # When it is explained
    explanation = services.explain_prediction(prediction_id="p-1")

    # Then the values are shap's own, in the model's raw output space, and add up
    model = joblib.load(model_files[kind])
    base_value, values = _direct_shap(model, ROW)
    by_feature = {c["feature"]: c["shap"] for c in explanation.contributions}
    for name, value in zip(FEATURE_NAMES, values, strict=True):
        assert by_feature[name] == pytest.approx(value, rel=1e-6, abs=1e-9)
    assert explanation.base_value == pytest.approx(base_value, rel=1e-6)
    frame = pd.DataFrame([ROW], columns=FEATURE_NAMES, dtype=float)
    expected_space = "log_odds" if kind.endswith("classifier") else "raw"
    assert explanation.output_space == expected_space
    own_output = explainers.model_output(model, frame, output_space=expected_space)[0]
    assert _relative_gap(explanation.output, own_output) < 1e-6
    total = explanation.base_value + sum(by_feature.values())
    assert _relative_gap(total, explanation.output) < 1e-6


def test_explain_prediction__contributions__sorted_by_absolute_shap(register):
    _log(register("lightgbm-classifier"))

    explanation = services.explain_prediction(prediction_id="p-1")

    sizes = [abs(c["shap"]) for c in explanation.contributions]
    assert sizes == sorted(sizes, reverse=True)
    assert {c["label"] for c in explanation.contributions} >= {"Tenure", "Sex"}


@pytest.mark.parametrize("kind", ["lightgbm-regressor", "xgboost-classifier"])
def test_explain_prediction__missing_value__explained_as_nan(register, kind):
    model_version = register(kind)
    features = {**ROW, "spend": None}
    _log(model_version, features=features)

    explanation = services.explain_prediction(prediction_id="p-1")

    spend = next(c for c in explanation.contributions if c["feature"] == "spend")
    assert spend["value"] is None
    total = explanation.base_value + sum(c["shap"] for c in explanation.contributions)
    assert _relative_gap(total, explanation.output) < 1e-6


def test_explain_prediction__logistic_regression__uses_background_and_adds_up(
    register, model_files
):
    model_version = register("sklearn-logistic")
    _log(model_version)

    explanation = services.explain_prediction(prediction_id="p-1")

    model = joblib.load(model_files["sklearn-logistic"])
    frame = pd.DataFrame([ROW], columns=FEATURE_NAMES, dtype=float)
    assert explanation.output_space == "log_odds"
    assert explanation.output == pytest.approx(model.decision_function(frame)[0])
    total = explanation.base_value + sum(c["shap"] for c in explanation.contributions)
    assert _relative_gap(total, explanation.output) < 1e-6


def test_explain_prediction__second_call__reuses_stored_explanation(
    register, monkeypatch
):
    # Given an explanation computed once
    _log(register("sklearn-regressor"))
    first = services.explain_prediction(prediction_id="p-1")
    calls = []
    original = explainers.ModelExplainer.explain
    monkeypatch.setattr(
        explainers.ModelExplainer,
        "explain",
        lambda self, features: calls.append(1) or original(self, features),
    )

    # When it is asked for again
    second = services.explain_prediction(prediction_id="p-1")

    # Then SHAP does not run again and the row is the same
    assert calls == []
    assert second.pk == first.pk
    assert second.computed_at == first.computed_at
    assert Explanation.objects.count() == 1


def _race(monkeypatch, model_version):
    """While SHAP runs, another request stores its explanation first."""
    original = explainers.ModelExplainer.explain

    def explain_while_another_stores(self, features):
        attribution = original(self, features)
        Explanation.objects.create(
            prediction=Prediction.objects.get(prediction_id="p-1"),
            model_version=model_version,
            base_value=attribution.base_value,
            output=attribution.output,
            output_space=model_version.output_space,
            contributions=[
                {"feature": "first", "label": "First", "value": 1, "shap": 0}
            ],
        )
        return attribution

    monkeypatch.setattr(
        explainers.ModelExplainer, "explain", explain_while_another_stores
    )


def test_explain_prediction__lost_race_in_a_transaction__first_row_wins(
    register, monkeypatch
):
    # Given a request inside a transaction (the test's) that loses the race
    model_version = register("lightgbm-regressor")
    _log(model_version)
    _race(monkeypatch, model_version)

    explanation = services.explain_prediction(prediction_id="p-1")

    # Then the stored row is answered, and the transaction is still usable
    assert explanation.contributions[0]["feature"] == "first"
    assert Explanation.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_explain_prediction__lost_race_in_autocommit__first_row_wins(
    register, monkeypatch
):
    model_version = register("lightgbm-regressor")
    _log(model_version)
    _race(monkeypatch, model_version)

    explanation = services.explain_prediction(prediction_id="p-1")

    assert explanation.contributions[0]["feature"] == "first"
    assert explanation.prediction.prediction_id == "p-1"
    assert Explanation.objects.count() == 1


def test_explainer_for__same_model_version__built_once(register):
    model_version = register("xgboost-regressor")

    first = explainers.explainer_for(model_version)
    second = explainers.explainer_for(model_version)

    assert first is second


def test_explain_prediction__artifact_replaced__refuses(register, artifact_dir):
    model_version = register("sklearn-regressor")
    _log(model_version)
    (artifact_dir / model_version.artifact).write_bytes(b"tampered")

    with pytest.raises(explainers.ArtifactError, match="changed"):
        services.explain_prediction(prediction_id="p-1")


def test_explain_predictions_task__new_ids__stores_explanations(register):
    model_version = register("lightgbm-regressor")
    _log(model_version, "p-1")
    _log(model_version, "p-2")

    explained = tasks.explain_predictions(["p-1", "p-2", "p-gone"])

    assert explained == 2
    assert Explanation.objects.count() == 2


def test_log_predictions__precompute_on__enqueues_new_ids_after_commit(
    register, settings, monkeypatch, django_capture_on_commit_callbacks
):
    # Given precomputation on and a prediction already logged
    settings.EXPLANATION_PRECOMPUTE = True
    model_version = register("lightgbm-classifier")
    sent = []
    monkeypatch.setattr(tasks.explain_predictions, "delay", sent.append)
    with django_capture_on_commit_callbacks(execute=True):
        _log(model_version, "p-0")

    # When a batch with the old and a new prediction is logged
    with django_capture_on_commit_callbacks(execute=True):
        services.log_predictions(
            records=[prediction_body(model_version, n) for n in ("p-0", "p-1")]
        )

    # Then only new ids are enqueued, and the task explains them
    assert sent == [["p-0"], ["p-1"]]
    tasks.explain_predictions(sent[1])
    assert Explanation.objects.filter(prediction__prediction_id="p-1").exists()


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_log_predictions__precompute_on__real_worker_stores_explanations(
    register, precompute_worker
):
    # Given precomputation on and a real Celery worker (not eager)
    from opsconsole.celery import app

    assert not app.conf.task_always_eager
    model_version = register("lightgbm-classifier")

    # When a batch is logged
    services.log_predictions(
        records=[prediction_body(model_version, f"p-{n}") for n in range(3)]
    )

    # Then the worker stores their explanations, which add up
    wait_until(lambda: Explanation.objects.count() == 3, timeout=60)
    for explanation in Explanation.objects.all():
        total = explanation.base_value + sum(
            c["shap"] for c in explanation.contributions
        )
        assert _relative_gap(total, explanation.output) < 1e-6


def test_log_predictions__precompute_off__explains_nothing(
    register, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        _log(register("lightgbm-classifier"))

    assert callbacks == []
    assert not Explanation.objects.exists()


# Plain-language reasons ------------------------------------------------------------


def _explanation(register, contributions):
    model_version = register("sklearn-regressor")
    _log(model_version)
    prediction = Prediction.objects.get(prediction_id="p-1")
    return Explanation.objects.create(
        prediction=prediction,
        model_version=model_version,
        base_value=0.0,
        output=sum(c["shap"] for c in contributions),
        output_space="raw",
        contributions=contributions,
    )


CONTRIBUTIONS = [
    {"feature": "sex_female", "label": "Sex", "value": 1, "shap": 0.9},
    {"feature": "tenure_months", "label": "Tenure", "value": 2, "shap": -0.414},
    {"feature": "visits_last_week", "label": "Visits", "value": 12, "shap": 0.333},
    {"feature": "spend", "label": "Spend", "value": None, "shap": 0.001},
]


def test_plain_reasons__default__label_value_unit_and_direction(register):
    explanation = _explanation(register, CONTRIBUTIONS)

    reasons = selectors.plain_reasons(explanation)

    assert reasons == [
        "Sex: female raised the score by 0.90",
        "Tenure of 2 months lowered the score by 0.41",
        "Visits last week of 12 raised the score by 0.33",
        "Spend of missing did not change the score",
    ]


def test_plain_reasons__limit__keeps_the_largest(register):
    explanation = _explanation(register, CONTRIBUTIONS)

    assert len(selectors.plain_reasons(explanation, limit=2)) == 2


def test_plain_reasons__customer_safe__omits_sensitive_and_values(register):
    explanation = _explanation(register, CONTRIBUTIONS)

    reasons = selectors.plain_reasons(explanation, customer_safe=True)

    assert reasons == [
        "Tenure lowered the score by 0.41",
        "Visits last week raised the score by 0.33",
        "Spend did not change the score",
    ]
    assert not any("Sex" in reason or "female" in reason for reason in reasons)


# Retention -------------------------------------------------------------------------


def test_delete_expired_predictions_task__old_and_new__deletes_only_old(
    register, settings, agent
):
    # Given one prediction past retention (explained and viewed) and one recent
    settings.PREDICTION_RETENTION_DAYS = 30
    model_version = register("lightgbm-regressor")
    old = (timezone.now() - timedelta(days=31)).isoformat()
    _log(model_version, "p-old", created_at=old)
    _log(model_version, "p-new")
    explanation = services.explain_prediction(prediction_id="p-old")
    services.record_prediction_view(prediction=explanation.prediction, user=agent)

    # When the daily job runs
    deleted = tasks.delete_expired_predictions()

    # Then the old one is gone with its explanation and access log
    assert deleted == 1
    assert list(Prediction.objects.values_list("prediction_id", flat=True)) == ["p-new"]
    assert not Explanation.objects.exists()
    assert not PredictionView.objects.exists()


def test_delete_expired_predictions__nothing_old__deletes_nothing(register):
    _log(register("lightgbm-regressor"))

    assert services.delete_expired_predictions() == 0
    assert Prediction.objects.count() == 1
    assert not math.isnan(Prediction.objects.get().output)


def test_explain_prediction__null_feature_on_a_non_tree_model__422_naming_it(
    register, client_for, agent
):
    model_version = register("sklearn-logistic")
    name = FEATURE_NAMES[0]
    _log(model_version, features={**ROW, name: None})

    response = client_for(agent).get("/api/v1/predictions/p-1/explanation")

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "unexplainable"
    assert name in error["message"] and name in error["fields"]
    assert not Explanation.objects.exists()


# EXPLAINER_MAX_SECONDS -------------------------------------------------------------


def _slow_model(monkeypatch, seconds_per_call: float) -> list[int]:
    """Every model call sleeps; returns the sizes of the calls made."""
    calls: list[int] = []
    original = explainers.model_output

    def slow(estimator, frame, *, output_space):
        calls.append(len(frame))
        time.sleep(seconds_per_call)
        return original(estimator, frame, output_space=output_space)

    monkeypatch.setattr(explainers, "model_output", slow)
    return calls


def test_explain__non_tree_model_past_the_budget__stopped_within_one_call(
    register, settings, monkeypatch
):
    # Given a background explainer already used once (shap's one-off compilation
    # done), 100 background rows and 5 features: 2**5 x 100 masked rows to score
    model_version = register("sklearn-logistic")
    _log(model_version, "p-warm")
    services.explain_prediction(prediction_id="p-warm")
    _log(model_version, "p-1")
    # And a model now slow: 0.05 s per call of at most 10 rows (over 10 s in all)
    monkeypatch.setattr(explainers, "MODEL_CALL_ROWS", 10)
    calls = _slow_model(monkeypatch, 0.05)
    settings.EXPLAINER_MAX_SECONDS = 0.3

    # When it is asked for an explanation
    started = time.perf_counter()
    with pytest.raises(explainers.ExplanationTooSlow, match="EXPLAINER_MAX_SECONDS"):
        services.explain_prediction(prediction_id="p-1")
    elapsed = time.perf_counter() - started

    # Then it stops within one call after the budget, far short of the full run
    assert elapsed < 0.3 + 0.05 + 0.25
    assert max(calls) <= 10 and len(calls) < 12
    assert not Explanation.objects.filter(prediction__prediction_id="p-1").exists()


def test_explanation_api__past_the_budget__503_names_the_setting(
    register, settings, monkeypatch, client_for, agent
):
    settings.EXPLAINER_MAX_SECONDS = 0.0
    _log(register("sklearn-logistic"))

    response = client_for(agent).get("/api/v1/predictions/p-1/explanation")

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "explanation_too_slow"
    assert "EXPLAINER_MAX_SECONDS" in error["message"]


def test_explain__non_tree_model_within_the_budget__many_calls_same_values(
    register, monkeypatch
):
    # Given the same explanation computed in one model call and in calls of 7 rows
    _log(register("sklearn-logistic"))
    whole = services.explain_prediction(prediction_id="p-1")
    Explanation.objects.all().delete()
    explainers.forget_explainers()
    monkeypatch.setattr(explainers, "MODEL_CALL_ROWS", 7)

    chunked = services.explain_prediction(prediction_id="p-1")

    # Then splitting the model calls changes nothing
    for left, right in zip(chunked.contributions, whole.contributions, strict=True):
        assert left["feature"] == right["feature"]
        assert left["shap"] == pytest.approx(right["shap"], rel=1e-9, abs=1e-12)
    assert chunked.base_value == pytest.approx(whole.base_value, rel=1e-12)


def test_background_rows__slow_model__fewer_rows_never_below_the_minimum(
    register, settings, monkeypatch
):
    model_version = register("sklearn-logistic")
    settings.EXPLAINER_MAX_SECONDS = 10.0
    roomy = explainers.ModelExplainer(model_version)
    _slow_model(monkeypatch, 0.2)
    settings.EXPLAINER_MAX_SECONDS = 0.5

    tight = explainers.ModelExplainer(model_version)

    assert len(roomy.explainer.masker.data) == explainers.BACKGROUND_MAX_ROWS
    assert len(tight.explainer.masker.data) == explainers.BACKGROUND_MIN_ROWS
