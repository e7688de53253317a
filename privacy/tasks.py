"""Background jobs for deletion requests. Thin: each calls services with ids only.

Task arguments are request and delivery ids, never a customer id. Every task is
idempotent and acks late; the sweeper re-enqueues what a lost task left unfinished.
"""

import logging

from celery import shared_task

from . import selectors, services
from .models import DeletionRequest

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def process_deletion_request(request_id: str) -> int:
    """Delete the console's data for a request, then call each waiting downstream."""
    try:
        services.delete_console_data(request_id=request_id)
    except DeletionRequest.DoesNotExist:
        return 0
    waiting = selectors.waiting_delivery_ids(request_id)
    for delivery_id in waiting:
        deliver_to_downstream.delay(delivery_id)
    return len(waiting)


@shared_task(acks_late=True)
def deliver_to_downstream(delivery_id: int) -> bool:
    """Call one downstream once; schedule the next attempt with backoff on failure.

    In-process (eager) mode does not schedule retries, which would run at once: the
    sweeper or the request page's "Retry now" tries again there.
    """
    outcome = services.attempt_delivery(delivery_id=delivery_id)
    eager = deliver_to_downstream.app.conf.task_always_eager
    if outcome.retry_in is not None and not eager:
        deliver_to_downstream.apply_async((delivery_id,), countdown=outcome.retry_in)
    return outcome.acknowledged


@shared_task(acks_late=True)
def sweep_deletion_requests() -> int:
    """Re-enqueue unfinished steps whose task was lost (killed worker, lost Redis)."""
    found = services.sweep_unfinished()
    for request_id in found.requests:
        process_deletion_request.delay(request_id)
    for delivery_id in found.deliveries:
        deliver_to_downstream.delay(delivery_id)
    if found.requests or found.deliveries:
        logger.info(
            "Sweeper re-enqueued %d request(s) and %d delivery(ies)",
            len(found.requests),
            len(found.deliveries),
        )
    return len(found.requests) + len(found.deliveries)


@shared_task(acks_late=True)
def send_deadline_digest() -> int:
    """E-mail the open requests near or past their deadline (daily)."""
    return services.send_deadline_digest()
