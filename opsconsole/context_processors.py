"""Template context every page needs: the navigation the user may see, and roles."""

from django.conf import settings

from opsconsole.auth import role_names

NAVIGATION = [
    ("dashboard", "Dashboard", None),
    ("overrides:block_list", "Blocklist", "overrides.view_block"),
    ("overrides:boost_list", "Boosts", "overrides.view_boost"),
    ("overrides:audit", "Audit", "overrides.view_audit_trail"),
]


def console(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"navigation": [], "user_roles": [], "time_zone": settings.TIME_ZONE}
    return {
        "navigation": [
            (url_name, label)
            for url_name, label, permission in NAVIGATION
            if permission is None or user.has_perm(permission)
        ],
        "user_roles": role_names(user),
        "time_zone": settings.TIME_ZONE,
    }
