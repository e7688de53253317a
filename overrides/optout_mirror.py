"""A Redis copy of the active opt-outs, so serving checks 1,000 customers in one
round trip instead of 1,000 index lookups. The database stays the source of truth.

The copy fails closed: an opt-out is added to it before its transaction commits (a
rollback leaves an extra entry, which only means "not personalised" until the next
rebuild) and a withdrawal is removed after commit. It is used only while its `ready`
marker exists, which a full rebuild sets; Redis restarting (it keeps nothing on disk
here) removes the marker, and readers fall back to the database until the periodic
task rebuilds it.
"""

import logging

from django.conf import settings

from .models import OptOut, OptOutKind

logger = logging.getLogger(__name__)
BATCH = 10_000


def _redis():
    from django_redis import get_redis_connection

    return get_redis_connection("default")


def _key(name: str) -> str:
    prefix = settings.CACHES["default"].get("KEY_PREFIX", "opsconsole")
    return f"{prefix}:optouts:{name}"


def enabled() -> bool:
    return bool(settings.REDIS_URL)


def lookup(customer_hashes: list[str]) -> dict[str, set[str]] | None:
    """{kind: hashes opted out} from the copy, or None when it is not ready."""
    if not enabled() or not customer_hashes:
        return None
    try:
        pipe = _redis().pipeline(transaction=False)
        pipe.exists(_key("ready"))
        for kind in OptOutKind.values:
            pipe.smismember(_key(kind), customer_hashes)
        ready, *answers = pipe.execute()
    except Exception:
        logger.warning("Opt-out copy unavailable; asking the database")
        return None
    if not ready:
        return None
    return {
        kind: {h for h, member in zip(customer_hashes, answer, strict=True) if member}
        for kind, answer in zip(OptOutKind.values, answers, strict=True)
    }


def add(customer_hash: str, kinds: list[str]) -> None:
    """Before commit (fail closed), and again after; also into the staging sets so a
    rebuild in progress cannot miss it."""
    if not enabled():
        return
    try:
        pipe = _redis().pipeline(transaction=False)
        for kind in kinds:
            pipe.sadd(_key(kind), customer_hash)
            pipe.sadd(_key(f"{kind}:staging"), customer_hash)
        pipe.execute()
    except Exception:
        # Losing the copy's entry must not lose the opt-out: mark the copy stale so
        # readers use the database until it is rebuilt.
        invalidate()


def remove(customer_hash: str, kinds: list[str]) -> None:
    """After a withdrawal commits."""
    if not enabled():
        return
    try:
        pipe = _redis().pipeline(transaction=False)
        for kind in kinds:
            pipe.srem(_key(kind), customer_hash)
            pipe.srem(_key(f"{kind}:staging"), customer_hash)
        pipe.execute()
    except Exception:
        invalidate()


def invalidate() -> None:
    try:
        _redis().delete(_key("ready"))
    except Exception:
        logger.exception("Could not mark the opt-out copy stale")


def is_ready() -> bool:
    try:
        return enabled() and bool(_redis().exists(_key("ready")))
    except Exception:
        return False


def rebuild() -> int:
    """Copy every active opt-out into staging sets, then swap them in atomically.

    Writers add to the staging sets too, so opt-outs registered during the scan are
    not lost; an empty-string member keeps every set in existence for the swap.
    """
    if not enabled():
        return 0
    redis = _redis()
    staging = {kind: _key(f"{kind}:staging") for kind in OptOutKind.values}
    redis.delete(*staging.values())
    pending: dict[str, list[str]] = {kind: [""] for kind in OptOutKind.values}
    count = 0
    rows = (
        OptOut.objects.filter(withdrawn_at__isnull=True)
        .values_list("customer_hash", "kind")
        .iterator(chunk_size=BATCH)
    )
    for customer_hash, kind in rows:
        pending[kind].append(customer_hash)
        count += 1
        if count % BATCH == 0:
            _flush(redis, staging, pending)
    _flush(redis, staging, pending)
    swap = redis.pipeline(transaction=True)
    for kind, key in staging.items():
        swap.sadd(key, "")
        swap.rename(key, _key(kind))
    swap.set(_key("ready"), "1")
    swap.execute()
    return count


def _flush(redis, staging: dict[str, str], pending: dict[str, list[str]]) -> None:
    pipe = redis.pipeline(transaction=False)
    for kind, hashes in pending.items():
        if hashes:
            pipe.sadd(staging[kind], *hashes)
            hashes.clear()
    pipe.execute()
