"""Deletion requests: intake, the console's deletion, downstream calls, evidence."""

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from explanations import services as explanation_services
from explanations.models import Explanation, Prediction
from opsconsole.customer_ids import hash_customer_id
from opsconsole.errors import ConflictError
from overrides.models import OptOut
from privacy import selectors, services
from privacy.models import (
    DeletionRequest,
    DeliveryStatus,
    DownstreamDelivery,
    EventKind,
    EvidenceEvent,
    RequestStatus,
)
from privacy.tasks import deliver_to_downstream, sweep_deletion_requests
from tests.explanations.conftest import ROW

pytestmark = pytest.mark.usefixtures("eager_tasks")

REQUESTS = "/api/v1/privacy/deletion-requests"
RANK = "/api/v1/serving/rank"
CHECK = "/api/v1/serving/optouts/check"
SECRET = "s3cret-shared-with-downstream"


@pytest.fixture
def privacy_client(api_key_for):
    return Client(HTTP_AUTHORIZATION=f"Bearer {api_key_for('privacy:write')}")


def _post(client, url, body):
    return client.post(url, json.dumps(body), content_type="application/json")


def _file(client, customer_id="cust-42", **extra):
    return _post(
        client, REQUESTS, {"customer_id": customer_id, "source": "ZD-1", **extra}
    )


def _log_predictions(register, customer_id: str, count: int = 3):
    from explanations.models import ModelVersion

    version = ModelVersion.objects.filter(name="propensity").first() or register(
        "lightgbm-classifier", name="propensity"
    )
    explanation_services.log_predictions(
        records=[
            {
                "prediction_id": f"{customer_id}-p{index}",
                "model": version.name,
                "model_version": version.version,
                "customer_id": customer_id,
                "features": ROW,
                "output": 0.5,
            }
            for index in range(count)
        ]
    )
    explanation_services.explain_prediction(prediction_id=f"{customer_id}-p0")


def test_intake__202_with_due_date__opted_out_of_everything_at_once(
    privacy_client, serving_client, django_capture_on_commit_callbacks
):
    received = "2026-01-31T10:00:00Z"
    response = _file(privacy_client, received_at=received)
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "pending"
    assert body["due_at"].startswith("2026-02-28T10:00:00")  # one calendar month
    request = DeletionRequest.objects.get(pk=body["id"])
    assert request.customer_hash == hash_customer_id("cust-42")
    assert set(
        OptOut.objects.filter(
            customer_hash=request.customer_hash, withdrawn_at__isnull=True
        ).values_list("kind", flat=True)
    ) == {"personalization", "training"}
    rank = _post(
        serving_client,
        RANK,
        {"customer_id": "cust-42", "candidates": [{"item_id": "a", "score": 1.0}]},
    )
    assert rank.json()["personalized"] is False
    check = _post(serving_client, CHECK, {"customer_ids": ["cust-42", "cust-43"]})
    assert "cust-42" in json.dumps(check.json())
    assert "cust-43" not in json.dumps(check.json())


def test_intake__no_downstreams__console_data_deleted_and_completed(
    privacy_client, register, django_capture_on_commit_callbacks
):
    _log_predictions(register, "cust-42")
    _log_predictions(register, "cust-other", count=1)
    with django_capture_on_commit_callbacks(execute=True):
        response = _file(privacy_client)
    request = DeletionRequest.objects.get(pk=response.json()["id"])
    assert request.status == RequestStatus.COMPLETED
    assert request.encrypted_customer_id is None
    assert not Prediction.objects.filter(customer_hash=request.customer_hash).exists()
    assert Prediction.objects.filter(prediction_id="cust-other-p0").exists()
    assert Explanation.objects.filter(
        prediction__prediction_id="cust-other-p0"
    ).exists()
    deleted = request.events.get(kind=EventKind.CONSOLE_DATA_DELETED).detail
    assert deleted["predictions"] == 3
    assert deleted["explanations"] == 1
    kinds = list(request.events.values_list("kind", flat=True))
    assert kinds == [
        EventKind.RECEIVED,
        EventKind.OPTED_OUT,
        EventKind.CONSOLE_DATA_DELETED,
        EventKind.RAW_ID_ERASED,
        EventKind.COMPLETED,
    ]


