"""Template context every page needs: the navigation the user may see, and roles."""

from django.conf import settings
from django.urls import reverse

from opsconsole.auth import role_names

# (url name, label, permission): None for everyone, a tuple for any one of them.
NAVIGATION = [
    ("dashboard", "Dashboard", None),
    ("overrides:block_list", "Blocklist", "overrides.view_block"),
    ("overrides:boost_list", "Boosts", "overrides.view_boost"),
    ("overrides:item_search", "Items", "overrides.view_catalogitem"),
    (
        "overrides:serving_status",
        "Serving",
        ("overrides.view_block", "overrides.view_boost"),
    ),
    ("overrides:audit", "Audit", "overrides.view_audit_trail"),
    ("explanations:lookup", "Explanations", "explanations.view_explanation"),
    (
        "privacy:home",
        "Privacy",
        ("privacy.view_deletionrequest", "privacy.add_deletionrequest"),
    ),
    ("apikey_list", "API keys", "opsconsole.view_apikey"),
]


def console(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"navigation": [], "user_roles": [], "time_zone": settings.TIME_ZONE}
    return {
        "navigation": [
            _nav_entry(request.path, url_name, label)
            for url_name, label, permission in NAVIGATION
            if _may_see(user, permission)
        ],
        "user_roles": role_names(user),
        "time_zone": settings.TIME_ZONE,
    }


def _may_see(user, permission: str | tuple[str, ...] | None) -> bool:
    if permission is None:
        return True
    if isinstance(permission, str):
        return user.has_perm(permission)
    return any(user.has_perm(alternative) for alternative in permission)


def _nav_entry(path: str, url_name: str, label: str) -> dict:
    url = reverse(url_name)
    active = path == url if url == "/" else path.startswith(url)
    return {"url": url, "label": label, "active": active}
