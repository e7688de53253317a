from django.apps import AppConfig


class OverridesConfig(AppConfig):
    """Blocklist, boosts, their configuration, the version counter and change feed."""

    name = "overrides"
    verbose_name = "Overrides"
