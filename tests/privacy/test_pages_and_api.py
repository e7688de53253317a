"""Privacy pages and the opt-out endpoints: who may do what, forms, empty states."""

import json

import pytest
from django.test import Client

from opsconsole.customer_ids import hash_customer_id
from overrides.models import OptOut
from privacy import services
from privacy.models import DeletionRequest, Downstream

pytestmark = pytest.mark.usefixtures("eager_tasks")

OPTOUTS = "/api/v1/privacy/optouts"
WITHDRAW = "/api/v1/privacy/optouts/withdraw"
EXPORT = "/api/v1/privacy/optouts/training-export"
SECRET = "s3cret-shared-with-downstream"


def _post(client, url, body):
    return client.post(url, json.dumps(body), content_type="application/json")


@pytest.fixture
def privacy_client(api_key_for):
    return Client(HTTP_AUTHORIZATION=f"Bearer {api_key_for('privacy:write')}")


# Opt-out API ----------------------------------------------------------------------


def test_optouts_api__register_then_withdraw(privacy_client):
    body = {"customer_id": "cust-1", "kinds": ["personalization"], "source": "ZD-1"}
    first = _post(privacy_client, OPTOUTS, body)
    assert first.status_code == 200
    assert first.json() == {
        "changed": ["personalization"],
        "active": ["personalization"],
    }
    again = _post(privacy_client, OPTOUTS, body).json()
    assert again == {"changed": [], "active": ["personalization"]}
    withdrawn = _post(privacy_client, WITHDRAW, body).json()
    assert withdrawn == {"changed": ["personalization"], "active": []}
    assert OptOut.objects.count() == 1  # kept, marked withdrawn


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"customer_id": "", "kinds": ["training"], "source": "T"}, "customer_id"),
        ({"customer_id": "c 1", "kinds": ["training"], "source": "T"}, "customer_id"),
        ({"customer_id": "c-1", "kinds": ["marketing"], "source": "T"}, "kinds"),
        ({"customer_id": "c-1", "kinds": [], "source": "T"}, "kinds"),
        ({"customer_id": "c-1", "kinds": ["training"], "source": ""}, "source"),
    ],
)
def test_optouts_api__bad_input__400_and_nothing_written(privacy_client, body, field):
    response = _post(privacy_client, OPTOUTS, body)
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    assert not OptOut.objects.exists()


def test_training_export__active_training_hashes_only(privacy_client):
    for customer, kinds in (("a", ["training"]), ("b", ["personalization"])):
        _post(
            privacy_client,
            OPTOUTS,
            {"customer_id": customer, "kinds": kinds, "source": "T"},
        )
    _post(
        privacy_client,
        OPTOUTS,
        {"customer_id": "c", "kinds": ["training"], "source": "T"},
    )
    _post(
        privacy_client,
        WITHDRAW,
        {"customer_id": "c", "kinds": ["training"], "source": "T"},
    )
    response = privacy_client.get(EXPORT)
    assert response.status_code == 200
    lines = b"".join(response.streaming_content).decode().split()
    assert lines == [hash_customer_id("a")]


@pytest.mark.parametrize(
    ("scopes", "expected"),
    [
        (("privacy:write",), 202),
        (("serving:read",), 403),
        (("explanations:read",), 403),
    ],
)
def test_deletion_api__key_scopes(api_key_for, scopes, expected):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {api_key_for(*scopes)}")
    response = _post(
        client, "/api/v1/privacy/deletion-requests", {"customer_id": "c", "source": "T"}
    )
    assert response.status_code == expected


def test_deletion_api__anonymous_401_and_people_by_role(client_for, users):
    url = "/api/v1/privacy/deletion-requests"
    body = json.dumps({"customer_id": "c", "source": "T"})
    assert Client().post(url, body, content_type="application/json").status_code == 401
    manager = client_for(users["account_manager"])
    assert manager.post(url, body, content_type="application/json").status_code == 403
    agent = client_for(users["support_agent"])
    created = agent.post(url, body, content_type="application/json")
    assert created.status_code == 202
    detail = f"{url}/{created.json()['id']}"
    assert agent.get(detail).status_code == 403  # intake, but not other requests
    assert client_for(users["privacy_officer"]).get(detail).status_code == 200


