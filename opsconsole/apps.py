from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate


def _sync_roles(sender, using="default", **kwargs) -> None:
    """After every migrate (or test flush) the role groups match ROLE_PERMISSIONS,
    so a permission added by a later app reaches admin and the roles at once."""
    from django.contrib.auth.management import create_permissions
    from django.contrib.auth.models import Group, Permission

    from opsconsole.auth import sync_roles

    for app_config in apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=using)
    sync_roles(Group, Permission)


class OpsConsoleConfig(AppConfig):
    """The project app: roles, authentication, health and shared helpers."""

    name = "opsconsole"
    verbose_name = "OpsConsole"

    def ready(self) -> None:
        from opsconsole import schema  # noqa: F401  (registers schema extensions)

        post_migrate.connect(_sync_roles, sender=self)
