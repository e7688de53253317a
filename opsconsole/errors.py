"""Errors shared by services and the API, and the contract's error format.

Services raise Django's ValidationError for invalid input and ConflictError when the
input is valid but clashes with what exists; the API turns both, and DRF's own errors,
into `{"error": {"code", "message", "fields"}}` with a fitting 4xx status.
"""

import logging
import time

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)
# How long a client should wait before trying again while the database is away.
DATABASE_RETRY_AFTER_SECONDS = 5
_database_warned_at = 0.0


def _warn_database_unavailable(exc: Exception) -> None:
    """Log once a minute per process, not once per request, during an outage."""
    global _database_warned_at
    now = time.monotonic()
    if now - _database_warned_at > 60:
        _database_warned_at = now
        logger.warning("Database unavailable: %s", exc)


class ConsoleError(Exception):
    """An error the caller can fix; carries the contract's code and status."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid"

    def __init__(
        self, message: str, *, fields: dict | None = None, code: str | None = None
    ):
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        if code:
            self.code = code


class ConflictError(ConsoleError):
    """The request is valid but clashes with an existing record (HTTP 409)."""

    status_code = status.HTTP_409_CONFLICT
    code = "conflict"

    def __init__(self, message: str, *, existing_id: int | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.existing_id = existing_id


def validation_messages(error: DjangoValidationError) -> dict[str, list[str]]:
    """A ValidationError as {field: [messages]}, "non_field_errors" for the rest."""
    if hasattr(error, "error_dict"):
        return {
            ("non_field_errors" if field == "__all__" else field): [
                message for item in items for message in item.messages
            ]
            for field, items in error.error_dict.items()
        }
    return {"non_field_errors": list(error.messages)}


def summarize_fields(fields: dict) -> str:
    parts = []
    for field, messages in fields.items():
        text = " ".join(_flatten(messages))
        parts.append(text if field == "non_field_errors" else f"{field}: {text}")
    return "; ".join(parts) or "Invalid input."


def _flatten(value) -> list[str]:
    if isinstance(value, dict):
        return [
            f"{key}: {text}" for key, inner in value.items() for text in _flatten(inner)
        ]
    if isinstance(value, (list, tuple)):
        return [text for inner in value for text in _flatten(inner)]
    return [str(value)]


def _normalize_detail(detail) -> dict:
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    return {"non_field_errors": _flatten(detail)}


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def api_exception_handler(exc, context):
    """DRF exception handler that answers in the contract's error format."""
    if isinstance(exc, ConsoleError):
        body = error_body(exc.code, exc.message, exc.fields)
        if isinstance(exc, ConflictError) and exc.existing_id is not None:
            body["error"]["existing_id"] = exc.existing_id
        return Response(body, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        fields = validation_messages(exc)
        return Response(
            error_body("invalid", summarize_fields(fields), fields), status=400
        )
    if isinstance(exc, RequestDataTooBig):
        return Response(
            error_body(
                "too_large", "The request body is larger than this endpoint accepts."
            ),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, (OperationalError, InterfaceError)):
        # The database is down or restarting, or a statement timed out or lost a
        # deadlock: a 503 the client can retry, not a 500 that reads as a bug. Not
        # "nothing was changed": a view with two atomic blocks may have committed
        # the first, so the client is told to check and retry.
        _warn_database_unavailable(exc)
        response = Response(
            error_body(
                "unavailable",
                "The console's database is unavailable; the request may not have "
                "been applied. Try again shortly.",
            ),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
        response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
        return response
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = _normalize_detail(exc.detail)
        response.data = error_body("invalid", summarize_fields(fields), fields)
    else:
        code = {
            401: "unauthenticated",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            406: "not_acceptable",
            413: "too_large",
            415: "unsupported_media_type",
            429: "too_many_requests",
        }.get(response.status_code, getattr(exc, "default_code", "error"))
        message = " ".join(_flatten(exc.detail)) if hasattr(exc, "detail") else str(exc)
        if response.status_code == 401 and isinstance(exc, exceptions.NotAuthenticated):
            message = (
                "Authentication required: send a session cookie or a Bearer API key."
            )
        response.data = error_body(code, message)
    return response
