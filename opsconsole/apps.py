from django.apps import AppConfig
from django.db.models.signals import post_migrate


def grant_admin_every_permission(sender, using="default", **kwargs) -> None:
    """The admin role holds every permission, including those of apps added later."""
    from django.contrib.auth.models import Group, Permission

    admin = Group.objects.using(using).filter(name="admin").first()
    if admin is not None:
        admin.permissions.set(Permission.objects.using(using).all())


class OpsConsoleConfig(AppConfig):
    """The project app: roles, authentication, health and shared helpers."""

    name = "opsconsole"
    verbose_name = "OpsConsole"

    def ready(self) -> None:
        post_migrate.connect(grant_admin_every_permission, sender=self)
