from django.apps import AppConfig


class PrivacyConfig(AppConfig):
    """Opt-out intake, deletion requests, downstream webhooks and their evidence."""

    name = "privacy"
    verbose_name = "Privacy"
