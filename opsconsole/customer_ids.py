"""The one place raw customer ids become keyed hashes (contract, Identifiers).

Every model, log line, task argument and cache key uses the hash; raw ids only
appear in requests and, for an authorised user, on screen.
"""

import hashlib
import hmac

from django.conf import settings

from opsconsole.identifiers import validate_customer_id

HASH_LENGTH = 64


def _key() -> bytes:
    return settings.CUSTOMER_ID_HMAC_KEY.encode()


def hash_customer_id(raw: str) -> str:
    """HMAC-SHA256 of a customer id, hex; validates the id first."""
    validate_customer_id(raw)
    return hmac.digest(_key(), raw.encode(), "sha256").hex()


def hash_customer_ids(raw_ids: list[str], *, validated: bool = False) -> dict[str, str]:
    """Hash many ids at once (hash -> raw id), for lookups that map answers back.

    The keyed state is prepared once and copied per id, which is several times
    faster than starting each HMAC from the key. `validated=True` skips the per-id
    check when the caller has just done it.
    """
    if not validated:
        for raw in raw_ids:
            validate_customer_id(raw)
    keyed = hmac.new(_key(), digestmod=hashlib.sha256)
    hashes = {}
    for raw in raw_ids:
        one = keyed.copy()
        one.update(raw.encode())
        hashes[one.hexdigest()] = raw
    return hashes
