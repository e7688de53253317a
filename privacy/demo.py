"""Demo privacy data: a finished deletion request, one waiting on a downstream that
is down, and one near its deadline, so every state of the pages has an example."""

from datetime import timedelta

from django.utils import timezone

from opsconsole.customer_ids import hash_customer_id

from . import services
from .models import DeletionRequest

# Customers of their own: deleting them must not touch the other demo data.
FINISHED, WAITING, OLD = "demo-forget-0001", "demo-forget-0002", "demo-forget-0003"
UNREACHABLE_URL = "http://127.0.0.1:9/opsconsole-demo"  # nothing listens on port 9
DEMO_SECRET = "demo-only-secret-0123456789"  # noqa: S105


def load(*, officer, agent) -> list[str]:
    """Requests are processed when the caller's transaction commits (tasks in-process
    in the demo): the first has no downstream and completes; the other two meet the
    unreachable one, which is then switched off so requests filed later complete."""
    if DeletionRequest.objects.filter(
        customer_hash=hash_customer_id(FINISHED)
    ).exists():
        return ["privacy demo data already loaded"]
    now = timezone.now()
    services.deletion_request_create(
        customer_id=FINISHED,
        source="ZD-30211",
        received_at=now - timedelta(days=3),
        actor=officer,
    )
    warehouse = services.downstream_create(
        name="data-warehouse-demo",
        url=UNREACHABLE_URL,
        secret=DEMO_SECRET,
        actor=officer,
    )
    services.deletion_request_create(
        customer_id=WAITING,
        source="ZD-30455",
        received_at=now - timedelta(hours=5),
        actor=agent,
    )
    services.deletion_request_create(
        customer_id=OLD,
        source="ZD-29870",
        received_at=now - timedelta(days=24),
        actor=officer,
    )
    services.downstream_update(
        downstream_id=warehouse.pk,
        name=warehouse.name,
        url=warehouse.url,
        is_active=False,
        actor=officer,
    )
    return ["3 deletion requests: done, waiting on a downstream, near its deadline"]
