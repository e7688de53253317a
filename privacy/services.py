"""Every write of the privacy domain: deletion requests, their steps, downstreams.

A deletion request is accepted in one transaction (request, opt-out of everything,
one delivery per active downstream, the first evidence); the steps after it are
idempotent and keyed by ids, so the tasks that run them may repeat or be lost and
re-enqueued by the sweeper without harm.
"""

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
import requests
from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from django.utils import timezone

from explanations.models import Prediction
from opsconsole.customer_ids import hash_customer_id
from opsconsole.errors import ConflictError
from overrides.models import OptOutKind
from overrides.services import optout_register, validate_source

from .crypto import decrypt_customer_id, encrypt_customer_id
from .models import (
    DeletionRequest,
    DeliveryStatus,
    Downstream,
    DownstreamDelivery,
    EventKind,
    EvidenceEvent,
    RequestStatus,
)

logger = logging.getLogger(__name__)

SOURCE_MAX_LENGTH = 200
# A received_at this far ahead of the server clock is a mistake, not clock skew.
RECEIVED_AT_MAX_SKEW = timedelta(minutes=5)
SIGNATURE_HEADER = "X-OpsConsole-Signature"
TIMESTAMP_HEADER = "X-OpsConsole-Timestamp"
REQUEST_ID_HEADER = "X-OpsConsole-Request-Id"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def _customer_hash(customer_id: object) -> str:
    if not isinstance(customer_id, str):
        raise ValidationError({"customer_id": "Give the customer id as text."})
    try:
        return hash_customer_id(customer_id)
    except ValidationError as error:
        raise ValidationError({"customer_id": error.messages}) from error


def _clean_received_at(received_at: datetime | None, now: datetime) -> datetime:
    if received_at is None:
        return now
    if timezone.is_naive(received_at):
        raise ValidationError(
            {"received_at": "Give a time zone, e.g. 2026-11-02T09:30:00Z."}
        )
    if received_at > now + RECEIVED_AT_MAX_SKEW:
        raise ValidationError({"received_at": "It cannot be in the future."})
    return received_at


def due_date(received_at: datetime) -> datetime:
    """The legal deadline: one calendar month after receipt (GDPR Art. 12(3))."""
    return received_at + relativedelta(months=settings.DELETION_DEADLINE_MONTHS)


def _event(request, kind: str, *, actor=None, at=None, **detail) -> EvidenceEvent:
    return EvidenceEvent.objects.create(
        request=request, kind=kind, detail=detail, actor=actor, at=at or timezone.now()
    )


def _open_request_conflict(existing: DeletionRequest) -> ConflictError:
    return ConflictError(
        f"This customer already has an open deletion request, {existing.id} "
        f"(received {existing.received_at:%Y-%m-%d}); it covers this one.",
        fields={"customer_id": [f"Open deletion request {existing.id}."]},
        code="open_request_exists",
    )


