"""Identifier rules shared by every app (contract, Identifiers)."""

import unicodedata

from django.core.exceptions import ValidationError

ITEM_ID_MAX_LENGTH = 128
CUSTOMER_ID_MAX_LENGTH = 256

# Whitespace and invisible characters make ids that look equal but are not.
_FORBIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Zs", "Zl", "Zp"}


def _validate_identifier(value: object, *, label: str, max_length: int) -> None:
    if not isinstance(value, str) or value == "":
        raise ValidationError(f"{label} is required.", code="required")
    if len(value) > max_length:
        raise ValidationError(
            f"{label} must be at most {max_length} characters (it has {len(value)}).",
            code="max_length",
        )
    for character in value:
        if (
            character.isspace()
            or unicodedata.category(character) in _FORBIDDEN_CATEGORIES
        ):
            raise ValidationError(
                f"{label} must not contain whitespace or control characters "
                f"(found {character!r}).",
                code="invalid_characters",
            )


def validate_item_id(value: object) -> None:
    _validate_identifier(value, label="Item id", max_length=ITEM_ID_MAX_LENGTH)


def validate_customer_id(value: object) -> None:
    _validate_identifier(value, label="Customer id", max_length=CUSTOMER_ID_MAX_LENGTH)
