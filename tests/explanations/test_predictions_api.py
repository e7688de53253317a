"""POST /api/v1/predictions and GET /api/v1/predictions/{id}/explanation (contract)."""

import json

import pytest
from django.test import Client

from explanations.models import Prediction, PredictionView
from opsconsole.customer_ids import hash_customer_id

from .conftest import prediction_body

URL = "/api/v1/predictions"


def _explanation_url(prediction_id: str) -> str:
    return f"/api/v1/predictions/{prediction_id}/explanation"


@pytest.fixture
def model_version(register):
    return register("lightgbm-classifier", name="churn", version="3")


@pytest.fixture
def writer(api_key_for) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {api_key_for('predictions:write')}")


@pytest.fixture
def reader(api_key_for) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {api_key_for('explanations:read')}")


def _post(client, body):
    return client.post(URL, json.dumps(body), content_type="application/json")


# Logging predictions ---------------------------------------------------------------


def test_log_prediction__new__201_and_customer_id_only_hashed(writer, model_version):
    response = _post(writer, prediction_body(model_version))

    assert response.status_code == 201
    assert response.json() == {"prediction_id": "p-1", "created": True}
    row = Prediction.objects.filter(prediction_id="p-1").values().get()
    assert row["customer_hash"] == hash_customer_id("c-123")
    assert "c-123" not in json.dumps(row, default=str)


def test_log_prediction__same_body_again__200_not_created(writer, model_version):
    _post(writer, prediction_body(model_version))

    response = _post(writer, prediction_body(model_version))

    assert response.status_code == 200
    assert response.json() == {"prediction_id": "p-1", "created": False}
    assert Prediction.objects.count() == 1


def test_log_prediction__same_id_other_body__409(writer, model_version):
    _post(writer, prediction_body(model_version))

    response = _post(writer, prediction_body(model_version, output=0.9))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"


@pytest.mark.parametrize(
    ("overrides", "field", "text"),
    [
        ({"model": "nope"}, "model", "Unknown model 'nope'"),
        ({"model_version": "9"}, "model", "version '9'"),
        ({"features": {"tenure_months": 1}}, "features", "Missing features"),
        ({"features_extra": {"colour": 1}}, "features", "Unknown features: colour"),
        ({"features_bad": {"age": "old"}}, "features", "Not a number (or null): age"),
        ({"output": "high"}, "output", "A finite number"),
        ({"customer_id": "c 1"}, "customer_id", "whitespace"),
        ({"created_at": "yesterday"}, "created_at", "ISO 8601"),
        ({"created_at": "2026-13-45T00:00Z"}, "created_at", "ISO 8601"),
        ({"model": ["churn"]}, "model", "required strings"),
        ({"prediction_id": "p 1"}, "prediction_id", "whitespace"),
    ],
)
def test_log_prediction__bad_input__400_naming_it(
    writer, model_version, overrides, field, text
):
    body = prediction_body(model_version)
    if "features_extra" in overrides:
        body["features"].update(overrides.pop("features_extra"))
    if "features_bad" in overrides:
        body["features"].update(overrides.pop("features_bad"))
    body.update(overrides)

    response = _post(writer, body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert text in " ".join(error["fields"][field])
    assert text in error["message"]
    assert not Prediction.objects.exists()


def test_log_prediction__null_feature__accepted(writer, model_version):
    body = prediction_body(model_version)
    body["features"]["spend"] = None

    response = _post(writer, body)

    assert response.status_code == 201
    assert Prediction.objects.get().features["spend"] is None


def test_log_predictions__batch__201_list_in_order(writer, model_version):
    _post(writer, prediction_body(model_version, "p-1"))
    batch = [prediction_body(model_version, f"p-{n}") for n in (1, 2, 3)]

    response = _post(writer, batch)

    assert response.status_code == 201
    assert response.json() == [
        {"prediction_id": "p-1", "created": False},
        {"prediction_id": "p-2", "created": True},
        {"prediction_id": "p-3", "created": True},
    ]


def test_log_predictions__batch_with_one_bad__400_and_nothing_written(
    writer, model_version
):
    batch = [prediction_body(model_version, f"p-{n}") for n in (1, 2, 3)]
    batch[2]["features"]["age"] = "forty"

    response = _post(writer, batch)

    assert response.status_code == 400
    assert "2.features" in response.json()["error"]["fields"]
    assert not Prediction.objects.exists()


def test_log_predictions__batch_with_conflict__409_and_nothing_written(
    writer, model_version
):
    _post(writer, prediction_body(model_version, "p-1"))
    batch = [
        prediction_body(model_version, "p-2"),
        prediction_body(model_version, "p-1", output=0.1),
    ]

    response = _post(writer, batch)

    assert response.status_code == 409
    assert list(Prediction.objects.values_list("prediction_id", flat=True)) == ["p-1"]


def test_log_predictions__over_1000__400(writer, model_version):
    batch = [prediction_body(model_version, f"p-{n}") for n in range(1001)]

    response = _post(writer, batch)

    assert response.status_code == 400
    assert not Prediction.objects.exists()


def test_log_predictions__batch_of_200__constant_query_count(
    writer, model_version, django_assert_max_num_queries
):
    batch = [prediction_body(model_version, f"p-{n}") for n in range(200)]

    with django_assert_max_num_queries(10):
        response = _post(writer, batch)

    assert response.status_code == 201
    assert Prediction.objects.count() == 200


def test_log_prediction__anonymous__401(db, model_version):
    response = _post(Client(), prediction_body(model_version))

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


def test_log_prediction__wrong_scope__403(reader, model_version):
    response = _post(reader, prediction_body(model_version))

    assert response.status_code == 403


def test_log_prediction__agent_session__403(client_for, agent, model_version):
    response = _post(client_for(agent), prediction_body(model_version))

    assert response.status_code == 403


def test_log_prediction__admin_session__201(client_for, admin_user, model_version):
    response = _post(client_for(admin_user), prediction_body(model_version))

    assert response.status_code == 201


# Reading explanations --------------------------------------------------------------


@pytest.fixture
def logged(writer, model_version):
    _post(writer, prediction_body(model_version))
    return "p-1"


def test_explanation__api_key__contract_shape(reader, logged):
    response = reader.get(_explanation_url(logged))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "prediction_id",
        "model",
        "output_space",
        "base_value",
        "output",
        "contributions",
    }
    assert body["prediction_id"] == "p-1"
    assert body["model"] == {"name": "churn", "version": "3"}
    assert body["output_space"] == "log_odds"
    assert set(body["contributions"][0]) == {"feature", "label", "value", "shap"}
    total = body["base_value"] + sum(c["shap"] for c in body["contributions"])
    assert total == pytest.approx(body["output"], rel=1e-6)
    assert not PredictionView.objects.exists()


