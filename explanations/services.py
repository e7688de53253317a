"""Every write to the registry, the prediction log and the explanations.

The register_model command, the admin and the REST API call these. A model is
validated completely before anything is written, and a failed registration leaves
neither a row nor a file behind.
"""

import hashlib
import json
import math
import re
import shutil
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from opsconsole.customer_ids import hash_customer_id
from opsconsole.errors import ConflictError

from . import explainers, selectors
from .models import (
    PREDICTION_ID_MAX_LENGTH,
    Explanation,
    ModelVersion,
    Prediction,
    PredictionView,
)

PREDICTION_BATCH_MAX = 1_000
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_IDENTIFIER = re.compile(r"^[^\s\x00-\x1f\x7f-\x9f]+$")
_FEATURE_KEYS = {"name", "label", "description", "unit", "value_labels", "sensitive"}


# Model registry --------------------------------------------------------------------


def _load_artifact(path: Path):
    import joblib

    if not path.is_file():
        raise ValidationError({"artifact": f"No such file: {path}."})
    try:
        estimator = joblib.load(path)
    except Exception as error:
        raise ValidationError(
            {"artifact": f"Not a joblib file that can be loaded ({error})."}
        ) from error
    if not callable(getattr(estimator, "predict", None)):
        raise ValidationError(
            {
                "artifact": f"Not an estimator: a {type(estimator).__name__} has no "
                "predict()."
            }
        )
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(estimator)
    except NotFittedError as error:
        raise ValidationError(
            {"artifact": f"The {type(estimator).__name__} is not fitted."}
        ) from error
    except TypeError:
        pass  # not a scikit-learn-style estimator; the framework check decides
    return estimator


def _estimator_feature_names(estimator) -> list[str] | None:
    """Feature names the estimator was fitted with, when it exposes them."""
    for attribute in ("feature_names_in_", "feature_name_", "feature_names"):
        try:
            names = getattr(estimator, attribute, None)
        except Exception:  # noqa: S112  (some frameworks raise when unfitted)
            continue
        if callable(names):
            names = names()
        if names is not None and len(names):
            return [str(name) for name in names]
    return None


def _read_features_file(path: Path) -> list[dict]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValidationError(
            {"features": f"Cannot read {path.name} as JSON ({error})."}
        ) from error
    if isinstance(document, dict):
        document = document.get("features")
    if not isinstance(document, list) or not document:
        raise ValidationError(
            {"features": 'Expected a list of features (or {"features": [...]}).'}
        )
    return [_clean_feature(entry, index) for index, entry in enumerate(document)]


def _clean_feature(entry: object, index: int) -> dict:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise ValidationError(
            {"features": f"Feature {index}: an object with a string name."}
        )
    unknown = set(entry) - _FEATURE_KEYS
    if unknown:
        raise ValidationError(
            {"features": f"Feature {entry['name']}: unknown keys {sorted(unknown)}."}
        )
    value_labels = entry.get("value_labels") or {}
    if not isinstance(value_labels, dict):
        raise ValidationError(
            {"features": f"Feature {entry['name']}: value_labels must be an object."}
        )
    return {
        "name": entry["name"],
        "label": str(entry.get("label") or entry["name"]),
        "description": str(entry.get("description") or ""),
        "unit": str(entry.get("unit") or ""),
        "value_labels": {str(key): str(text) for key, text in value_labels.items()},
        "sensitive": bool(entry.get("sensitive", False)),
    }


