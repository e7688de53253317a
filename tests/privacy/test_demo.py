"""The privacy demo data shows every state: done, waiting on a downstream, flagged."""

import pytest

from privacy import demo, selectors
from privacy.models import DeletionRequest, Downstream, RequestStatus


@pytest.mark.usefixtures("eager_tasks")
def test_demo__three_states_and_idempotent(
    officer, agent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        demo.load(officer=officer, agent=agent)
    statuses = sorted(DeletionRequest.objects.values_list("status", flat=True))
    assert statuses == [
        RequestStatus.COMPLETED,
        RequestStatus.IN_PROGRESS,
        RequestStatus.IN_PROGRESS,
    ]
    waiting = DeletionRequest.objects.filter(status=RequestStatus.IN_PROGRESS)
    assert all(request.deliveries.get().last_error for request in waiting)
    assert selectors.privacy_dashboard()["flagged"] == 1
    assert not Downstream.objects.get().is_active
    assert demo.load(officer=officer, agent=agent) == [
        "privacy demo data already loaded"
    ]
    assert DeletionRequest.objects.count() == 3