def deletion_request_create(
    *,
    customer_id: object,
    source: object,
    received_at: datetime | None = None,
    actor=None,
    api_key=None,
) -> DeletionRequest:
    """Accept a request to be forgotten: opt out of everything now, delete later.

    One open request per customer: a second one is a ConflictError naming it.
    """
    now = timezone.now()
    errors: dict[str, list[str]] = {}
    try:
        customer_hash = _customer_hash(customer_id)
    except ValidationError as error:
        errors.update(error.message_dict)
    try:
        source = validate_source(source)
    except ValidationError as error:
        errors.update(error.message_dict)
    try:
        received_at = _clean_received_at(received_at, now)
    except ValidationError as error:
        errors.update(error.message_dict)
    if errors:
        raise ValidationError(errors)
    try:
        with transaction.atomic():
            existing = (
                DeletionRequest.objects.select_for_update()
                .filter(customer_hash=customer_hash)
                .exclude(status=RequestStatus.COMPLETED)
                .first()
            )
            if existing:
                raise _open_request_conflict(existing)
            request = DeletionRequest(
                customer_hash=customer_hash,
                source=source,
                received_at=received_at,
                due_at=due_date(received_at),
                created_by=actor,
                api_key=api_key,
            )
            request.encrypted_customer_id = encrypt_customer_id(
                customer_id, customer_hash=customer_hash
            )
            request._history_user = actor
            request._change_reason = source
            request.save()
            _event(request, EventKind.RECEIVED, actor=actor, at=now, source=source)
            new_optouts = optout_register(
                customer_id=customer_id,
                kinds=list(OptOutKind.values),
                source=f"Deletion request {request.short_id}: {source}"[
                    :SOURCE_MAX_LENGTH
                ],
                actor=actor,
            )
            _event(
                request,
                EventKind.OPTED_OUT,
                actor=actor,
                kinds=list(OptOutKind.values),
                newly_registered=sorted(optout.kind for optout in new_optouts),
            )
            downstreams = list(Downstream.objects.filter(is_active=True))
            DownstreamDelivery.objects.bulk_create(
                DownstreamDelivery(
                    request=request,
                    downstream=downstream,
                    idempotency_key=f"{request.id}:{downstream.pk}",
                )
                for downstream in downstreams
            )
    except IntegrityError as error:
        # Two intakes for the same customer raced; the other one won.
        existing = (
            DeletionRequest.objects.filter(customer_hash=customer_hash)
            .exclude(status=RequestStatus.COMPLETED)
            .first()
        )
        if existing is None:
            raise
        raise _open_request_conflict(existing) from error
    from .tasks import process_deletion_request

    request_id = str(request.id)
    transaction.on_commit(lambda: process_deletion_request.delay(request_id))
    logger.info("Deletion request %s received", request.id)
    return request


@transaction.atomic
def delete_console_data(*, request_id) -> DeletionRequest:
    """Delete the predictions and explanations the console holds for the customer.

    Runs once per request: a repeat finds the step done and changes nothing.
    """
    request = DeletionRequest.objects.select_for_update().get(pk=request_id)
    if request.console_data_deleted_at is not None:
        return request
    _deleted, per_model = Prediction.objects.filter(
        customer_hash=request.customer_hash
    ).delete()
    now = timezone.now()
    request.console_data_deleted_at = now
    if request.status == RequestStatus.PENDING:
        request.status = RequestStatus.IN_PROGRESS
    request._change_reason = "Console data deleted"
    request.save()
    _event(
        request,
        EventKind.CONSOLE_DATA_DELETED,
        at=now,
        predictions=per_model.get("explanations.Prediction", 0),
        explanations=per_model.get("explanations.Explanation", 0),
        prediction_views=per_model.get("explanations.PredictionView", 0),
    )
    logger.info("Deletion request %s: console data deleted", request.id)
    return _complete_if_done(request)


def _complete_if_done(request: DeletionRequest) -> DeletionRequest:
    """Erase the raw id once no downstream needs it; complete when all is done.

    Call inside a transaction holding the request's row lock.
    """
    waiting = request.deliveries.filter(status=DeliveryStatus.PENDING).exists()
    now = timezone.now()
    changed = False
    if not waiting and request.encrypted_customer_id is not None:
        request.encrypted_customer_id = None
        request.raw_id_erased_at = now
        changed = True
        _event(request, EventKind.RAW_ID_ERASED, at=now)
    if (
        not waiting
        and request.console_data_deleted_at is not None
        and request.status != RequestStatus.COMPLETED
    ):
        request.status = RequestStatus.COMPLETED
        request.completed_at = now
        changed = True
        _event(
            request,
            EventKind.COMPLETED,
            at=now,
            days_taken=round((now - request.received_at).total_seconds() / 86400, 2),
        )
    if changed:
        request._change_reason = request.get_status_display()
        request.save()
        logger.info("Deletion request %s: %s", request.id, request.status)
    return request