def test_delivery__fails_twice_then_acknowledged__same_signed_payload_each_time(
    privacy_client, downstream_server, settings, django_capture_on_commit_callbacks
):
    server = downstream_server(fail_first=2)
    downstream = services.downstream_create(name="crm", url=server.url(), secret=SECRET)
    with django_capture_on_commit_callbacks(execute=True):
        request_id = _file(privacy_client).json()["id"]
    delivery = DownstreamDelivery.objects.get(request_id=request_id)
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.attempts == 1
    assert delivery.last_status_code == 500
    assert delivery.next_attempt_at > timezone.now()
    for _ in range(2):
        deliver_to_downstream(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.ACKNOWLEDGED
    assert delivery.attempts == 3
    request = DeletionRequest.objects.get(pk=request_id)
    assert request.status == RequestStatus.COMPLETED
    assert request.encrypted_customer_id is None and request.raw_id_erased_at

    assert len(server.calls) == 3
    assert server.bodies_by_key() == {
        delivery.idempotency_key: {server.calls[0]["body"]}
    }
    payload = json.loads(server.calls[0]["body"])
    assert payload == {
        "action": "delete",
        "request_id": request_id,
        "idempotency_key": f"{request_id}:{downstream.pk}",
        "customer_hash": hash_customer_id("cust-42"),
        "customer_id": "cust-42",
        "received_at": request.received_at.isoformat(),
        "due_at": request.due_at.isoformat(),
    }
    call = server.calls[-1]
    expected = hmac.new(
        SECRET.encode(),
        call["headers"]["X-OpsConsole-Timestamp"].encode() + b"." + call["body"],
        hashlib.sha256,
    ).hexdigest()
    assert call["headers"]["X-OpsConsole-Signature"] == f"sha256={expected}"
    assert call["headers"]["Idempotency-Key"] == delivery.idempotency_key
    assert delivery.payload_sha256 == hashlib.sha256(call["body"]).hexdigest()
    failures = request.events.filter(kind=EventKind.DOWNSTREAM_FAILED)
    assert [event.detail["attempt"] for event in failures] == [1, 2]
    assert request.events.filter(kind=EventKind.DOWNSTREAM_ACKNOWLEDGED).count() == 1


def test_delivery__unreachable_downstream__recorded_and_retried_with_backoff(
    privacy_client, settings, django_capture_on_commit_callbacks
):
    settings.DOWNSTREAM_RETRY_BASE_SECONDS = 10
    services.downstream_create(
        name="gone", url="http://127.0.0.1:9/nothing-listens", secret=SECRET
    )
    with django_capture_on_commit_callbacks(execute=True):
        request_id = _file(privacy_client).json()["id"]
    delivery = DownstreamDelivery.objects.get(request_id=request_id)
    assert delivery.last_error == "ConnectionError"
    assert delivery.status == DeliveryStatus.PENDING
    first_wait = delivery.next_attempt_at - delivery.last_attempt_at
    deliver_to_downstream(delivery.pk)
    delivery.refresh_from_db()
    second_wait = delivery.next_attempt_at - delivery.last_attempt_at
    assert first_wait == pytest.approx(timedelta(seconds=10), abs=timedelta(seconds=1))
    assert second_wait == pytest.approx(timedelta(seconds=20), abs=timedelta(seconds=1))
    request = DeletionRequest.objects.get(pk=request_id)
    assert request.status == RequestStatus.IN_PROGRESS
    assert request.encrypted_customer_id is not None


def test_retry_delay__doubles_up_to_the_cap(settings):
    settings.DOWNSTREAM_RETRY_BASE_SECONDS = 10
    settings.DOWNSTREAM_RETRY_MAX_SECONDS = 60
    assert [services.retry_delay(n) for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 60, 60]


def test_delivery__leased__second_worker_does_not_call_again(
    db, downstream_server, settings
):
    server = downstream_server()
    services.downstream_create(name="crm", url=server.url(), secret=SECRET)
    request = services.deletion_request_create(customer_id="cust-1", source="T-1")
    delivery = request.deliveries.get()
    delivery.leased_until = timezone.now() + timedelta(seconds=30)
    delivery.save()
    outcome = services.attempt_delivery(delivery_id=delivery.pk)
    assert outcome.attempted is False
    assert server.calls == []


def test_delivery__already_acknowledged__repeat_task_is_harmless(db, downstream_server):
    server = downstream_server()
    services.downstream_create(name="crm", url=server.url(), secret=SECRET)
    request = services.deletion_request_create(customer_id="cust-1", source="T-1")
    delivery = request.deliveries.get()
    assert services.attempt_delivery(delivery_id=delivery.pk).acknowledged
    assert not services.attempt_delivery(delivery_id=delivery.pk).attempted
    assert services.delete_console_data(request_id=request.pk).status == "completed"
    services.delete_console_data(request_id=request.pk)
    assert len(server.calls) == 1
    assert request.events.filter(kind=EventKind.CONSOLE_DATA_DELETED).count() == 1


def test_inactive_downstream__not_told_about_new_requests(db, downstream_server):
    server = downstream_server()
    downstream = services.downstream_create(name="crm", url=server.url(), secret=SECRET)
    services.downstream_update(
        downstream_id=downstream.pk,
        name="crm",
        url=server.url(),
        is_active=False,
    )
    request = services.deletion_request_create(customer_id="cust-1", source="T-1")
    assert not request.deliveries.exists()


def test_downstream_update__secret_and_flag_changed__reason_names_them(db):
    downstream = services.downstream_create(
        name="crm", url="https://crm.example.com/hook", secret=SECRET
    )

    services.downstream_update(
        downstream_id=downstream.pk,
        name="crm",
        url="https://crm.example.com/hook",
        secret="another-secret-of-enough-length-1234",
        is_active=False,
    )

    record = downstream.history.latest()
    assert record.history_change_reason == (
        "Downstream changed: secret replaced, is_active"
    )


def test_sweeper__re_enqueues_lost_steps_once_per_grace_period(
    db, downstream_server, settings
):
    settings.DELETION_SWEEP_GRACE_SECONDS = 30
    server = downstream_server()
    services.downstream_create(name="crm", url=server.url(), secret=SECRET)
    # The intake's task was lost: nothing ran after the commit.
    request = services.deletion_request_create(customer_id="cust-1", source="T-1")
    assert services.sweep_unfinished().requests == []  # not late yet
    later = timezone.now() + timedelta(seconds=31)
    found = services.sweep_unfinished(now=later)
    assert found.requests == [str(request.pk)]
    assert found.deliveries == [request.deliveries.get().pk]
    assert services.sweep_unfinished(now=later).deliveries == []  # handed out
    DeletionRequest.objects.filter(pk=request.pk).update(
        created_at=timezone.now() - timedelta(minutes=5)
    )
    DownstreamDelivery.objects.update(
        next_attempt_at=timezone.now() - timedelta(minutes=5)
    )
    assert sweep_deletion_requests() == 2  # runs both steps (eager)
    request.refresh_from_db()
    assert request.status == RequestStatus.COMPLETED
    assert len(server.calls) == 1


def test_sweeper__skips_a_leased_delivery(db, downstream_server):
    server = downstream_server()
    services.downstream_create(name="crm", url=server.url(), secret=SECRET)
    request = services.deletion_request_create(customer_id="cust-1", source="T-1")
    DownstreamDelivery.objects.update(
        next_attempt_at=timezone.now() - timedelta(hours=1),
        leased_until=timezone.now() + timedelta(minutes=1),
    )
    assert services.sweep_unfinished().deliveries == []
    assert request.deliveries.get().attempts == 0


# Bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"customer_id": "", "source": "ZD-1"}, "customer_id"),
        ({"customer_id": "has space", "source": "ZD-1"}, "customer_id"),
        ({"customer_id": "x" * 257, "source": "ZD-1"}, "customer_id"),
        ({"customer_id": "cust-1", "source": "  "}, "source"),
        ({"customer_id": "cust-1"}, "source"),
        ({"customer_id": 42, "source": "ZD-1"}, "customer_id"),
        (
            {"customer_id": "cust-1", "source": "ZD-1", "received_at": "yesterday"},
            "received_at",
        ),
        (
            {
                "customer_id": "cust-1",
                "source": "ZD-1",
                "received_at": "2099-01-01T00:00:00Z",
            },
            "received_at",
        ),
    ],
)
def test_intake__bad_input__400_naming_the_field_and_nothing_written(
    privacy_client, body, field
):
    response = _post(privacy_client, REQUESTS, body)
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    assert not DeletionRequest.objects.exists()
    assert not OptOut.objects.exists()


