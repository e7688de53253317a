"""The model registry: register_model validates everything before writing anything."""

import json

import joblib
import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from explanations import services
from explanations.models import ModelVersion
from opsconsole.errors import ConflictError

from .conftest import FEATURE_NAMES


def _nothing_registered(artifact_dir) -> bool:
    files = list(artifact_dir.rglob("*")) if artifact_dir.exists() else []
    return not ModelVersion.objects.exists() and not [f for f in files if f.is_file()]


@pytest.mark.parametrize(
    ("kind", "framework", "output_space", "is_classifier"),
    [
        ("lightgbm-classifier", "lightgbm", "log_odds", True),
        ("xgboost-regressor", "xgboost", "raw", False),
        ("sklearn-classifier", "scikit-learn", "log_odds", True),
        ("sklearn-regressor", "scikit-learn", "raw", False),
    ],
)
def test_register_model__fitted_estimator__recorded_with_detected_framework(
    register, artifact_dir, kind, framework, output_space, is_classifier
):
    model_version = register(kind, name="churn", version="3")

    assert model_version.framework == framework
    assert model_version.output_space == output_space
    assert model_version.is_classifier is is_classifier
    assert model_version.feature_names == FEATURE_NAMES
    assert model_version.features[0]["label"] == "Tenure"
    assert model_version.features[3]["value_labels"] == {"1": "female", "0": "male"}
    stored = artifact_dir / model_version.artifact
    assert stored.is_file()
    assert len(model_version.artifact_sha256) == 64


def test_register_model__no_features_file__labels_are_feature_names(
    db, artifact_dir, model_files
):
    model_version = services.register_model(
        name="churn", version="1", artifact_path=model_files["xgboost-classifier"]
    )

    assert model_version.feature_names == FEATURE_NAMES
    assert [f["label"] for f in model_version.features] == FEATURE_NAMES
    assert model_version.is_active is False


def test_register_model__activate_new_version__old_one_inactive(register):
    first = register("lightgbm-regressor", name="churn", version="1")
    second = register("lightgbm-regressor", name="churn", version="2")

    first.refresh_from_db()
    assert (first.is_active, second.is_active) == (False, True)


def test_register_model__same_name_and_version__raises_conflict(register):
    register("lightgbm-regressor", name="churn", version="1")

    with pytest.raises(ConflictError, match="already registered"):
        register("lightgbm-regressor", name="churn", version="1")


def test_register_model__not_joblib__raises_and_keeps_nothing(
    db, artifact_dir, tmp_path
):
    artifact = tmp_path / "model.joblib"
    artifact.write_text("not a pickle")

    with pytest.raises(ValidationError, match="Not a joblib file"):
        services.register_model(name="churn", version="1", artifact_path=artifact)

    assert _nothing_registered(artifact_dir)


def test_register_model__not_an_estimator__raises_and_keeps_nothing(
    db, artifact_dir, tmp_path
):
    artifact = tmp_path / "model.joblib"
    joblib.dump({"weights": [1, 2]}, artifact)

    with pytest.raises(ValidationError, match="has no predict"):
        services.register_model(name="churn", version="1", artifact_path=artifact)

    assert _nothing_registered(artifact_dir)


def test_register_model__not_fitted__raises_and_keeps_nothing(
    db, artifact_dir, tmp_path
):
    from lightgbm import LGBMClassifier

    artifact = tmp_path / "model.joblib"
    joblib.dump(LGBMClassifier(), artifact)

    with pytest.raises(ValidationError, match="not fitted"):
        services.register_model(name="churn", version="1", artifact_path=artifact)

    assert _nothing_registered(artifact_dir)


def test_register_model__features_do_not_match__raises_and_keeps_nothing(
    db, artifact_dir, model_files, tmp_path
):
    features = tmp_path / "FEATURES.json"
    features.write_text(
        json.dumps([{"name": name} for name in [*FEATURE_NAMES[:-1], "income"]])
    )

    with pytest.raises(ValidationError) as raised:
        services.register_model(
            name="churn",
            version="1",
            artifact_path=model_files["lightgbm-classifier"],
            features_path=features,
        )

    message = " ".join(raised.value.messages)
    assert "missing from FEATURES.json: spend" in message
    assert "not known to the model: income" in message
    assert _nothing_registered(artifact_dir)


def test_register_model__non_tree_without_background__raises(
    db, artifact_dir, model_files
):
    with pytest.raises(ValidationError, match="background"):
        services.register_model(
            name="churn", version="1", artifact_path=model_files["sklearn-logistic"]
        )

    assert _nothing_registered(artifact_dir)


def test_register_model__database_write_fails__artifact_file_removed(
    register, artifact_dir, monkeypatch
):
    def fail(*args, **kwargs):
        raise RuntimeError("database down")

    # The service saves the new version itself (to record who registered it).
    monkeypatch.setattr(ModelVersion, "save", fail)

    with pytest.raises(RuntimeError):
        register("sklearn-logistic")

    assert _nothing_registered(artifact_dir)


def test_register_model_command__valid__registers_and_activates(
    db, artifact_dir, model_files, capsys
):
    call_command(
        "register_model",
        "churn",
        "3",
        str(model_files["sklearn-logistic"]),
        "--features",
        str(model_files["features"]),
        "--background",
        str(model_files["background"]),
        "--activate",
    )

    model_version = ModelVersion.objects.get(name="churn", version="3")
    assert model_version.is_active
    assert model_version.background
    assert "Registered churn v3" in capsys.readouterr().out


def test_register_model_command__bad_artifact__command_error(
    db, artifact_dir, tmp_path
):
    artifact = tmp_path / "model.joblib"
    artifact.write_text("not a pickle")

    with pytest.raises(CommandError, match="artifact: Not a joblib file"):
        call_command("register_model", "churn", "3", str(artifact))

    assert _nothing_registered(artifact_dir)


def test_model_version_admin__admin__lists_and_shows_read_only(
    register, client_for, admin_user
):
    model_version = register("lightgbm-regressor", name="churn", version="3")
    client = client_for(admin_user)

    listing = client.get("/admin/explanations/modelversion/")
    detail = client.get(f"/admin/explanations/modelversion/{model_version.pk}/change/")

    assert listing.status_code == 200
    assert "churn" in listing.content.decode()
    assert detail.status_code == 200
    assert model_version.artifact_sha256 in detail.content.decode()
    assert 'name="artifact_sha256"' not in detail.content.decode()


def test_model_version_admin__support_agent__refused(client_for, agent, db):
    response = client_for(agent).get("/admin/explanations/modelversion/")

    assert response.status_code == 302