# Pages ----------------------------------------------------------------------------


def test_request_list__empty_state_then_rows(client_for, officer):
    client = client_for(officer)
    page = client.get("/privacy/")
    assert page.status_code == 200
    assert b"No deletion requests yet" in page.content
    assert page["Cache-Control"].startswith("max-age=0")
    services.deletion_request_create(customer_id="cust-1", source="ZD-77")
    page = client.get("/privacy/")
    assert b"ZD-77" in page.content and b"days left" in page.content


def test_request_list__search_by_customer_id_posts_and_hashes(client_for, officer):
    request = services.deletion_request_create(customer_id="cust-1", source="ZD-77")
    services.deletion_request_create(customer_id="cust-2", source="ZD-78")
    client = client_for(officer)
    found = client.post("/privacy/", {"customer_id": "cust-1"})
    assert request.short_id.encode() in found.content
    assert b"ZD-78" not in found.content
    none = client.post("/privacy/", {"customer_id": "cust-9"})
    assert b"No deletion request for this customer" in none.content


def test_intake_page__officer_goes_to_the_detail(client_for, officer):
    response = client_for(officer).post(
        "/privacy/requests/new/",
        {"customer_id": "cust-1", "source": "ZD-1", "identity_verified": "on"},
        follow=True,
    )
    request = DeletionRequest.objects.get()
    assert response.redirect_chain[-1][0] == f"/privacy/requests/{request.pk}/"
    assert b"Timeline" in response.content
    assert b"Request received" in response.content


def test_intake_page__agent_gets_a_reference_but_no_access(client_for, agent):
    client = client_for(agent)
    assert client.get("/privacy/").url == "/privacy/requests/new/"
    response = client.post(
        "/privacy/requests/new/",
        {"customer_id": "cust-1", "source": "ZD-1", "identity_verified": "on"},
    )
    request = DeletionRequest.objects.get()
    assert response.status_code == 200
    assert str(request.pk).encode() in response.content
    assert client.get(f"/privacy/requests/{request.pk}/").status_code == 403
    assert (
        client.get(f"/privacy/requests/{request.pk}/evidence.json").status_code == 403
    )


def test_intake_page__identity_not_verified__refused(client_for, officer):
    response = client_for(officer).post(
        "/privacy/requests/new/", {"customer_id": "cust-1", "source": "ZD-1"}
    )
    assert b"Verify the customer" in response.content
    assert not DeletionRequest.objects.exists()


def test_intake_page__duplicate__error_names_the_open_request(client_for, officer):
    first = services.deletion_request_create(customer_id="cust-1", source="ZD-1")
    response = client_for(officer).post(
        "/privacy/requests/new/",
        {"customer_id": "cust-1", "source": "ZD-2", "identity_verified": "on"},
    )
    assert str(first.pk).encode() in response.content
    assert DeletionRequest.objects.count() == 1


def test_detail_page__extend_and_retry(client_for, officer, downstream_server):
    server = downstream_server(fail_first=1)
    services.downstream_create(name="crm", url=server.url(), secret=SECRET)
    request = services.deletion_request_create(customer_id="cust-1", source="ZD-1")
    client = client_for(officer)
    page = client.get(f"/privacy/requests/{request.pk}/")
    assert b"crm" in page.content and b"Extend the deadline" in page.content
    refused = client.post(f"/privacy/requests/{request.pk}/extend/", {"reason": ""})
    assert refused.status_code == 400
    client.post(f"/privacy/requests/{request.pk}/extend/", {"reason": "Many systems"})
    request.refresh_from_db()
    assert request.extension_reason == "Many systems"
    client.post(f"/privacy/requests/{request.pk}/retry/")  # fails (first call)
    client.post(f"/privacy/requests/{request.pk}/retry/")  # acknowledged
    assert request.deliveries.get().status == "acknowledged"
    assert (
        client.get(
            "/privacy/requests/00000000-0000-0000-0000-000000000000/"
        ).status_code
        == 404
    )