def _feature_schema(estimator, features_path: Path | None) -> list[dict]:
    names = _estimator_feature_names(estimator)
    if features_path is None:
        if not names:
            raise ValidationError(
                {
                    "features": "The estimator does not expose its feature names; "
                    "give a FEATURES.json."
                }
            )
        return [
            _clean_feature({"name": name}, index) for index, name in enumerate(names)
        ]
    schema = _read_features_file(features_path)
    declared = [feature["name"] for feature in schema]
    if len(set(declared)) != len(declared):
        raise ValidationError({"features": "A feature name appears twice."})
    if names is not None and names != declared:
        missing = [name for name in names if name not in declared]
        extra = [name for name in declared if name not in names]
        detail = []
        if missing:
            detail.append(f"missing from FEATURES.json: {', '.join(missing)}")
        if extra:
            detail.append(f"not known to the model: {', '.join(extra)}")
        if not detail:
            detail.append(f"the model's order is {', '.join(names)}")
        raise ValidationError(
            {
                "features": "The features do not match the model's feature names ("
                + "; ".join(detail)
                + ")."
            }
        )
    expected = getattr(estimator, "n_features_in_", None)
    if names is None and isinstance(expected, int) and expected != len(declared):
        raise ValidationError(
            {
                "features": f"The model takes {expected} features; FEATURES.json "
                f"lists {len(declared)}."
            }
        )
    return schema


def _is_binary_classifier(estimator) -> bool:
    from sklearn.base import is_classifier

    try:
        classifier = is_classifier(estimator)
    except Exception:
        classifier = False
    classifier = classifier or callable(getattr(estimator, "predict_proba", None))
    if not classifier:
        return False
    classes = getattr(estimator, "classes_", None)
    if classes is not None and len(classes) != 2:
        raise ValidationError(
            {
                "artifact": f"Only binary classifiers and regressors are supported "
                f"(this one has {len(classes)} classes)."
            }
        )
    return True


def _read_background(path: Path, feature_names: list[str]):
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except Exception as error:
        raise ValidationError(
            {"background": f"Cannot read {path.name} as CSV ({error})."}
        ) from error
    missing = [name for name in feature_names if name not in frame.columns]
    if missing:
        raise ValidationError(
            {
                "background": f"Columns missing from the background data: "
                f"{', '.join(missing)}."
            }
        )
    frame = frame[feature_names]
    try:
        frame = frame.astype(float)
    except (TypeError, ValueError) as error:
        raise ValidationError(
            {"background": f"The background data must be numeric ({error})."}
        ) from error
    if len(frame) == 0:
        raise ValidationError({"background": "The background data has no rows."})
    return frame


def _check_runs(estimator, schema: list[dict], output_space: str) -> None:
    """Call the model once on a row of zeros, so a broken artifact fails now."""
    import pandas as pd

    frame = pd.DataFrame(
        [[0.0] * len(schema)], columns=[feature["name"] for feature in schema]
    )
    try:
        explainers.model_output(estimator, frame, output_space=output_space)
    except Exception as error:
        raise ValidationError(
            {"artifact": f"The model cannot score a frame of its features ({error})."}
        ) from error


