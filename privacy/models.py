"""Deletion requests, the downstream systems told about them, and the evidence.

The request row in the database is the source of truth: background jobs only carry
ids, and a sweeper re-enqueues whatever is unfinished, so a lost task loses nothing.
Opt-outs themselves live in overrides.OptOut, beside the rules serving reads.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords


class Downstream(models.Model):
    """A system holding customer data that must be told about each deletion.

    It receives a signed JSON POST per request and acknowledges with any 2xx.
    """

    name = models.CharField(max_length=100, unique=True)
    url = models.URLField(max_length=500, help_text="Where the signed POST goes.")
    secret = models.CharField(
        max_length=200, help_text="Shared secret for the HMAC-SHA256 signature header."
    )
    is_active = models.BooleanField(
        default=True, help_text="Inactive downstreams get no new requests."
    )
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    history = HistoricalRecords(
        excluded_fields=["secret"],
        history_change_reason_field=models.TextField(null=True),
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class RequestStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    IN_PROGRESS = "in_progress", "In progress"
    COMPLETED = "completed", "Completed"


class DeletionRequest(models.Model):
    """A customer's request to be forgotten, by hashed customer id.

    `encrypted_customer_id` (AES-GCM, see privacy.crypto) exists only while some
    downstream still needs the raw id; it is erased once all have acknowledged.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer_hash = models.CharField(max_length=64, db_index=True)
    encrypted_customer_id = models.BinaryField(null=True, blank=True, editable=False)
    source = models.CharField(
        max_length=200, help_text="Where it came from, e.g. a ticket id."
    )
    status = models.CharField(
        max_length=16, choices=RequestStatus.choices, default=RequestStatus.PENDING
    )
    received_at = models.DateTimeField(default=timezone.now)
    due_at = models.DateTimeField()
    extended_at = models.DateTimeField(null=True, blank=True)
    extension_reason = models.TextField(blank=True)
    console_data_deleted_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    raw_id_erased_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    api_key = models.ForeignKey(
        "opsconsole.ApiKey",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    retried_at = models.DateTimeField(
        null=True, blank=True, help_text='The last "Retry now" of its downstreams.'
    )
    # Reasons are the source or the extension's reason (free text): not varchar(100).
    history = HistoricalRecords(
        excluded_fields=["encrypted_customer_id"],
        history_change_reason_field=models.TextField(null=True),
    )

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer_hash"],
                condition=~Q(status="completed"),
                name="one_open_deletion_request_per_customer",
            )
        ]

    def __str__(self) -> str:
        return f"Deletion request {self.short_id}"

    @property
    def short_id(self) -> str:
        return str(self.id)[:8]

    @property
    def is_open(self) -> bool:
        return self.status != RequestStatus.COMPLETED


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Waiting for acknowledgement"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"


class DownstreamDelivery(models.Model):
    """One downstream's part of one request: attempts until it acknowledges.

    `idempotency_key` is sent with every attempt, and the body is the same each
    time (`payload_sha256` proves it), so a repeat is harmless downstream.
    """

    request = models.ForeignKey(
        DeletionRequest, on_delete=models.CASCADE, related_name="deliveries"
    )
    downstream = models.ForeignKey(
        Downstream, on_delete=models.PROTECT, related_name="deliveries"
    )
    idempotency_key = models.CharField(max_length=100, unique=True)
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now, db_index=True)
    leased_until = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    payload_sha256 = models.CharField(max_length=64, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["downstream__name"]
        constraints = [
            models.UniqueConstraint(
                fields=["request", "downstream"], name="one_delivery_per_downstream"
            )
        ]

    def __str__(self) -> str:
        return f"{self.downstream} for {self.request}"


class EventKind(models.TextChoices):
    RECEIVED = "received", "Request received"
    OPTED_OUT = "opted_out", "Opted out of everything"
    CONSOLE_DATA_DELETED = "console_data_deleted", "Console data deleted"
    DOWNSTREAM_FAILED = "downstream_failed", "Downstream attempt failed"
    DOWNSTREAM_ACKNOWLEDGED = "downstream_acknowledged", "Downstream acknowledged"
    RAW_ID_ERASED = "raw_id_erased", "Raw customer id erased"
    EXTENDED = "extended", "Deadline extended"
    COMPLETED = "completed", "Completed"


class EvidenceEvent(models.Model):
    """One step in a request's timeline; kept after the personal data is gone.

    Holds the hash only, never a raw id: `detail` has counts, names and codes.
    """

    request = models.ForeignKey(
        DeletionRequest, on_delete=models.PROTECT, related_name="events"
    )
    at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=32, choices=EventKind.choices)
    detail = models.JSONField(default=dict, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} at {self.at:%Y-%m-%d %H:%M}"