def canonical_payload(delivery: DownstreamDelivery, raw_customer_id: str) -> bytes:
    """The body sent to a downstream: the same bytes on every attempt."""
    request = delivery.request
    return orjson.dumps(
        {
            "action": "delete",
            "request_id": str(request.id),
            "idempotency_key": delivery.idempotency_key,
            "customer_hash": request.customer_hash,
            "customer_id": raw_customer_id,
            "received_at": request.received_at.isoformat(),
            "due_at": request.due_at.isoformat(),
        },
        option=orjson.OPT_SORT_KEYS,
    )


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=` + HMAC-SHA256(secret, timestamp + "." + body), hex.

    The timestamp is signed too, so a receiver can refuse old replays.
    """
    digest = hmac.new(
        secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return f"sha256={digest}"


def retry_delay(attempts: int) -> float:
    """Exponential backoff: base, 2x base, 4x base... capped."""
    return min(
        settings.DOWNSTREAM_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0),
        settings.DOWNSTREAM_RETRY_MAX_SECONDS,
    )


@dataclass(frozen=True)
class DeliveryOutcome:
    """What one attempt did; `retry_in` seconds when it must be tried again."""

    acknowledged: bool
    attempted: bool
    retry_in: float | None = None


def _claim(delivery_id: int) -> tuple[DownstreamDelivery, str] | None:
    """Take the lease on a pending delivery and give it its raw id, or None."""
    now = timezone.now()
    with transaction.atomic():
        delivery = (
            DownstreamDelivery.objects.select_for_update()
            .select_related("request", "downstream")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None or delivery.status != DeliveryStatus.PENDING:
            return None
        if delivery.leased_until and delivery.leased_until > now:
            return None  # another worker is calling it right now
        request = delivery.request
        if request.encrypted_customer_id is None:
            return None
        delivery.attempts += 1
        delivery.last_attempt_at = now
        delivery.leased_until = now + timedelta(
            seconds=settings.DOWNSTREAM_TIMEOUT_SECONDS + 5
        )
        delivery.save(update_fields=["attempts", "last_attempt_at", "leased_until"])
    raw_id = decrypt_customer_id(
        request.encrypted_customer_id, customer_hash=request.customer_hash
    )
    return delivery, raw_id


def attempt_delivery(*, delivery_id: int) -> DeliveryOutcome:
    """Call one downstream once; record the answer and the evidence.

    Leased so two workers never call the same downstream for the same request at
    once; the HTTP call is made outside any transaction.
    """
    claimed = _claim(delivery_id)
    if claimed is None:
        return DeliveryOutcome(acknowledged=False, attempted=False)
    delivery, raw_id = claimed
    body = canonical_payload(delivery, raw_id)
    digest = hashlib.sha256(body).hexdigest()
    if delivery.payload_sha256 and delivery.payload_sha256 != digest:
        raise RuntimeError(f"Delivery {delivery.pk}: payload changed between attempts")
    timestamp = str(int(time.time()))
    status_code, error = None, ""
    try:
        response = requests.post(
            delivery.downstream.url,
            data=body,
            headers={
                "Content-Type": "application/json",
                IDEMPOTENCY_HEADER: delivery.idempotency_key,
                REQUEST_ID_HEADER: str(delivery.request_id),
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: signature(
                    delivery.downstream.secret, timestamp, body
                ),
            },
            timeout=settings.DOWNSTREAM_TIMEOUT_SECONDS,
            allow_redirects=False,
        )
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except requests.RequestException as exception:
        error = type(exception).__name__
    return _record_attempt(delivery.pk, digest, status_code, error)


@transaction.atomic
def _record_attempt(
    delivery_id: int, digest: str, status_code: int | None, error: str
) -> DeliveryOutcome:
    delivery = (
        DownstreamDelivery.objects.select_for_update()
        .select_related("downstream")
        .get(pk=delivery_id)
    )
    request = DeletionRequest.objects.select_for_update().get(pk=delivery.request_id)
    now = timezone.now()
    delivery.payload_sha256 = delivery.payload_sha256 or digest
    delivery.last_status_code = status_code
    delivery.leased_until = None
    if not error:
        delivery.status = DeliveryStatus.ACKNOWLEDGED
        delivery.acknowledged_at = now
        delivery.last_error = ""
        delivery.save()
        _event(
            request,
            EventKind.DOWNSTREAM_ACKNOWLEDGED,
            at=now,
            downstream=delivery.downstream.name,
            idempotency_key=delivery.idempotency_key,
            attempts=delivery.attempts,
            status_code=status_code,
            payload_sha256=delivery.payload_sha256,
        )
        logger.info(
            "Deletion request %s: %s acknowledged",
            request.id,
            delivery.downstream.name,
        )
        _complete_if_done(request)
        return DeliveryOutcome(acknowledged=True, attempted=True)
    delay = retry_delay(delivery.attempts)
    delivery.last_error = error[:500]
    delivery.next_attempt_at = now + timedelta(seconds=delay)
    delivery.save()
    _event(
        request,
        EventKind.DOWNSTREAM_FAILED,
        at=now,
        downstream=delivery.downstream.name,
        attempt=delivery.attempts,
        error=delivery.last_error,
        retry_at=delivery.next_attempt_at.isoformat(),
    )
    logger.warning(
        "Deletion request %s: %s failed (%s), retry in %.0f s",
        request.id,
        delivery.downstream.name,
        delivery.last_error,
        delay,
    )
    return DeliveryOutcome(acknowledged=False, attempted=True, retry_in=delay)


@dataclass(frozen=True)
class SweepResult:
    """What the sweeper found unfinished and enqueued again."""

    requests: list[str]
    deliveries: list[int]


@transaction.atomic
def sweep_unfinished(*, now: datetime | None = None) -> SweepResult:
    """Unfinished steps whose task should have run by now, claimed for re-enqueueing.

    Each found delivery's next_attempt_at moves to now, so a step is handed out at
    most once per grace period however long the queue is.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.DELETION_SWEEP_GRACE_SECONDS)
    request_ids = list(
        DeletionRequest.objects.filter(
            console_data_deleted_at__isnull=True, created_at__lte=cutoff
        ).values_list("pk", flat=True)
    )
    deliveries = list(
        DownstreamDelivery.objects.select_for_update(skip_locked=True)
        .filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=cutoff)
        .exclude(leased_until__gt=now)
        .values_list("pk", flat=True)
    )
    DownstreamDelivery.objects.filter(pk__in=deliveries).update(next_attempt_at=now)
    return SweepResult(requests=[str(pk) for pk in request_ids], deliveries=deliveries)


@transaction.atomic
def retry_now(*, request_id, actor=None) -> list[int]:
    """Make every waiting delivery of a request due now (the "Retry now" button).

    Recorded on the request (retried_at, with who and how many), so the audit trail
    shows who hurried which request.
    """
    request = DeletionRequest.objects.select_for_update().get(pk=request_id)
    waiting = list(
        request.deliveries.filter(status=DeliveryStatus.PENDING).values_list(
            "pk", flat=True
        )
    )
    now = timezone.now()
    DownstreamDelivery.objects.filter(pk__in=waiting).update(next_attempt_at=now)
    request.retried_at = now
    request._history_user = actor
    request._change_reason = f"Retry now: {len(waiting)} downstream(s) waiting"
    request.save()
    return waiting


@transaction.atomic
def deletion_request_extend(*, request_id, reason: object, actor=None):
    """Extend the deadline by two months, once, with the reason told to the customer
    (GDPR Art. 12(3))."""
    request = DeletionRequest.objects.select_for_update().get(pk=request_id)
    text = reason.strip() if isinstance(reason, str) else ""
    if not text:
        raise ValidationError(
            {"reason": "Say why more time is needed; the customer must be told."}
        )
    if not request.is_open:
        raise ValidationError("This request is completed: there is nothing to extend.")
    if request.extended_at is not None:
        raise ValidationError(
            "The deadline was already extended once; the law allows no more."
        )
    previous = request.due_at
    request.due_at = previous + relativedelta(months=settings.DELETION_EXTENSION_MONTHS)
    request.extended_at = timezone.now()
    request.extension_reason = text
    request._history_user = actor
    request._change_reason = text
    request.save()
    _event(
        request,
        EventKind.EXTENDED,
        actor=actor,
        previous_due_at=previous.isoformat(),
        due_at=request.due_at.isoformat(),
        reason=text,
    )
    return request


# Downstreams ----------------------------------------------------------------------


def _clean_downstream(name: object, url: object, secret: object) -> dict:
    errors: dict[str, str] = {}
    name = name.strip() if isinstance(name, str) else ""
    url = url.strip() if isinstance(url, str) else ""
    secret = secret.strip() if isinstance(secret, str) else ""
    if not name:
        errors["name"] = "Give the downstream a name, e.g. crm or data-warehouse."
    elif len(name) > 100:
        errors["name"] = "At most 100 characters."
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        errors["url"] = "Give an http:// or https:// URL."
    if len(secret) < 16:
        errors["secret"] = "Use a secret of at least 16 characters."  # noqa: S105
    elif len(secret) > 200:
        errors["secret"] = "At most 200 characters."  # noqa: S105
    if errors:
        raise ValidationError(errors)
    return {"name": name, "url": url, "secret": secret}


def _name_taken(name: str, *, exclude_pk=None) -> None:
    clash = Downstream.objects.filter(name__iexact=name).exclude(pk=exclude_pk).first()
    if clash:
        raise ConflictError(
            f"A downstream called {clash.name!r} exists already.",
            fields={"name": ["This name is taken."]},
        )


@transaction.atomic
def downstream_create(
    *, name, url, secret, is_active: bool = True, actor=None
) -> Downstream:
    """Register a system to tell about every new deletion request."""
    data = _clean_downstream(name, url, secret)
    _name_taken(data["name"])
    downstream = Downstream(**data, is_active=bool(is_active), created_by=actor)
    downstream._history_user = actor
    downstream._change_reason = f"Downstream {downstream.name} added"
    downstream.save()
    return downstream


@transaction.atomic
def downstream_update(
    *, downstream_id: int, name, url, secret=None, is_active: bool, actor=None
) -> Downstream:
    """Change a downstream; an empty secret keeps the current one."""
    downstream = Downstream.objects.select_for_update().get(pk=downstream_id)
    data = _clean_downstream(name, url, secret or downstream.secret)
    _name_taken(data["name"], exclude_pk=downstream.pk)
    data["is_active"] = bool(is_active)
    # The secret is kept out of the history, so the reason says it was replaced.
    changed = [
        "secret replaced" if field == "secret" else field
        for field, value in data.items()
        if getattr(downstream, field) != value
    ]
    for field, value in data.items():
        setattr(downstream, field, value)
    downstream._history_user = actor
    downstream._change_reason = f"Downstream changed: {', '.join(changed) or 'nothing'}"
    downstream.save()
    return downstream


# Deadlines -------------------------------------------------------------------------


def send_deadline_digest(*, now: datetime | None = None) -> int:
    """E-mail privacy officers the open requests past the flag age (20 days).

    Returns how many requests it listed; sends nothing when there are none.
    """
    from django.contrib.auth import get_user_model
    from django.core.mail import send_mail
    from django.urls import reverse

    from opsconsole.auth import PRIVACY_OFFICER

    from . import selectors

    now = now or timezone.now()
    flagged = list(selectors.flagged_requests(now))
    if not flagged:
        return 0
    officers = (
        get_user_model()
        .objects.filter(groups__name=PRIVACY_OFFICER, is_active=True)
        .exclude(email="")
        .values_list("email", flat=True)
    )
    recipients = sorted({*officers, *settings.DEADLINE_DIGEST_RECIPIENTS})
    if not recipients:
        logger.warning("Deadline digest: %d flagged, nobody to tell", len(flagged))
        return len(flagged)
    lines = [
        f"{len(flagged)} deletion request(s) open for more than "
        f"{settings.DELETION_FLAG_AFTER_DAYS} days:",
        "",
    ]
    for request in flagged:
        left = selectors.days_left(request, now)
        when = f"{left} days left" if left >= 0 else f"{-left} days OVERDUE"
        lines.append(
            f"- {request.id}: received {request.received_at:%Y-%m-%d}, due "
            f"{request.due_at:%Y-%m-%d} ({when}), "
            f"{selectors.progress_percent(request)}% done. "
            f"{settings.CONSOLE_URL.rstrip('/')}"
            f"{reverse('privacy:request_detail', args=[request.id])}"
        )
    send_mail(
        subject=f"[OpsConsole] {len(flagged)} deletion request(s) near their deadline",
        message="\n".join(lines),
        from_email=None,
        recipient_list=recipients,
    )
    return len(flagged)
