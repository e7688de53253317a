"""Roles and how people and machines authenticate.

Roles are Django groups (created by a data migration) whose model permissions are
the single source of truth: views and the API ask for a permission, never a role.
"""

import logging
import threading
import time

from django.conf import settings
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.contrib.auth.models import Group, Permission
from django.core.cache import caches
from django.utils import timezone
from django_redis.cache import RedisCache
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.throttling import BaseThrottle

SUPPORT_AGENT = "support_agent"
ACCOUNT_MANAGER = "account_manager"
PRIVACY_OFFICER = "privacy_officer"
ADMIN = "admin"
ROLES = (SUPPORT_AGENT, ACCOUNT_MANAGER, PRIVACY_OFFICER, ADMIN)

logger = logging.getLogger(__name__)

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
        "explanations.view_prediction",
        "explanations.view_explanation",
        # Privacy intake: file opt-outs and deletion requests, see no one else's.
        "overrides.add_optout",
        "privacy.add_deletionrequest",
    ],
    ACCOUNT_MANAGER: [
        *_READ_CONFIGURATION,
        "overrides.view_boost",
        "overrides.add_boost",
        "overrides.change_boost",
        "overrides.view_block",
    ],
    PRIVACY_OFFICER: [
        "overrides.view_optout",
        "overrides.add_optout",
        "overrides.change_optout",
        "privacy.view_deletionrequest",
        "privacy.add_deletionrequest",
        "privacy.change_deletionrequest",
        "privacy.view_evidenceevent",
        "privacy.view_downstream",
        "privacy.add_downstream",
        "privacy.change_downstream",
    ],
}


def sync_roles(group_model, permission_model) -> None:
    """Make the role groups hold exactly ROLE_PERMISSIONS (admin: every permission).

    Takes the models as arguments so the data migration can pass its historical ones.
    A permission of an app not migrated yet is skipped: the post_migrate sync that
    follows every migrate grants it.
    """
    for role, permissions in ROLE_PERMISSIONS.items():
        group, _ = group_model.objects.get_or_create(name=role)
        wanted = []
        for permission in permissions:
            app_label, codename = permission.split(".")
            wanted.extend(
                permission_model.objects.filter(
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


# API keys --------------------------------------------------------------------------

# Lookups are cached in-process for a few seconds so the serving path does not hit the
# database on every request; a revocation is seen at once here, within this TTL
# elsewhere.
API_KEY_CACHE_SECONDS = 5.0
LAST_USED_RESOLUTION_SECONDS = 60.0
_key_cache: dict[str, tuple[float, object]] = {}
_key_cache_lock = threading.Lock()


def forget_api_key(key_hash: str) -> None:
    with _key_cache_lock:
        _key_cache.pop(key_hash, None)


def _lookup_api_key(key_hash: str):
    from opsconsole.models import ApiKey

    now = time.monotonic()
    cached = _key_cache.get(key_hash)
    if cached is not None and cached[0] > now:
        return cached[1]
    key = (
        ApiKey.objects.select_related("user")
        .filter(key_hash=key_hash, revoked_at__isnull=True)
        .first()
    )
    with _key_cache_lock:
        _key_cache[key_hash] = (now + API_KEY_CACHE_SECONDS, key)
    return key


def _touch_last_used(key) -> None:
    """Record use at most once a minute per key, so reads stay reads."""
    now = timezone.now()
    last = key.last_used_at
    if last is None or (now - last).total_seconds() > LAST_USED_RESOLUTION_SECONDS:
        key.last_used_at = now
        type(key).objects.filter(pk=key.pk).update(last_used_at=now)


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer <key>`; a key in the query string is refused."""

    keyword = "Bearer"

    def authenticate(self, request):
        from opsconsole.services import KEY_PREFIX, hash_api_key

        # Every key starts with the prefix, so a key under any parameter name is
        # caught; a parameter merely called "token" is not a credential.
        for value in request.query_params.values():
            if value.startswith(KEY_PREFIX):
                raise exceptions.AuthenticationFailed(
                    "API keys are not accepted in the query string (it ends up in "
                    "logs); send `Authorization: Bearer <key>`."
                )
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        keyword, _, raw_key = header.partition(" ")
        if keyword != self.keyword:
            return None
        raw_key = raw_key.strip()
        key = _lookup_api_key(hash_api_key(raw_key)) if raw_key else None
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        _touch_last_used(key)
        return key.user, key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="opsconsole"'


_throttle_warned_at = 0.0
# What an unreachable or restarting cache raises; anything else is a bug and is
# not hidden by the rate limiter.
CACHE_UNAVAILABLE_ERRORS = (
    ConnectionInterrupted,
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
)


def _warn_throttle_unavailable() -> None:
    """Log once a minute, not once per request, while the cache is unreachable."""
    global _throttle_warned_at
    now = time.monotonic()
    if now - _throttle_warned_at > 60:
        _throttle_warned_at = now
        logger.warning(
            "API key rate limits are not enforced: the cache is unreachable",
            exc_info=True,
        )


class RedisQuestion:
    """A Redis command a view needs answered, sent in the rate limiter's round trip
    instead of one of its own (`rank` asks its opt-out question this way).

    `reply` is the command's answer once sent; it stays `NOT_ASKED` when nothing
    was sent (no Redis, or no rate limit counted) and is None when Redis failed.
    """

    NOT_ASKED = object()

    def __init__(self, *command):
        self.command = command
        self.reply = self.NOT_ASKED


def _count_request(counter: str, window_seconds: int, questions=()) -> int:
    """Add one to a window's counter and return it.

    On Redis: INCR and EXPIRE NX (the first request of a window starts its timer)
    and the questions' commands go in one pipeline, one round trip. On another
    cache (local memory, no Redis): the cache API.
    """
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        pipeline = backend.client.get_client(write=True).pipeline(transaction=False)
        key = backend.make_key(counter)
        pipeline.incr(key)
        pipeline.expire(key, window_seconds + 5, nx=True)
        for question in questions:
            pipeline.execute_command(*question.command)
        count, _expire, *replies = pipeline.execute()
        for question, reply in zip(questions, replies, strict=True):
            question.reply = reply
        return count
    try:
        return backend.incr(counter)
    except ValueError:  # the window's first request
        if backend.add(counter, 1, timeout=window_seconds + 5):
            return 1
        return backend.incr(counter)


class ApiKeyRateThrottle(BaseThrottle):
    """Requests per minute per API key (a fixed window counted in the cache).

    People signed in to the UI are not throttled here; login throttling is separate.
    A view may list `RedisQuestion`s in `redis_questions`: they are sent with the
    count (one round trip where there would be two).
    """

    window_seconds = 60

    def allow_request(self, request, view) -> bool:
        from opsconsole.models import ApiKey

        key = request.auth
        if not isinstance(key, ApiKey):
            return True
        limit = key.rate_limit_per_minute or settings.API_KEY_RATE_LIMIT_PER_MINUTE
        now = time.time()
        window = int(now // self.window_seconds)
        counter = f"ratelimit:{key.pk}:{window}"
        self._retry_after = (window + 1) * self.window_seconds - now
        questions = getattr(view, "redis_questions", ())
        try:
            count = _count_request(counter, self.window_seconds, questions)
        except CACHE_UNAVAILABLE_ERRORS:
            # The cache (Redis) is down or restarting: serving must keep answering,
            # so the limit is not enforced until it is back.
            _warn_throttle_unavailable()
            for question in questions:
                question.reply = None
            return True
        return count <= limit

    def wait(self) -> float:
        return max(1.0, self._retry_after)
