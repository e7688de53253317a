from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_configuration(sender, using="default", **kwargs) -> None:
    """After every migrate or flush: the version row exists, defaults if empty."""
    from .defaults import seed_configuration
    from .models import OverrideVersion, Region, Surface

    seed_configuration(Surface, Region, OverrideVersion)


class OverridesConfig(AppConfig):
    """Blocklist, boosts, their configuration, the version counter and change feed."""

    name = "overrides"
    verbose_name = "Overrides"

    def ready(self) -> None:
        post_migrate.connect(_ensure_configuration, sender=self)
