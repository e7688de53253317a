"""Every read of predictions and explanations, and the plain-language reasons."""

import io
import math
import threading

from django.db.models import QuerySet

from .models import Explanation, ModelVersion, OutputSpace, Prediction, PredictionView

CUSTOMER_PREDICTIONS_LIMIT = 100
# pyplot keeps global state; one figure at a time per process.
_pyplot_lock = threading.Lock()


def model_version_list() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.select_related("registered_by")


# Registered model versions never change (a new version is a new row; only
# `is_active` moves), so each process keeps the rows it has read: explaining a
# prediction then needs no join to a row of several KB of feature schema.
_model_versions: dict[int, ModelVersion] = {}


def model_version_by_id(pk: int) -> ModelVersion:
    """The registered model version, read once per process. Its `is_active` may be
    stale: ask the database (model_version_list) for that."""
    model_version = _model_versions.get(pk)
    if model_version is None:
        model_version = ModelVersion.objects.get(pk=pk)
        _model_versions[pk] = model_version
    return model_version


def forget_model_versions() -> None:
    _model_versions.clear()


def prediction_by_id(prediction_id: str) -> Prediction:
    """Raises Prediction.DoesNotExist for an unknown id."""
    return Prediction.objects.select_related("model_version").get(
        prediction_id=prediction_id
    )


def _number_text(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _value_text(value, feature: dict) -> str:
    if value is None:
        return "missing"
    value_labels = feature.get("value_labels") or {}
    text = _number_text(value)
    if text in value_labels:
        return value_labels[text]
    unit = feature.get("unit") or ""
    return f"{text} {unit}" if unit else text


def plain_reasons(
    explanation: Explanation, *, limit: int = 5, customer_safe: bool = False
) -> list[str]:
    """The top reasons in words, e.g. "Tenure of 2 months lowered the score by 0.41".

    `customer_safe` leaves out features flagged sensitive and shows only labels
    (no feature codes, no values), for text a customer may read.
    """
    schema = {
        feature["name"]: feature for feature in explanation.model_version.features
    }
    reasons = []
    for contribution in explanation.contributions:
        feature = schema.get(contribution["feature"], {})
        if customer_safe and feature.get("sensitive"):
            continue
        shap_value = contribution["shap"]
        size = f"{abs(shap_value):.2f}"
        if size == "0.00":
            direction = "did not change the score"
        elif shap_value > 0:
            direction = f"raised the score by {size}"
        else:
            direction = f"lowered the score by {size}"
        label = (
            feature.get("label") or contribution.get("label") or contribution["feature"]
        )
        if customer_safe:
            reasons.append(f"{label} {direction}")
        elif (feature.get("value_labels") or {}).get(
            _number_text(contribution["value"])
            if contribution["value"] is not None
            else ""
        ):
            reasons.append(
                f"{label}: {_value_text(contribution['value'], feature)} {direction}"
            )
        else:
            reasons.append(
                f"{label} of {_value_text(contribution['value'], feature)} {direction}"
            )
        if len(reasons) >= limit:
            break
    return reasons


def explanation_document(explanation: Explanation) -> dict:
    """The contract's explanation answer as plain data, rendered without a
    serializer (ExplanationSerializer describes it in /api/schema/)."""
    model_version = explanation.model_version
    return {
        "prediction_id": explanation.prediction.prediction_id,
        "model": {"name": model_version.name, "version": model_version.version},
        "output_space": explanation.output_space,
        "base_value": explanation.base_value,
        "output": explanation.output,
        "contributions": [
            {
                "feature": contribution["feature"],
                "label": contribution["label"],
                "value": (
                    None
                    if contribution["value"] is None
                    else float(contribution["value"])
                ),
                "shap": contribution["shap"],
            }
            for contribution in explanation.contributions
        ],
    }


def customer_predictions_by_model(
    customer_hash: str, *, limit: int = CUSTOMER_PREDICTIONS_LIMIT
) -> list[tuple[str, list[Prediction]]]:
    """A customer's most recent predictions, newest first, grouped per model name.

    Groups are ordered by their newest prediction. Takes the keyed hash: callers
    hash the raw id with opsconsole.customer_ids first.
    """
    predictions = Prediction.objects.select_related("model_version").filter(
        customer_hash=customer_hash
    )[:limit]
    groups: dict[str, list[Prediction]] = {}
    for prediction in predictions:
        groups.setdefault(prediction.model_version.name, []).append(prediction)
    return list(groups.items())


def prediction_view_list() -> QuerySet[PredictionView]:
    """The explanation access log, newest first."""
    return PredictionView.objects.select_related(
        "user", "prediction", "prediction__model_version"
    )


def probability(explanation: Explanation) -> float | None:
    """The classifier's probability (sigmoid of the log odds); None otherwise."""
    if explanation.output_space == OutputSpace.LOG_ODDS:
        return 1.0 / (1.0 + math.exp(-explanation.output))
    if explanation.output_space == OutputSpace.PROBABILITY:
        return explanation.output
    return None


def feature_rows(explanation: Explanation) -> list[dict]:
    """Every feature in the model's order: label, value text, unit and contribution."""
    by_name = {
        contribution["feature"]: contribution
        for contribution in explanation.contributions
    }
    rows = []
    for feature in explanation.model_version.features:
        contribution = by_name.get(feature["name"], {})
        value = contribution.get("value")
        rows.append(
            {
                "name": feature["name"],
                "label": feature.get("label") or feature["name"],
                "description": feature.get("description") or "",
                "value": _value_text(value, feature),
                "sensitive": bool(feature.get("sensitive")),
                "shap": contribution.get("shap", 0.0),
            }
        )
    return rows


def force_plot_data(explanation: Explanation) -> dict:
    """The props of shap's AdditiveForceVisualizer (as shap.plots.force builds them).

    Features with no effect are left out, as shap does; names are the labels.
    """
    rows = feature_rows(explanation)
    return {
        "outNames": ["f(x)"],
        "baseValue": explanation.base_value,
        "outValue": explanation.output,
        "link": (
            "logit" if explanation.output_space == OutputSpace.LOG_ODDS else "identity"
        ),
        "featureNames": [row["label"] for row in rows],
        "features": {
            index: {"effect": row["shap"], "value": row["value"]}
            for index, row in enumerate(rows)
            if row["shap"] != 0
        },
        "plot_cmap": "RdBu",
        "labelMargin": 20,
    }


def force_plot_png(explanation: Explanation) -> bytes:
    """The same force plot drawn by shap with matplotlib, as PNG bytes; its axis is
    the explanation's output space (log odds for a classifier)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot
    import numpy as np
    import shap

    rows = feature_rows(explanation)
    with _pyplot_lock:
        # Drawn in the space the SHAP values add up in: shap's matplotlib plot with a
        # logit axis comes out blank when its range reaches below probability 0.
        figure = shap.plots.force(
            explanation.base_value,
            np.array([row["shap"] for row in rows], dtype=float),
            np.array([row["value"] for row in rows], dtype=object),
            feature_names=[row["label"] for row in rows],
            link="identity",
            matplotlib=True,
            show=False,
            figsize=(16, 4),
            text_rotation=25,  # long labels would overlap side by side
        )
        try:
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", bbox_inches="tight", dpi=100)
        finally:
            pyplot.close(figure)
    return buffer.getvalue()
