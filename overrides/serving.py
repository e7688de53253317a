"""The serving read path's moving parts: the current version, its announcement, and
the in-process copy of the rules that `rank` evaluates.

The version lives in the cache when Redis is configured (set by the write services on
commit, so every process sees it at once) and is read from the database otherwise.
`rank` compares it with its in-process RuleSet and brings that copy up to date only
when a rule changed, so the common case touches no table of rules.
"""

import gc
import hashlib
import json
import logging
import threading
import time

import orjson
from django.conf import settings
from django.core.cache import cache

from opsconsole_client.rules import RuleSet

from . import selectors

logger = logging.getLogger(__name__)

VERSION_CACHE_KEY = "overrides:version"
# A short TTL bounds staleness if a process dies between its commit and announcing
# it: readers then fall back to the database within these seconds.
VERSION_CACHE_SECONDS = 5
SNAPSHOT_CACHE_SECONDS = 3600

_ruleset: RuleSet | None = None
_ruleset_lock = threading.Lock()
_memo: tuple[float, int] | None = None  # (valid until, version)


def announce_version(version: int) -> None:
    """After a rule change commits: share the new version and push it to clients."""
    global _memo
    _memo = None
    if not settings.REDIS_URL:
        return
    try:
        cache.set(VERSION_CACHE_KEY, version, timeout=VERSION_CACHE_SECONDS)
        _redis().publish(settings.OVERRIDES_CHANNEL, json.dumps({"version": version}))
    except Exception:
        # The change is committed; readers fall back to the database and clients
        # to polling. Losing the push must not turn a saved change into an error.
        cache.delete(VERSION_CACHE_KEY)
        logger.exception("Could not announce override version %s", version)


def _redis():
    from django_redis import get_redis_connection

    return get_redis_connection("default")


def current_version() -> int:
    """The committed override version, from Redis when configured, else the database.

    Remembered in-process for SERVING_VERSION_MEMO_SECONDS (0.1 s): at hundreds of
    requests a second that saves a round trip on nearly every one, and a change
    still reaches every process well within a second (this one at once).
    """
    global _memo
    now = time.monotonic()
    memo = _memo
    if memo is not None and memo[0] > now:
        return memo[1]
    version = _read_version()
    _memo = (now + settings.SERVING_VERSION_MEMO_SECONDS, version)
    return version


def _read_version() -> int:
    if settings.REDIS_URL:
        try:
            version = cache.get(VERSION_CACHE_KEY)
            if version is not None:
                return version
            version = selectors.current_version()
            # add(), not set(): never overwrite a newer version announced meanwhile.
            cache.add(VERSION_CACHE_KEY, version, timeout=VERSION_CACHE_SECONDS)
            return version
        except Exception:
            logger.warning(
                "Redis unavailable; reading the override version from the database"
            )
    return selectors.current_version()


def ruleset() -> RuleSet:
    """The rules at the current version. On a change, the in-process copy catches up
    through the change feed (a few rows), and is rebuilt from a snapshot only when it
    is new or too far behind."""
    global _ruleset
    version = current_version()
    rules = _ruleset
    if rules is not None and rules.version >= version:
        return rules
    with _ruleset_lock:
        if _ruleset is not None and _ruleset.version < version:
            try:
                _catch_up(_ruleset)
            except selectors.ChangesGone:
                _ruleset = None
        if _ruleset is None or _ruleset.version < version:
            _ruleset = RuleSet.from_document(selectors.serving_snapshot())
            # A full build makes ~100k long-lived objects; keep them out of the
            # collector's full passes, which otherwise stall requests for 100+ ms.
            gc.freeze()
        return _ruleset


def _catch_up(rules: RuleSet) -> None:
    """Apply the change feed to `rules` in place (per-item copy-on-write, so readers
    in other threads never see a half-changed item)."""
    while True:
        version, changes, has_more = selectors.changes_since(
            rules.version, limit=settings.SERVING_CHANGES_PAGE
        )
        rules.apply_changes(changes, version)
        if not has_more:
            return


def forget_ruleset() -> None:
    """Drop the in-process copies (tests, and after the database is replaced)."""
    global _ruleset, _memo
    with _ruleset_lock:
        _ruleset = None
        _memo = None


def snapshot_json(*, surface: str | None, region: str | None) -> tuple[int, bytes]:
    """(version, the snapshot document as JSON bytes), cached per version and scope."""
    version = current_version()
    # Serving accepts any scope string: hashed, a key is short and safe for any cache.
    scope = hashlib.sha256(orjson.dumps([surface, region])).hexdigest()[:32]
    key = f"overrides:snapshot:{version}:{scope}"
    try:
        cached = cache.get(key)
    except Exception:
        cached = None
    if cached is not None:
        return version, cached
    document = selectors.serving_snapshot(surface=surface, region=region)
    body = json.dumps(document, separators=(",", ":")).encode()
    if document["version"] == version:
        try:
            cache.set(key, body, timeout=SNAPSHOT_CACHE_SECONDS)
        except Exception:
            logger.warning("Could not cache the snapshot for %s", key)
    return document["version"], body
