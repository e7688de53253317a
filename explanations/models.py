"""Model registry, prediction log, SHAP explanations and who looked at them.

Raw customer ids are never stored: a prediction keeps only the keyed hash. Model
artifacts live under MODEL_ARTIFACT_DIR; a row records where and the file's SHA-256,
so a swapped file is refused when it is loaded.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

PREDICTION_ID_MAX_LENGTH = 128


class Framework(models.TextChoices):
    SCIKIT_LEARN = "scikit-learn", "scikit-learn"
    LIGHTGBM = "lightgbm", "LightGBM"
    XGBOOST = "xgboost", "XGBoost"


class OutputSpace(models.TextChoices):
    """The space SHAP values add up in (contract, Predictions and explanations)."""

    RAW = "raw", "Raw model output"
    LOG_ODDS = "log_odds", "Log odds"
    PROBABILITY = "probability", "Probability"


class ModelVersion(models.Model):
    """One registered, fitted estimator and the schema of the features it takes.

    `features` is the ordered list the model is called with: each entry has name,
    label, description, unit, value_labels ({"1": "female"}) and sensitive.
    At most one version per name is active.
    """

    name = models.SlugField(max_length=64)
    version = models.CharField(max_length=64)
    artifact = models.CharField(
        max_length=500, help_text="Path of the joblib file under MODEL_ARTIFACT_DIR."
    )
    artifact_sha256 = models.CharField(max_length=64)
    framework = models.CharField(max_length=16, choices=Framework.choices)
    estimator_class = models.CharField(max_length=200, blank=True)
    is_classifier = models.BooleanField(default=False)
    output_space = models.CharField(max_length=16, choices=OutputSpace.choices)
    features = models.JSONField(default=list)
    background = models.CharField(
        max_length=500,
        blank=True,
        help_text="CSV of background rows under MODEL_ARTIFACT_DIR (non-tree models).",
    )
    background_sha256 = models.CharField(max_length=64, blank=True)
    registered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    registered_at = models.DateTimeField(default=timezone.now)
    is_active = models.BooleanField(default=False)
    history = HistoricalRecords(history_change_reason_field=models.TextField(null=True))

    class Meta:
        ordering = ["name", "-registered_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["name", "version"], name="model_version_unique"
            ),
            models.UniqueConstraint(
                fields=["name"],
                condition=Q(is_active=True),
                name="model_one_active_version",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def feature_names(self) -> list[str]:
        return [feature["name"] for feature in self.features]


class Prediction(models.Model):
    """One logged model output, with the features it was computed from.

    `request_digest` is the SHA-256 of the logged body (customer id hashed), so a
    retried request is recognised as the same and a different one as a conflict.
    """

    prediction_id = models.CharField(max_length=PREDICTION_ID_MAX_LENGTH, unique=True)
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="predictions"
    )
    customer_hash = models.CharField(max_length=64, blank=True, db_index=True)
    features = models.JSONField()
    output = models.FloatField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    logged_at = models.DateTimeField(default=timezone.now)
    request_digest = models.CharField(max_length=64)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.prediction_id


class Explanation(models.Model):
    """SHAP values of one prediction, computed once and kept.

    `contributions` is [{feature, label, value, shap}] sorted by |shap|, largest
    first; base_value + sum(shap) == output in `output_space`.
    """

    prediction = models.OneToOneField(
        Prediction, on_delete=models.CASCADE, related_name="explanation"
    )
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="+"
    )
    base_value = models.FloatField()
    output = models.FloatField()
    output_space = models.CharField(max_length=16, choices=OutputSpace.choices)
    contributions = models.JSONField()
    computed_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Explanation of {self.prediction_id}"


class PredictionView(models.Model):
    """Who looked at which prediction's explanation, and when (access log)."""

    prediction = models.ForeignKey(
        Prediction, on_delete=models.CASCADE, related_name="views"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    viewed_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-viewed_at"]

    def __str__(self) -> str:
        return f"{self.user} viewed {self.prediction_id} at {self.viewed_at:%Y-%m-%d}"
