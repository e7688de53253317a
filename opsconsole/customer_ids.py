"""The one place raw customer ids become keyed hashes (contract, Identifiers).

Every model, log line, task argument and cache key uses the hash; raw ids only
appear in requests and, for an authorised user, on screen.
"""

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

    `validated=True` skips the per-id check when the caller has just done it.
    """
    key = _key()
    if not validated:
        for raw in raw_ids:
            validate_customer_id(raw)
    return {hmac.digest(key, raw.encode(), "sha256").hex(): raw for raw in raw_ids}
