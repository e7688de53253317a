"""Writes for project-wide records: API keys."""

import hashlib
import secrets

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from opsconsole.errors import ConflictError
from opsconsole.models import ApiKey, ApiKeyScope

KEY_PREFIX = "opc_"


def hash_api_key(raw_key: str) -> str:
    """Keys are long random strings, so a plain SHA-256 is enough to store them."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


@transaction.atomic
def api_key_create(
    *,
    name: str,
    scopes: list[str],
    actor=None,
    rate_limit_per_minute: int | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns it with the raw key, which is not stored or shown again."""
    errors = {}
    unknown = sorted(set(scopes) - set(ApiKeyScope.values))
    if not scopes:
        errors["scopes"] = f"Give at least one scope: {', '.join(ApiKeyScope.values)}."
    elif unknown:
        errors["scopes"] = (
            f"Unknown scope(s): {', '.join(unknown)}. "
            f"Known: {', '.join(ApiKeyScope.values)}."
        )
    raw_key = KEY_PREFIX + secrets.token_urlsafe(32)
    username = f"apikey:{name}"
    key = ApiKey(
        name=name,
        prefix=raw_key[:12],
        key_hash=hash_api_key(raw_key),
        scopes=sorted(set(scopes)),
        created_by=actor,
        rate_limit_per_minute=rate_limit_per_minute,
    )
    try:
        key.full_clean(exclude=["user", "key_hash", "prefix", "scopes"])
    except ValidationError as error:
        errors.update(error.message_dict)
    if errors:
        raise ValidationError(errors)
    if get_user_model().objects.filter(username=username).exists():
        raise ConflictError(
            f"An API key named {name!r} exists already (revoked keys too)."
        )
    # The key's service account is an account like any other: audited (one record).
    user = get_user_model()(username=username, is_active=True)
    user.set_unusable_password()
    user._history_user = actor
    user._change_reason = f"Service account of API key {name}"
    user.save()
    key.user = user
    key._history_user = actor
    key._change_reason = f"Created with scopes {', '.join(key.scopes)}"
    key.save()
    return key, raw_key


@transaction.atomic
def api_key_revoke(*, key_id: int, actor) -> ApiKey:
    """Revoke a key: it stops authenticating at once in this process, within seconds
    in the others (their lookup cache expires)."""
    key = ApiKey.objects.select_for_update().get(pk=key_id)
    if key.revoked_at is not None:
        raise ConflictError(
            f"API key {key.name!r} is already revoked.", existing_id=key.pk
        )
    key.revoked_at = timezone.now()
    key.revoked_by = actor
    key._history_user = actor
    key._change_reason = "Revoked"
    key.save(update_fields=["revoked_at", "revoked_by"])
    from opsconsole.auth import forget_api_key

    transaction.on_commit(lambda: forget_api_key(key.key_hash))
    return key
