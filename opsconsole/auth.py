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

_READ_CONFIGURATION = [
    "overrides.view_surface",
    "overrides.view_region",
    "overrides.view_catalogitem",
]
# What each role may do (contract, Authentication); admin holds every permission.
ROLE_PERMISSIONS: dict[str, list[str]] = {
    SUPPORT_AGENT: [
        *_READ_CONFIGURATION,
        "overrides.view_block",
        "overrides.add_block",
        "overrides.change_block",
        "overrides.view_boost",
    ],
    ACCOUNT_MANAGER: [
        *_READ_CONFIGURATION,
        "overrides.view_boost",
        "overrides.add_boost",
        "overrides.change_boost",
        "overrides.view_block",
    ],
    PRIVACY_OFFICER: [],
}


def sync_roles(group_model, permission_model) -> None:
    """Make the role groups hold exactly ROLE_PERMISSIONS (admin: every permission).

    Takes the models as arguments so the data migration can pass its historical ones.
    """
    for role, permissions in ROLE_PERMISSIONS.items():
        group, _ = group_model.objects.get_or_create(name=role)
        wanted = []
        for permission in permissions:
            app_label, codename = permission.split(".")
            wanted.append(
                permission_model.objects.get(
                    content_type__app_label=app_label, codename=codename
                )
            )
        group.permissions.set(wanted)
    admin, _ = group_model.objects.get_or_create(name=ADMIN)
    admin.permissions.set(permission_model.objects.all())


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