def register_model(
    *,
    name: str,
    version: str,
    artifact_path: str | Path,
    features_path: str | Path | None = None,
    background_path: str | Path | None = None,
    activate: bool = False,
    actor: AbstractBaseUser | None = None,
) -> ModelVersion:
    """Validate a joblib artifact and register it; nothing is kept on failure.

    A joblib file is code, so only admins (and the CLI) call this.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValidationError(
            {"name": "Lowercase letters, digits, - and _ (at most 64)."}
        )
    if not isinstance(version, str) or not _VERSION.match(version):
        raise ValidationError({"version": "Letters, digits, ., - and _ (at most 64)."})
    if ModelVersion.objects.filter(name=name, version=version).exists():
        raise ConflictError(f"{name} version {version} is already registered.")
    artifact_path = Path(artifact_path)
    estimator = _load_artifact(artifact_path)
    framework = explainers.detect_framework(estimator)
    if framework is None:
        raise ValidationError(
            {
                "artifact": f"A {explainers.class_path(estimator)} is not a "
                "scikit-learn, LightGBM or XGBoost estimator."
            }
        )
    schema = _feature_schema(estimator, Path(features_path) if features_path else None)
    is_classifier = _is_binary_classifier(estimator)
    output_space = explainers.output_space_for(estimator, is_classifier=is_classifier)
    background = None
    if background_path:
        background = _read_background(
            Path(background_path), [f["name"] for f in schema]
        )
    elif not explainers.is_tree_model(estimator):
        raise ValidationError(
            {
                "background": f"A {type(estimator).__name__} is not a tree model: "
                "give background data (a CSV of typical rows) to explain it."
            }
        )
    _check_runs(estimator, schema, output_space)

    sha = explainers.sha256_of(artifact_path)
    directory = Path(settings.MODEL_ARTIFACT_DIR) / name
    stored_artifact = directory / f"{version}-{sha[:12]}.joblib"
    stored_background = directory / f"{version}-background.csv"
    written: list[Path] = []
    try:
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(artifact_path, stored_artifact)
        written.append(stored_artifact)
        background_sha = ""
        if background is not None:
            background.to_csv(stored_background, index=False)
            written.append(stored_background)
            background_sha = explainers.sha256_of(stored_background)
        with transaction.atomic():
            if activate:
                _deactivate_versions(name=name, actor=actor)
            model_version = ModelVersion(
                name=name,
                version=version,
                artifact=str(stored_artifact.relative_to(settings.MODEL_ARTIFACT_DIR)),
                artifact_sha256=sha,
                framework=framework,
                estimator_class=explainers.class_path(estimator),
                is_classifier=is_classifier,
                output_space=output_space,
                features=schema,
                background=(
                    str(stored_background.relative_to(settings.MODEL_ARTIFACT_DIR))
                    if background is not None
                    else ""
                ),
                background_sha256=background_sha,
                registered_by=actor,
                is_active=activate,
            )
            # One audited change: registered (and active at once when asked).
            model_version._history_user = actor
            model_version._change_reason = (
                f"Registered {framework} artifact {sha[:12]}"
                + (", active" if activate else "")
            )
            model_version.save()
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        if directory.exists() and not any(directory.iterdir()):
            directory.rmdir()
        raise
    return model_version


def _deactivate_versions(*, name: str, actor, exclude_pk=None) -> None:
    """Deactivate the active version of `name`, one audited save each."""
    for other in (
        ModelVersion.objects.select_for_update()
        .filter(name=name, is_active=True)
        .exclude(pk=exclude_pk)
    ):
        other.is_active = False
        other._history_user = actor
        other._change_reason = "Replaced by another active version"
        other.save(update_fields=["is_active"])


@transaction.atomic
def activate_model_version(*, model_version_id: int, actor=None) -> ModelVersion:
    """Make this the one active version of its model name (each change audited)."""
    model_version = ModelVersion.objects.select_for_update().get(pk=model_version_id)
    _deactivate_versions(
        name=model_version.name, actor=actor, exclude_pk=model_version.pk
    )
    if not model_version.is_active:
        model_version.is_active = True
        model_version._history_user = actor
        model_version._change_reason = "Activated"
        model_version.save(update_fields=["is_active"])
    return model_version


# Prediction log --------------------------------------------------------------------


@dataclass
class LoggedPrediction:
    prediction_id: str
    created: bool


@dataclass
class _ParsedPrediction:
    prediction_id: str
    model_key: tuple[str, str]
    customer_hash: str
    features: dict
    output: float
    created_at: datetime | None
    digest: str


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _parse_prediction(record: object, models: dict) -> _ParsedPrediction:
    """Check one record against its model's feature schema; errors name the field."""
    if not isinstance(record, dict):
        raise ValidationError("Each prediction must be a JSON object.")
    errors: dict[str, str] = {}
    unknown = set(record) - {
        "prediction_id",
        "model",
        "model_version",
        "customer_id",
        "features",
        "output",
        "created_at",
    }
    if unknown:
        errors["non_field_errors"] = f"Unknown fields: {', '.join(sorted(unknown))}."
    prediction_id = record.get("prediction_id")
    if (
        not isinstance(prediction_id, str)
        or not 1 <= len(prediction_id) <= PREDICTION_ID_MAX_LENGTH
        or not _IDENTIFIER.match(prediction_id)
    ):
        errors["prediction_id"] = (
            f"1-{PREDICTION_ID_MAX_LENGTH} characters without whitespace or "
            "control characters."
        )
    name, version = record.get("model"), record.get("model_version")
    if isinstance(version, int) and not isinstance(version, bool):
        version = str(version)
    model_version = None
    if not isinstance(name, str) or not isinstance(version, str):
        errors["model"] = "model and model_version are required strings."
    elif (model_version := models.get((name, version))) is None:
        errors["model"] = f"Unknown model {name!r} version {version!r}."
    customer_hash = ""
    if record.get("customer_id") is not None:
        try:
            customer_hash = hash_customer_id(record["customer_id"])
        except ValidationError as error:
            errors["customer_id"] = " ".join(error.messages)
    output = record.get("output")
    if not _is_number(output):
        errors["output"] = "A finite number."
    created_at = None
    raw_created_at = record.get("created_at")
    if raw_created_at is not None:
        try:
            created_at = (
                parse_datetime(raw_created_at)
                if isinstance(raw_created_at, str)
                else None
            )
        except ValueError:
            created_at = None
        if created_at is None:
            errors["created_at"] = "An ISO 8601 date and time, e.g. 2026-11-23T17:00Z."
        elif timezone.is_naive(created_at):
            created_at = created_at.replace(tzinfo=UTC)
    features = record.get("features")
    if not isinstance(features, dict):
        errors["features"] = "An object of feature name to number (or null)."
    elif model_version is not None:
        problems = _feature_problems(features, model_version.feature_names)
        if problems:
            errors["features"] = " ".join(problems)
    if errors:
        raise ValidationError(errors)
    canonical = {
        "model": name,
        "model_version": version,
        "customer_hash": customer_hash,
        "features": features,
        "output": float(output),
        "created_at": created_at.isoformat() if created_at else None,
    }
    digest = hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS))
    return _ParsedPrediction(
        prediction_id=prediction_id,
        model_key=(name, version),
        customer_hash=customer_hash,
        features=features,
        output=float(output),
        created_at=created_at,
        digest=digest.hexdigest(),
    )