def test_explanation__support_agent__200_and_view_recorded(client_for, agent, logged):
    response = client_for(agent).get(_explanation_url(logged))

    assert response.status_code == 200
    view = PredictionView.objects.get()
    assert (view.user, view.prediction.prediction_id) == (agent, "p-1")


def test_explanation__account_manager__403(client_for, manager, logged):
    response = client_for(manager).get(_explanation_url(logged))

    assert response.status_code == 403
    assert not PredictionView.objects.exists()


def test_explanation__anonymous__401(logged):
    response = Client().get(_explanation_url(logged))

    assert response.status_code == 401


def test_explanation__wrong_scope__403(writer, logged):
    response = writer.get(_explanation_url(logged))

    assert response.status_code == 403


def test_explanation__unknown_id__404_in_contract_format(reader, db):
    response = reader.get(_explanation_url("p-nope"))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_explanation__artifact_replaced__503_in_contract_format(
    reader, logged, model_version, artifact_dir
):
    (artifact_dir / model_version.artifact).write_bytes(b"tampered")

    response = reader.get(_explanation_url(logged))

    assert response.status_code == 503
    assert "changed" in response.json()["error"]["message"]


def test_explanation__first_request__one_read_and_one_insert(
    reader, writer, logged, model_version, django_assert_max_num_queries
):
    # Given a process that has explained one prediction of this model version
    reader.get(_explanation_url(logged))
    _post(writer, prediction_body(model_version, prediction_id="p-2"))

    # SELECT the prediction (and any explanation), then SAVEPOINT/INSERT/RELEASE
    with django_assert_max_num_queries(4):
        response = reader.get(_explanation_url("p-2"))

    assert response.status_code == 200


def test_explanation__model_version__read_once_per_process(
    reader, writer, logged, model_version, django_assert_max_num_queries
):
    reader.get("/healthz")  # nothing cached yet but the API key, on first use
    reader.get(_explanation_url("p-nope"))

    # SELECT the prediction, SELECT its model version (first use), then the INSERT
    with django_assert_max_num_queries(5) as first:
        reader.get(_explanation_url(logged))

    assert sum("explanations_modelversion" in query["sql"] for query in first) == 1


def test_explanation__stored__one_query_and_same_answer(
    reader, logged, django_assert_num_queries
):
    first = reader.get(_explanation_url(logged))

    with django_assert_num_queries(1):
        again = reader.get(_explanation_url(logged))

    assert again.status_code == 200
    assert again.json() == first.json()
    assert isinstance(again.json()["contributions"][0]["value"], float)


def test_log_prediction__model_name_with_nul__400_nothing_written(
    writer, model_version
):
    body = prediction_body(model_version, model="churn\x00")

    response = _post(writer, body)

    assert response.status_code == 400
    assert Prediction.objects.count() == 0
