"""A Redis copy of the active opt-outs, so serving checks 1,000 customers in one
round trip (one HMGET) instead of 1,000 index lookups. The database stays the source
of truth.

One Redis hash maps each customer hash, as its 32 bytes (half the hex: less to
send and to store), to the kinds it opted out of ("p" for personalisation, "t" for
training). The copy fails closed: an opt-out is added to it before its transaction
commits (a rollback leaves an extra entry, which only means "not personalised" until
the next rebuild) and a withdrawal is removed after commit. It is used only while
its ready marker (a field of the same hash, so one HMGET reads it with the answers)
exists, which a full rebuild sets; Redis restarting (it keeps nothing on disk here)
removes the marker, and readers fall back to the database until beat's task
rebuilds it.
"""

import logging
from itertools import compress, permutations

from django.conf import settings

from .models import OptOut, OptOutKind

logger = logging.getLogger(__name__)
BATCH = 10_000
CODES = {OptOutKind.PERSONALIZATION: "p", OptOutKind.TRAINING: "t"}
# The ready marker: a field no 32-byte digest can equal.
READY_FIELD = b"ready"


def _answers_with(code: str) -> frozenset[bytes]:
    """Every value an entry can hold that includes `code` (codes in any order)."""
    return frozenset(
        "".join(codes).encode()
        for size in range(1, len(CODES) + 1)
        for codes in permutations(CODES.values(), size)
        if code in codes
    )


# For C-level membership tests of HMGET's answers, by kind.
ANSWERS_WITH = {kind.value: _answers_with(code) for kind, code in CODES.items()}

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


def field(customer_hash: str) -> bytes:
    """A customer hash (hex) as the copy's field: its digest bytes."""
    return bytes.fromhex(customer_hash)


def lookup_command(digests: list[bytes]) -> tuple:
    """The one HMGET that answers both whether the copy is ready and the codes."""
    return ("HMGET", _key("kinds"), READY_FIELD, *digests)


def answers_from(reply: list | None) -> list[bytes | None] | None:
    """`lookup_command`'s reply as `lookup_digests` gives it (None: not ready, or
    Redis failed and there is no reply)."""
    if not reply:
        return None
    ready, *answers = reply
    return answers if ready else None


def lookup_digests(digests: list[bytes]) -> list[bytes | None] | None:
    """Each digest's codes (None: no opt-out), in order; None when not ready."""
    if not enabled() or not digests:
        return None
    try:
        reply = _redis().execute_command(*lookup_command(digests))
    except Exception:
        logger.warning("Opt-out copy unavailable; asking the database")
        return None
    return answers_from(reply)


def lookup(customer_hashes: list[str]) -> dict[str, set[str]] | None:
    """{kind: hashes opted out} from the copy, or None when it is not ready."""
    answers = lookup_digests(list(map(field, customer_hashes)))
    if answers is None:
        return None
    return {
        kind: set(compress(customer_hashes, map(codes.__contains__, answers)))
        for kind, codes in ANSWERS_WITH.items()
    }


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
            field(customer_hash),
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
        _redis().hdel(_key("kinds"), READY_FIELD)
    except Exception:
        logger.exception("Could not mark the opt-out copy stale")


def is_ready() -> bool:
    try:
        return enabled() and bool(_redis().hexists(_key("kinds"), READY_FIELD))
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
    pending: dict[bytes, str] = {}
    count = 0
    for customer_hash, kind in rows:
        count += 1
        digest = field(customer_hash)
        pending[digest] = pending.get(digest, "") + CODES[kind]
        if len(pending) >= BATCH:
            _merge(redis, staging, pending)
    _merge(redis, staging, pending)
    swap = redis.pipeline(transaction=True)
    swap.hset(staging, READY_FIELD, "1")  # also keeps the hash in existence
    swap.rename(staging, _key("kinds"))
    swap.execute()
    return count


def _merge(redis, staging: str, pending: dict[bytes, str]) -> None:
    """Write a batch atomically, keeping codes a writer added to an entry meanwhile."""
    if not pending:
        return
    arguments = [value for pair in pending.items() for value in pair]
    redis.eval(_MERGE_SCRIPT, 1, staging, *arguments)
    pending.clear()