def _feature_problems(features: dict, names: list[str]) -> list[str]:
    problems = []
    missing = [name for name in names if name not in features]
    unknown = [name for name in features if name not in names]
    if missing:
        problems.append(f"Missing features: {', '.join(missing)}.")
    if unknown:
        problems.append(f"Unknown features: {', '.join(sorted(unknown))}.")
    not_numbers = [
        name
        for name in names
        if name in features
        and features[name] is not None
        and not _is_number(features[name])
    ]
    if not_numbers:
        problems.append(f"Not a number (or null): {', '.join(not_numbers)}.")
    return problems


def _models_for(records: list) -> dict[tuple[str, str], ModelVersion]:
    keys = {
        (record.get("model"), str(record.get("model_version")))
        for record in records
        if isinstance(record, dict) and isinstance(record.get("model"), str)
    }
    # A name with a NUL is never registered (and PostgreSQL refuses it in a query).
    names = {name for name, _version in keys if "\x00" not in name}
    return {
        (model_version.name, model_version.version): model_version
        for model_version in ModelVersion.objects.filter(name__in=names)
        if (model_version.name, model_version.version) in keys
    }


@transaction.atomic
def log_predictions(*, records: list) -> list[LoggedPrediction]:
    """Log predictions all-or-nothing; a repeat of the same body is not a new row.

    One query finds the models, one the ids already logged, one bulk insert writes
    the new ones. Same id with another body is a ConflictError.
    """
    if not isinstance(records, list) or not 1 <= len(records) <= PREDICTION_BATCH_MAX:
        raise ValidationError(
            f"Send one prediction or a list of 1 to {PREDICTION_BATCH_MAX}."
        )
    models = _models_for(records)
    parsed: list[_ParsedPrediction] = []
    errors: dict[str, list[str]] = {}
    single = len(records) == 1
    for index, record in enumerate(records):
        try:
            parsed.append(_parse_prediction(record, models))
        except ValidationError as error:
            for field, messages in _messages(error).items():
                errors[field if single else f"{index}.{field}"] = messages
    if errors:
        raise ValidationError(errors)

    existing = dict(
        Prediction.objects.filter(
            prediction_id__in={item.prediction_id for item in parsed}
        ).values_list("prediction_id", "request_digest")
    )
    results, new_rows, seen = [], [], {}
    now = timezone.now()
    for item in parsed:
        known = existing.get(item.prediction_id, seen.get(item.prediction_id))
        if known is not None:
            if known != item.digest:
                raise ConflictError(
                    f"Prediction {item.prediction_id} was already logged with "
                    "a different body.",
                    fields={"prediction_id": [item.prediction_id]},
                )
            results.append(LoggedPrediction(item.prediction_id, created=False))
            continue
        seen[item.prediction_id] = item.digest
        new_rows.append(
            Prediction(
                prediction_id=item.prediction_id,
                model_version=models[item.model_key],
                customer_hash=item.customer_hash,
                features=item.features,
                output=item.output,
                created_at=item.created_at or now,
                logged_at=now,
                request_digest=item.digest,
            )
        )
        results.append(LoggedPrediction(item.prediction_id, created=True))
    Prediction.objects.bulk_create(new_rows)
    if new_rows and settings.EXPLANATION_PRECOMPUTE:
        from .tasks import explain_predictions

        new_ids = [row.prediction_id for row in new_rows]
        transaction.on_commit(lambda: explain_predictions.delay(new_ids))
    return results


