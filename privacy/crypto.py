"""Authenticated encryption of the raw customer id an open deletion request needs.

AES-256-GCM with CUSTOMER_ID_ENCRYPTION_KEY; the customer hash is the associated
data, so a ciphertext moved to another request does not decrypt.
"""

import hashlib
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

NONCE_BYTES = 12


def _cipher() -> AESGCM:
    key = settings.CUSTOMER_ID_ENCRYPTION_KEY
    try:
        raw = bytes.fromhex(key)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        # Any other secret is stretched to 32 bytes rather than refused.
        raw = hashlib.sha256(key.encode()).digest()
    return AESGCM(raw)


def encrypt_customer_id(raw_id: str, *, customer_hash: str) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + _cipher().encrypt(nonce, raw_id.encode(), customer_hash.encode())


def decrypt_customer_id(token: bytes, *, customer_hash: str) -> str:
    token = bytes(token)
    nonce, ciphertext = token[:NONCE_BYTES], token[NONCE_BYTES:]
    return _cipher().decrypt(nonce, ciphertext, customer_hash.encode()).decode()
