"""Every read of predictions and explanations, and the plain-language reasons."""

from django.db.models import QuerySet

from .models import Explanation, ModelVersion, Prediction


def model_version_list() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.select_related("registered_by")


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