def _messages(error: ValidationError) -> dict[str, list[str]]:
    if hasattr(error, "error_dict"):
        return {
            field: [message for item in items for message in item.messages]
            for field, items in error.error_dict.items()
        }
    return {"non_field_errors": list(error.messages)}


@transaction.atomic
def delete_expired_predictions(*, now: datetime | None = None) -> int:
    """Delete predictions (with their explanations and views) past retention."""
    cutoff = (now or timezone.now()) - timedelta(
        days=settings.PREDICTION_RETENTION_DAYS
    )
    expired = Prediction.objects.filter(created_at__lt=cutoff)
    count = expired.count()
    expired.delete()
    return count


# Explanations ----------------------------------------------------------------------


def explain_prediction(*, prediction_id: str) -> Explanation:
    """The prediction's explanation: computed on first request, then reused.

    One query reads the prediction and its stored explanation, if any; the model
    version comes from the process's copy. SHAP runs outside any transaction; when
    two requests race, the first row written wins and the other is discarded.
    """
    prediction = Prediction.objects.select_related("explanation").get(
        prediction_id=prediction_id
    )
    model_version = selectors.model_version_by_id(prediction.model_version_id)
    prediction.model_version = model_version
    try:
        explanation = prediction.explanation
    except Explanation.DoesNotExist:
        pass
    else:
        explanation.model_version = selectors.model_version_by_id(
            explanation.model_version_id
        )
        return explanation
    attribution = explainers.explainer_for(model_version).explain(prediction.features)
    contributions = [
        {
            "feature": feature["name"],
            "label": feature["label"],
            "value": prediction.features.get(feature["name"]),
            "shap": value,
        }
        for feature, value in zip(
            model_version.features, attribution.values, strict=True
        )
    ]
    contributions.sort(key=lambda contribution: -abs(contribution["shap"]))
    explanation = Explanation(
        prediction=prediction,
        model_version=model_version,
        base_value=attribution.base_value,
        output=attribution.output,
        output_space=model_version.output_space,
        contributions=contributions,
    )
    if not _insert_first(explanation):
        explanation = Explanation.objects.select_related(
            "prediction", "model_version"
        ).get(prediction=prediction)
    return explanation


def _insert_first(explanation: Explanation) -> bool:
    """INSERT the explanation; False when another request stored one first.

    Outside a transaction the INSERT commits on its own (one round trip); inside
    one, a savepoint keeps a lost race from breaking the caller's transaction.
    """
    in_transaction = transaction.get_connection().in_atomic_block
    try:
        with transaction.atomic() if in_transaction else nullcontext():
            explanation.save(force_insert=True)
    except IntegrityError:
        return False
    return True


def record_prediction_view(
    *, prediction: Prediction, user: AbstractBaseUser
) -> PredictionView:
    """Keep who looked at a prediction's explanation (privacy access log)."""
    return PredictionView.objects.create(prediction=prediction, user=user)