def test_intake__open_request_for_same_customer__409_naming_it(privacy_client):
    first = _file(privacy_client).json()["id"]
    response = _file(privacy_client, source="ZD-2")
    assert response.status_code == 409
    assert first in response.json()["error"]["message"]
    assert DeletionRequest.objects.count() == 1


def test_intake__after_the_first_completed__a_new_request_is_accepted(
    privacy_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        _file(privacy_client)
    assert _file(privacy_client, source="ZD-2").status_code == 202
    assert DeletionRequest.objects.count() == 2


def test_intake__service_conflict_error_names_the_request(db):
    first = services.deletion_request_create(customer_id="cust-1", source="T-1")
    with pytest.raises(ConflictError, match=str(first.pk)):
        services.deletion_request_create(customer_id="cust-1", source="T-2")


# Deadlines -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("received", "due"),
    [
        (datetime(2026, 1, 31, 9, tzinfo=UTC), datetime(2026, 2, 28, 9, tzinfo=UTC)),
        (datetime(2028, 1, 31, 9, tzinfo=UTC), datetime(2028, 2, 29, 9, tzinfo=UTC)),
        (datetime(2026, 3, 15, 9, tzinfo=UTC), datetime(2026, 4, 15, 9, tzinfo=UTC)),
        (datetime(2026, 12, 20, 9, tzinfo=UTC), datetime(2027, 1, 20, 9, tzinfo=UTC)),
    ],
)
def test_due_date__one_calendar_month(received, due):
    assert services.due_date(received) == due


