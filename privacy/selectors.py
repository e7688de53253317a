"""Every read of the privacy domain: request lists, deadlines, progress, evidence."""

import csv
import io
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from overrides.models import OptOut, OptOutKind

from .models import (
    DeletionRequest,
    DeliveryStatus,
    Downstream,
    EvidenceEvent,
    RequestStatus,
)


def _with_progress(queryset: QuerySet) -> QuerySet:
    return queryset.annotate(
        deliveries_total=Count("deliveries", distinct=True),
        deliveries_acknowledged=Count(
            "deliveries",
            filter=Q(deliveries__status=DeliveryStatus.ACKNOWLEDGED),
            distinct=True,
        ),
    )


def flag_cutoff(now: datetime | None = None) -> datetime:
    """Requests received before this and still open are flagged (20 days)."""
    return (now or timezone.now()) - timedelta(days=settings.DELETION_FLAG_AFTER_DAYS)


def deletion_request_list(
    *, status: str = "", flagged: bool = False, customer_hash: str = ""
) -> QuerySet[DeletionRequest]:
    """Requests, newest first, with delivery counts for the progress bar."""
    queryset = DeletionRequest.objects.select_related("created_by")
    if status:
        queryset = queryset.filter(status=status)
    if flagged:
        queryset = queryset.exclude(status=RequestStatus.COMPLETED).filter(
            received_at__lt=flag_cutoff()
        )
    if customer_hash:
        queryset = queryset.filter(customer_hash=customer_hash)
    return _with_progress(queryset).order_by("-received_at", "pk")


def deletion_request_detail(request_id) -> DeletionRequest:
    """One request with its counts; raises DeletionRequest.DoesNotExist."""
    return _with_progress(DeletionRequest.objects.select_related("created_by")).get(
        pk=request_id
    )


def deliveries_of(request: DeletionRequest):
    return request.deliveries.select_related("downstream").order_by("downstream__name")


def timeline(request: DeletionRequest) -> QuerySet[EvidenceEvent]:
    return request.events.select_related("actor").order_by("at", "id")


def waiting_delivery_ids(request_id) -> list[int]:
    return list(
        DeletionRequest.objects.get(pk=request_id)
        .deliveries.filter(status=DeliveryStatus.PENDING)
        .values_list("pk", flat=True)
    )


def progress_percent(request: DeletionRequest) -> int:
    """Share of the steps done: the console's own deletion plus one per downstream."""
    if request.status == RequestStatus.COMPLETED:
        return 100
    total = 1 + request.deliveries_total
    done = (request.console_data_deleted_at is not None) + (
        request.deliveries_acknowledged
    )
    return int(100 * done / total)


def days_left(request: DeletionRequest, now: datetime | None = None) -> int:
    """Whole days until the deadline; negative when it has passed."""
    remaining = request.due_at - (now or timezone.now())
    return remaining.days


def is_flagged(request: DeletionRequest, now: datetime | None = None) -> bool:
    return request.is_open and request.received_at < flag_cutoff(now)


def privacy_dashboard(now: datetime | None = None) -> dict:
    """Counts for the dashboard: open, flagged (over 20 days), past the deadline."""
    now = now or timezone.now()
    open_requests = DeletionRequest.objects.exclude(status=RequestStatus.COMPLETED)
    return open_requests.aggregate(
        open=Count("pk"),
        flagged=Count("pk", filter=Q(received_at__lt=flag_cutoff(now))),
        overdue=Count("pk", filter=Q(due_at__lt=now)),
    )


def flagged_requests(now: datetime | None = None) -> QuerySet[DeletionRequest]:
    return (
        _with_progress(DeletionRequest.objects.exclude(status=RequestStatus.COMPLETED))
        .filter(received_at__lt=flag_cutoff(now))
        .order_by("due_at")
    )


def downstream_list() -> QuerySet[Downstream]:
    return Downstream.objects.annotate(
        waiting=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.PENDING))
    )


# Evidence ---------------------------------------------------------------------------

EVIDENCE_CSV_COLUMNS = ["at", "event", "actor", "detail"]


def evidence_document(request: DeletionRequest) -> dict:
    """The proof of a request: what was done and when, by hash only."""
    return {
        "id": str(request.id),
        "customer_hash": request.customer_hash,
        "source": request.source,
        "status": request.status,
        "received_at": request.received_at.isoformat(),
        "due_at": request.due_at.isoformat(),
        "extended_at": request.extended_at.isoformat() if request.extended_at else None,
        "extension_reason": request.extension_reason or None,
        "completed_at": (
            request.completed_at.isoformat() if request.completed_at else None
        ),
        "raw_id_erased_at": (
            request.raw_id_erased_at.isoformat() if request.raw_id_erased_at else None
        ),
        "downstreams": [
            {
                "name": delivery.downstream.name,
                "status": delivery.status,
                "idempotency_key": delivery.idempotency_key,
                "attempts": delivery.attempts,
                "last_status_code": delivery.last_status_code,
                "last_error": delivery.last_error or None,
                "acknowledged_at": (
                    delivery.acknowledged_at.isoformat()
                    if delivery.acknowledged_at
                    else None
                ),
                "payload_sha256": delivery.payload_sha256 or None,
            }
            for delivery in deliveries_of(request)
        ],
        "timeline": [
            {
                "at": event.at.isoformat(),
                "event": event.kind,
                "actor": event.actor.get_username() if event.actor else None,
                "detail": event.detail,
            }
            for event in timeline(request)
        ],
    }


def evidence_csv(request: DeletionRequest) -> str:
    """The timeline as CSV, one row per event, for a ticket or an auditor."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EVIDENCE_CSV_COLUMNS)
    for event in timeline(request):
        detail = "; ".join(f"{key}={value}" for key, value in event.detail.items())
        writer.writerow(
            [
                event.at.isoformat(),
                event.kind,
                event.actor.get_username() if event.actor else "system",
                detail,
            ]
        )
    return buffer.getvalue()


# Opt-outs ---------------------------------------------------------------------------


def optouts_of_customer(customer_hash: str) -> QuerySet[OptOut]:
    """Every opt-out of one customer, active and withdrawn, newest first."""
    return OptOut.objects.filter(customer_hash=customer_hash).select_related(
        "created_by", "withdrawn_by"
    )


def recent_optouts() -> QuerySet[OptOut]:
    return OptOut.objects.select_related("created_by", "withdrawn_by")


def training_optout_hashes():
    """Hashed ids opted out of training, for the training pipeline's export."""
    return (
        OptOut.objects.filter(kind=OptOutKind.TRAINING, withdrawn_at__isnull=True)
        .order_by("customer_hash")
        .values_list("customer_hash", flat=True)
        .iterator(chunk_size=10_000)
    )


def active_optout_kinds(customer_id: str) -> list[str]:
    """The kinds a customer is opted out of now (raw id in, hashed here)."""
    from opsconsole.customer_ids import hash_customer_id

    return sorted(
        OptOut.objects.filter(
            customer_hash=hash_customer_id(customer_id), withdrawn_at__isnull=True
        ).values_list("kind", flat=True)
    )
