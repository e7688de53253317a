"""A Redis copy of the active opt-outs, so serving checks 1,000 customers in one
round trip (one HMGET) instead of 1,000 index lookups. The database stays the source
of truth.

One Redis hash maps each customer hash to the kinds it opted out of ("p" for
personalisation, "t" for training). The copy fails closed: an opt-out is added to it
before its transaction commits (a rollback leaves an extra entry, which only means
"not personalised" until the next rebuild) and a withdrawal is removed after commit.
It is used only while its `ready` marker exists, which a full rebuild sets; Redis
restarting (it keeps nothing on disk here) removes the marker, and readers fall back
to the database until beat's task rebuilds it.
"""

import logging

from django.conf import settings

from .models import OptOut, OptOutKind

logger = logging.getLogger(__name__)
BATCH = 10_000
CODES = {OptOutKind.PERSONALIZATION: "p", OptOutKind.TRAINING: "t"}

# KEYS: the live hash and the staging hash; ARGV: customer hash, codes, "add"/"remove".
_UPDATE_SCRIPT = """
for _, key in ipairs(KEYS) do
  local codes = redis.call('HGET', key, ARGV[1]) or ''
  for code in string.gmatch(ARGV[2], '.') do
    local present = string.find(codes, code, 1, true)
    if ARGV[3] == 'add' and not present then
      codes = codes .. code
    elseif ARGV[3] == 'remove' and present then
      codes = string.gsub(codes, code, '')
    end
  end
  if codes == '' then
    redis.call('HDEL', key, ARGV[1])
  else
    redis.call('HSET', key, ARGV[1], codes)
  end
end
return 1
"""


# KEYS[1]: the staging hash; ARGV: customer hash, codes, customer hash, codes...
_MERGE_SCRIPT = """
for i = 1, #ARGV, 2 do
  local codes = redis.call('HGET', KEYS[1], ARGV[i]) or ''
  for code in string.gmatch(ARGV[i + 1], '.') do
    if not string.find(codes, code, 1, true) then codes = codes .. code end
  end
  redis.call('HSET', KEYS[1], ARGV[i], codes)
end
return 1
"""


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
        pipe.hmget(_key("kinds"), customer_hashes)
        ready, answers = pipe.execute()
    except Exception:
        logger.warning("Opt-out copy unavailable; asking the database")
        return None
    if not ready:
        return None
    found: dict[str, set[str]] = {kind: set() for kind in OptOutKind.values}
    for customer_hash, codes in zip(customer_hashes, answers, strict=True):
        if codes:
            for kind, code in CODES.items():
                if code.encode() in codes:
                    found[kind].add(customer_hash)
    return found


def _update(customer_hash: str, kinds: list[str], operation: str) -> None:
    if not enabled():
        return
    codes = "".join(CODES[kind] for kind in kinds)
    try:
        _redis().eval(
            _UPDATE_SCRIPT,
            2,
            _key("kinds"),
            _key("staging"),
            customer_hash,
            codes,
            operation,
        )
    except Exception:
        # Losing the copy's entry must not lose the opt-out: mark the copy stale so
        # readers use the database until it is rebuilt.
        invalidate()


def add(customer_hash: str, kinds: list[str]) -> None:
    """Before commit (fail closed), and again after; also into the staging hash so a
    rebuild in progress cannot miss it."""
    _update(customer_hash, kinds, "add")


def remove(customer_hash: str, kinds: list[str]) -> None:
    """After a withdrawal commits."""
    _update(customer_hash, kinds, "remove")


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
    """Copy every active opt-out into a staging hash, then swap it in atomically.

    Writers update the staging hash too, so opt-outs registered during the scan are
    not lost; batches merge codes, so one customer's kinds may arrive in any order.
    """
    if not enabled():
        return 0
    redis = _redis()
    staging = _key("staging")
    redis.delete(staging)
    rows = (
        OptOut.objects.filter(withdrawn_at__isnull=True)
        .values_list("customer_hash", "kind")
        .iterator(chunk_size=BATCH)
    )
    pending: dict[str, str] = {}
    count = 0
    for customer_hash, kind in rows:
        count += 1
        pending[customer_hash] = pending.get(customer_hash, "") + CODES[kind]
        if len(pending) >= BATCH:
            _merge(redis, staging, pending)
    _merge(redis, staging, pending)
    swap = redis.pipeline(transaction=True)
    swap.hset(staging, "", "-")  # keeps the hash in existence for RENAME
    swap.rename(staging, _key("kinds"))
    swap.set(_key("ready"), "1")
    swap.execute()
    return count


def _merge(redis, staging: str, pending: dict[str, str]) -> None:
    """Write a batch atomically, keeping codes a writer added to an entry meanwhile."""
    if not pending:
        return
    arguments = [value for pair in pending.items() for value in pair]
    redis.eval(_MERGE_SCRIPT, 1, staging, *arguments)
    pending.clear()
