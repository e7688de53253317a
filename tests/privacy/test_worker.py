"""Deletion end to end with a real Celery worker, PostgreSQL, Redis and local HTTP
downstreams; then the same with the worker SIGKILLed and Redis restarted mid-run."""

import os
import signal
import time

import pytest
from django.conf import settings

from privacy import services
from privacy.models import (
    DeletionRequest,
    DeliveryStatus,
    DownstreamDelivery,
    EventKind,
    EvidenceEvent,
    RequestStatus,
)
from privacy.tasks import sweep_deletion_requests
from tests.conftest import start_celery_worker, stop_celery_worker, wait_until

pytestmark = pytest.mark.services

SECRET = "s3cret-shared-with-downstream"
WORKER_ENV = {
    "DOWNSTREAM_RETRY_BASE_SECONDS": "0.2",
    "DOWNSTREAM_RETRY_MAX_SECONDS": "1",
    "DOWNSTREAM_TIMEOUT_SECONDS": "3",
}


def _all_completed(count: int) -> bool:
    return (
        DeletionRequest.objects.filter(status=RequestStatus.COMPLETED).count() == count
    )


def _assert_everything_done(servers, count: int) -> None:
    requests = DeletionRequest.objects.all()
    assert requests.count() == count
    assert all(request.encrypted_customer_id is None for request in requests)
    deliveries = DownstreamDelivery.objects.all()
    assert deliveries.count() == count * len(servers)
    assert {delivery.status for delivery in deliveries} == {DeliveryStatus.ACKNOWLEDGED}
    for delivery in deliveries:
        acknowledgements = EvidenceEvent.objects.filter(
            request_id=delivery.request_id,
            kind=EventKind.DOWNSTREAM_ACKNOWLEDGED,
            detail__idempotency_key=delivery.idempotency_key,
        )
        assert acknowledgements.count() == 1, delivery.idempotency_key
    for server in servers:
        bodies = server.bodies_by_key()
        assert len(bodies) == count
        # Every attempt for one key carried the same bytes...
        assert all(len(variants) == 1 for variants in bodies.values())
        # ...and each key was processed exactly once downstream.
        assert set(server.processed.values()) == {1}


def _sweep_until_done(count: int, timeout: float) -> None:
    def swept_and_done():
        sweep_deletion_requests()
        return _all_completed(count)

    wait_until(swept_and_done, timeout=timeout, interval=1.0)


def test_deletion_end_to_end__downstream_fails_twice__all_complete(
    transactional_db, private_broker, downstream_server, tmp_path
):
    servers = [downstream_server(fail_first=2) for _ in range(2)]
    for index, server in enumerate(servers):
        services.downstream_create(name=f"ds-{index}", url=server.url(), secret=SECRET)
    worker = start_celery_worker(
        settings.CELERY_TASK_DEFAULT_QUEUE,
        tmp_path / "worker.log",
        extra_env={**WORKER_ENV, "CELERY_BROKER_URL": private_broker.url},
    )
    try:
        for index in range(5):
            services.deletion_request_create(customer_id=f"cust-{index}", source="T")
        wait_until(lambda: _all_completed(5), timeout=60, interval=0.3)
    finally:
        stop_celery_worker(worker)
    _assert_everything_done(servers, 5)
    for server in servers:
        assert len(server.calls) == 5 * 3  # two failures, then the acknowledgement
    first = DeletionRequest.objects.first()
    kinds = list(first.events.values_list("kind", flat=True))
    assert kinds.count(EventKind.DOWNSTREAM_FAILED) == 4


def test_deletion__worker_sigkilled_and_redis_restarted__nothing_lost(
    transactional_db, private_broker, downstream_server, tmp_path, settings
):
    settings.DELETION_SWEEP_GRACE_SECONDS = 2
    count = 12
    servers = [downstream_server(fail_first=1, delay=0.15) for _ in range(3)]
    for index, server in enumerate(servers):
        services.downstream_create(name=f"ds-{index}", url=server.url(), secret=SECRET)
    log = tmp_path / "worker.log"
    env = {**WORKER_ENV, "CELERY_BROKER_URL": private_broker.url}
    worker = start_celery_worker(settings.CELERY_TASK_DEFAULT_QUEUE, log, extra_env=env)
    try:
        for index in range(count):
            services.deletion_request_create(customer_id=f"cust-{index}", source="T")
        # Kill the worker while it is calling downstreams, mid-run.
        wait_until(lambda: sum(len(s.calls) for s in servers) >= 10, timeout=60)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        assert not _all_completed(count)
        # Redis restarts without persistence: every queued message is gone.
        private_broker.restart()
        time.sleep(1)
        worker = start_celery_worker(
            settings.CELERY_TASK_DEFAULT_QUEUE, log, extra_env=env
        )
        # Restart Redis again under the running worker; it reconnects.
        private_broker.restart()
        # Beat's sweeper finds what the lost tasks left and enqueues it again.
        _sweep_until_done(count, timeout=150)
    finally:
        stop_celery_worker(worker)
    _assert_everything_done(servers, count)