def test_optout_page__agent_registers_but_cannot_withdraw_or_look_up(client_for, agent):
    client = client_for(agent)
    page = client.get("/privacy/optouts/")
    assert page.status_code == 200 and b"Recent opt-outs" not in page.content
    client.post(
        "/privacy/optouts/",
        {
            "action": "register",
            "customer_id": "cust-1",
            "kinds": ["training"],
            "source": "T",
        },
    )
    assert OptOut.objects.filter(withdrawn_at__isnull=True).count() == 1
    response = client.post(
        "/privacy/optouts/",
        {
            "action": "withdraw",
            "customer_id": "cust-1",
            "kinds": ["training"],
            "source": "T",
        },
    )
    assert response.status_code == 403  # refused before the form is validated
    assert OptOut.objects.filter(withdrawn_at__isnull=True).count() == 1
    assert (
        client.post("/privacy/optouts/", {"search-customer_id": "cust-1"}).status_code
        == 403
    )


def test_optout_page__officer_looks_up_and_withdraws(client_for, officer):
    client = client_for(officer)
    client.post(
        "/privacy/optouts/",
        {
            "action": "register",
            "customer_id": "cust-1",
            "kinds": ["training", "personalization"],
            "source": "T",
        },
    )
    found = client.post("/privacy/optouts/", {"search-customer_id": "cust-1"})
    assert found.content.count(b"badge-active") >= 2
    client.post(
        "/privacy/optouts/",
        {
            "action": "withdraw",
            "customer_id": "cust-1",
            "kinds": ["training"],
            "source": "T2",
        },
    )
    assert OptOut.objects.filter(withdrawn_at__isnull=True).count() == 1
    bad = client.post(
        "/privacy/optouts/",
        {"action": "register", "customer_id": "", "kinds": [], "source": ""},
    )
    assert bad.status_code == 400 and b"Pick at least one kind" in bad.content


def test_downstream_pages__create_validate_edit(client_for, officer, users):
    client = client_for(officer)
    assert b"No downstream systems" in client.get("/privacy/downstreams/").content
    bad = client.post(
        "/privacy/downstreams/new/",
        {
            "name": "crm",
            "url": "ftp://files.example.com/x",
            "secret": "short",
            "is_active": "on",
        },
    )
    assert b"at least 16 characters" in bad.content
    client.post(
        "/privacy/downstreams/new/",
        {
            "name": "crm",
            "url": "https://crm.example/delete",
            "secret": SECRET,
            "is_active": "on",
        },
    )
    downstream = Downstream.objects.get()
    clash = client.post(
        "/privacy/downstreams/new/",
        {"name": "CRM", "url": "https://x.example", "secret": SECRET},
    )
    assert b"exists already" in clash.content
    client.post(
        f"/privacy/downstreams/{downstream.pk}/",
        {"name": "crm", "url": "https://crm.example/v2", "secret": ""},
    )
    downstream.refresh_from_db()
    assert downstream.url == "https://crm.example/v2"
    assert downstream.secret == SECRET  # empty keeps it
    assert downstream.is_active is False
    assert (
        SECRET.encode()
        not in client.get(f"/privacy/downstreams/{downstream.pk}/").content
    )
    assert (
        client_for(users["support_agent"]).get("/privacy/downstreams/").status_code
        == 403
    )


def test_dashboard__officer_sees_flagged_requests(client_for, officer):
    from datetime import timedelta

    from django.utils import timezone

    services.deletion_request_create(
        customer_id="cust-1",
        source="ZD-OLD",
        received_at=timezone.now() - timedelta(days=22),
    )
    page = client_for(officer).get("/")
    assert b"near their deadline" in page.content and b"ZD-OLD" in page.content
