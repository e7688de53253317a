"""Roles and how people and machines authenticate.

Roles are Django groups (created by a data migration) whose model permissions are
the single source of truth: views and the API ask for a permission, never a role.
"""

from django.contrib.auth.mixins import PermissionRequiredMixin
from django.contrib.auth.models import Group, Permission
from rest_framework.authentication import SessionAuthentication

SUPPORT_AGENT = "support_agent"
ACCOUNT_MANAGER = "account_manager"
PRIVACY_OFFICER = "privacy_officer"
ADMIN = "admin"
ROLES = (SUPPORT_AGENT, ACCOUNT_MANAGER, PRIVACY_OFFICER, ADMIN)


def roles_with_permission(permission: str) -> list[str]:
    """Role names that grant `app_label.codename`, for "you need role X" messages."""
    app_label, _, codename = permission.partition(".")
    return sorted(
        Group.objects.filter(
            permissions__content_type__app_label=app_label,
            permissions__codename=codename,
        ).values_list("name", flat=True)
    )


def role_names(user) -> list[str]:
    if not getattr(user, "is_authenticated", False):
        return []
    return sorted(group.name for group in user.groups.all())


def missing_permission_message(user, permissions: list[str] | tuple[str, ...]) -> str:
    """Explain a refusal: which role would allow it and which roles the user has."""
    missing = [perm for perm in permissions if not user.has_perm(perm)] or list(
        permissions
    )
    roles = sorted({role for perm in missing for role in roles_with_permission(perm)})
    needed = " or ".join(roles) if roles else "a role that no one has yet"
    current = ", ".join(role_names(user)) or "no role"
    return f"This needs the {needed} role. You are signed in with: {current}."


def permission_exists(permission: str) -> bool:
    app_label, _, codename = permission.partition(".")
    return Permission.objects.filter(
        content_type__app_label=app_label, codename=codename
    ).exists()


class ConsoleSessionAuthentication(SessionAuthentication):
    """The web UI's session (CSRF-checked); answers 401, not 403, when absent."""

    def authenticate_header(self, request) -> str:
        return 'Session realm="opsconsole"'


class RoleRequiredMixin(PermissionRequiredMixin):
    """PermissionRequiredMixin whose 403 says which role would allow the page.

    Anonymous visitors are sent to the login page instead.
    """

    def get_permission_denied_message(self) -> str:
        return missing_permission_message(
            self.request.user, self.get_permission_required()
        )
