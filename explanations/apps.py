from django.apps import AppConfig


class ExplanationsConfig(AppConfig):
    """Model registry, prediction log and SHAP explanations (built in a later issue)."""

    name = "explanations"
    verbose_name = "Explanations"