def test_days_left_and_flag(db):
    now = timezone.now()
    request = services.deletion_request_create(
        customer_id="cust-1", source="T-1", received_at=now - timedelta(days=21)
    )
    request = selectors.deletion_request_detail(request.pk)
    assert selectors.is_flagged(request, now)
    assert not selectors.is_flagged(request, now - timedelta(days=2))
    assert selectors.days_left(request, now) == (request.due_at - now).days
    assert selectors.days_left(request, request.due_at + timedelta(days=3)) == -3
    assert selectors.privacy_dashboard(now) == {"open": 1, "flagged": 1, "overdue": 0}


def test_extend__once_by_two_months_with_reason(db, officer):
    request = services.deletion_request_create(customer_id="cust-1", source="T-1")
    due = request.due_at
    with pytest.raises(Exception, match="Say why"):
        services.deletion_request_extend(request_id=request.pk, reason=" ")
    extended = services.deletion_request_extend(
        request_id=request.pk, reason="Records in 14 systems", actor=officer
    )
    assert extended.due_at.month == ((due.month + 1) % 12) + 1
    with pytest.raises(Exception, match="already extended"):
        services.deletion_request_extend(request_id=request.pk, reason="again")
    event = extended.events.get(kind=EventKind.EXTENDED)
    assert event.actor == officer and event.detail["reason"] == "Records in 14 systems"


def test_deadline_digest__mails_officers_the_flagged_requests(db, officer, settings):
    settings.DEADLINE_DIGEST_RECIPIENTS = ["dpo@example.com"]
    officer.email = "officer@example.com"
    officer.save()
    assert services.send_deadline_digest() == 0
    assert mail.outbox == []
    old = services.deletion_request_create(
        customer_id="cust-1",
        source="T-1",
        received_at=timezone.now() - timedelta(days=25),
    )
    services.deletion_request_create(customer_id="cust-2", source="T-2")
    assert services.send_deadline_digest() == 1
    (message,) = mail.outbox
    assert set(message.to) == {"dpo@example.com", "officer@example.com"}
    assert str(old.pk) in message.body
    assert "cust-1" not in message.body


# Evidence and the detail endpoint ---------------------------------------------------


def test_detail_endpoint__status_per_downstream_and_timeline(
    privacy_client, downstream_server, django_capture_on_commit_callbacks
):
    server = downstream_server(fail_first=1)
    services.downstream_create(name="crm", url=server.url(), secret=SECRET)
    services.downstream_create(name="warehouse", url=server.url("/w"), secret=SECRET)
    with django_capture_on_commit_callbacks(execute=True):
        request_id = _file(privacy_client).json()["id"]
    body = privacy_client.get(f"{REQUESTS}/{request_id}").json()
    assert body["status"] == "in_progress"
    assert [d["name"] for d in body["downstreams"]] == ["crm", "warehouse"]
    assert {d["status"] for d in body["downstreams"]} == {"pending"}
    assert body["progress_percent"] == 33
    assert body["days_left"] >= 27
    assert [e["event"] for e in body["timeline"]][:3] == [
        "received",
        "opted_out",
        "console_data_deleted",
    ]
    assert "cust-42" not in json.dumps(body)
    assert (
        privacy_client.get(
            f"{REQUESTS}/00000000-0000-0000-0000-000000000000"
        ).status_code
        == 404
    )


def test_evidence_kept_after_the_request_completes_and_holds_no_raw_id(
    privacy_client, client_for, officer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        request_id = _file(privacy_client).json()["id"]
    client = client_for(officer)
    as_json = client.get(f"/privacy/requests/{request_id}/evidence.json")
    as_csv = client.get(f"/privacy/requests/{request_id}/evidence.csv")
    assert as_json.status_code == as_csv.status_code == 200
    assert as_json["Cache-Control"] == "no-store"
    document = as_json.json()
    assert document["status"] == "completed"
    assert [event["event"] for event in document["timeline"]][-1] == "completed"
    rows = as_csv.content.decode().splitlines()
    assert rows[0] == "at,event,actor,detail"
    assert len(rows) == 1 + EvidenceEvent.objects.filter(request_id=request_id).count()
    for content in (as_json.content, as_csv.content):
        assert b"cust-42" not in content
    assert client.get(f"/privacy/requests/{request_id}/evidence.xml").status_code == 404
