"""Identifier rules shared by every app (contract, Identifiers)."""

import re

from django.core.exceptions import ValidationError

ITEM_ID_MAX_LENGTH = 128
CUSTOMER_ID_MAX_LENGTH = 256

# Whitespace and invisible characters make ids that look equal but are not: the
# rule as (low, high) code point ranges, inclusive, of every code point that is
# whitespace or in category Cc, Cf, Cs, Co, Zs, Zl or Zp, from Unicode 14.0 (Python
# 3.11). The validators' regex below (serving searches many ids at once) and the API
# schema's pattern are built from it. tests/security/test_properties.py checks the
# regex against unicodedata, code point by code point, so a Unicode upgrade shows up.
FORBIDDEN_RANGES: tuple[tuple[int, int], ...] = (
    (0x0000, 0x0020), (0x007F, 0x00A0), (0x00AD, 0x00AD), (0x0600, 0x0605),
    (0x061C, 0x061C), (0x06DD, 0x06DD), (0x070F, 0x070F), (0x0890, 0x0891),
    (0x08E2, 0x08E2), (0x1680, 0x1680), (0x180E, 0x180E), (0x2000, 0x200F),
    (0x2028, 0x202F), (0x205F, 0x2064), (0x2066, 0x206F), (0x3000, 0x3000),
    (0xD800, 0xF8FF), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0x110BD, 0x110BD),
    (0x110CD, 0x110CD), (0x13430, 0x13438), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0001, 0xE0001), (0xE0020, 0xE007F),
    (0xF0000, 0xFFFFD), (0x100000, 0x10FFFD),
)  # fmt: skip
FORBIDDEN_CHARACTER = re.compile(
    "["
    + "".join(
        f"{re.escape(chr(low))}-{re.escape(chr(high))}"
        for low, high in FORBIDDEN_RANGES
    )
    + "]"
)


def _validate_identifier(value: object, *, label: str, max_length: int) -> None:
    if not isinstance(value, str) or value == "":
        raise ValidationError(f"{label} is required.", code="required")
    if len(value) > max_length:
        raise ValidationError(
            f"{label} must be at most {max_length} characters (it has {len(value)}).",
            code="max_length",
        )
    forbidden = FORBIDDEN_CHARACTER.search(value)
    if forbidden is not None:
        raise ValidationError(
            f"{label} must not contain whitespace or control characters "
            f"(found {forbidden.group()!r}).",
            code="invalid_characters",
        )


def validate_item_id(value: object) -> None:
    _validate_identifier(value, label="Item id", max_length=ITEM_ID_MAX_LENGTH)


def validate_customer_id(value: object) -> None:
    _validate_identifier(value, label="Customer id", max_length=CUSTOMER_ID_MAX_LENGTH)
