"""The API key pages: admins only; a new key is shown once and stored as a hash."""

import re

import pytest
from django.urls import reverse

from opsconsole import services
from opsconsole.models import ApiKey, ApiKeyScope
from opsconsole.services import hash_api_key

RAW_KEY = re.compile(r"opc_[A-Za-z0-9_-]{20,}")
SNAPSHOT = "/api/v1/serving/snapshot"


@pytest.fixture
def serving_key(admin_user):
    """(key, raw key) with serving:read, made through the service as the UI does."""
    return services.api_key_create(
        name="serving-eu-1", scopes=["serving:read"], actor=admin_user
    )


def _pages(key_id: int) -> list[str]:
    return [
        reverse("apikey_list"),
        reverse("apikey_create"),
        reverse("apikey_revoke", args=[key_id]),
    ]


def test_api_key_pages__anonymous__redirected_to_login(client, serving_key):
    key, _ = serving_key
    for url in _pages(key.pk):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response.url.startswith(reverse("login")), url


@pytest.mark.parametrize(
    "role", ["support_agent", "account_manager", "privacy_officer"]
)
def test_api_key_pages__other_roles__403_naming_the_admin_role(
    role, users, client_for, serving_key
):
    key, _ = serving_key
    client = client_for(users[role])
    for url in _pages(key.pk):
        for method in (client.get, client.post):
            response = method(url)
            assert response.status_code == 403, (url, method)
            body = response.content.decode()
            assert "This needs the admin role" in body, url
            assert f"You are signed in with: {role}" in body, url
    key.refresh_from_db()
    assert key.is_active
    assert ApiKey.objects.count() == 1


def test_api_key_pages__admin__each_page_opens(admin_user, client_for, serving_key):
    key, _ = serving_key
    client = client_for(admin_user)
    for url in _pages(key.pk):
        assert client.get(url).status_code == 200, url


def test_navigation__api_keys_only_for_admin(users, client_for):
    for role, user in users.items():
        nav = client_for(user).get(reverse("dashboard")).context["navigation"]
        labels = [entry["label"] for entry in nav]
        assert ("API keys" in labels) == (role == "admin"), (role, labels)


def test_api_key_list__empty__explains_how_to_create_one(admin_user, client_for):
    body = client_for(admin_user).get(reverse("apikey_list")).content.decode()
    assert "No API keys yet" in body
    assert reverse("apikey_create") in body


def test_api_key_list__shows_prefix_scopes_creator_and_status(
    admin_user, client_for, serving_key
):
    key, raw_key = serving_key
    other, _ = services.api_key_create(
        name="nightly-import", scopes=["overrides:write"], actor=admin_user
    )
    services.api_key_revoke(key_id=other.pk, actor=admin_user)
    body = client_for(admin_user).get(reverse("apikey_list")).content.decode()
    assert "serving-eu-1" in body and "nightly-import" in body
    assert f"{key.prefix}…" in body
    assert "serving:read" in body and "overrides:write" in body
    assert "Active" in body and "Revoked" in body
    assert "by admin" in body
    assert raw_key not in body
    assert reverse("apikey_revoke", args=[key.pk]) in body
    # A revoked key has nothing left to revoke.
    assert reverse("apikey_revoke", args=[other.pk]) not in body


def test_api_key_list__more_than_a_page__paginated_by_25(admin_user, client_for):
    for number in range(27):
        services.api_key_create(name=f"key-{number}", scopes=["serving:read"])
    client = client_for(admin_user)
    first = client.get(reverse("apikey_list"))
    assert len(first.context["keys"]) == 25
    assert "Page 1 of 2" in first.content.decode()
    second = client.get(reverse("apikey_list"), {"page": 2})
    assert len(second.context["keys"]) == 2


def test_api_key_list__query_count_does_not_grow_with_keys(
    admin_user, client_for, django_assert_max_num_queries
):
    for number in range(20):
        services.api_key_create(
            name=f"key-{number}", scopes=["serving:read"], actor=admin_user
        )
    client = client_for(admin_user)
    with django_assert_max_num_queries(8):
        client.get(reverse("apikey_list"))


def test_api_key_create__valid__shows_the_raw_key_once_and_stores_only_its_hash(
    admin_user, client_for
):
    response = client_for(admin_user).post(
        reverse("apikey_create"),
        {
            "name": "serving-eu-1",
            "scopes": ["serving:read", "explanations:read"],
            "rate_limit_per_minute": "1200",
        },
    )

    # The key is in this response, which no cache may keep...
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    body = response.content.decode()
    match = RAW_KEY.search(body)
    assert match, body
    raw_key = match.group(0)
    assert "will not be shown again" in body
    assert "Copy" in body

    # ...and the database only has its hash.
    key = ApiKey.objects.get()
    assert key.name == "serving-eu-1"
    assert key.scopes == ["explanations:read", "serving:read"]
    assert key.rate_limit_per_minute == 1200
    assert key.created_by == admin_user
    assert key.key_hash == hash_api_key(raw_key)
    for field in ApiKey._meta.concrete_fields:
        assert raw_key not in str(getattr(key, field.attname)), field.name
    assert key.user.username == "apikey:serving-eu-1"
    assert not key.user.has_usable_password()


def test_api_key_create__the_list_never_shows_the_raw_key_again(admin_user, client_for):
    client = client_for(admin_user)
    body = client.post(
        reverse("apikey_create"), {"name": "k1", "scopes": ["serving:read"]}
    ).content.decode()
    raw_key = RAW_KEY.search(body).group(0)
    for url in (reverse("apikey_list"), reverse("apikey_create")):
        assert raw_key not in client.get(url).content.decode()


def test_api_key_create__new_key_reads_the_snapshot(admin_user, client_for, client):
    body = (
        client_for(admin_user)
        .post(reverse("apikey_create"), {"name": "k1", "scopes": ["serving:read"]})
        .content.decode()
    )
    raw_key = RAW_KEY.search(body).group(0)
    response = client.get(SNAPSHOT, headers={"Authorization": f"Bearer {raw_key}"})
    assert response.status_code == 200


def test_api_key_create__duplicate_name__error_on_the_form_and_no_second_key(
    admin_user, client_for, serving_key
):
    response = client_for(admin_user).post(
        reverse("apikey_create"), {"name": "serving-eu-1", "scopes": ["serving:read"]}
    )
    assert response.status_code == 200
    errors = " ".join(response.context["form"].errors.get("name", []))
    assert "exists" in errors, response.context["form"].errors
    assert not RAW_KEY.search(response.content.decode())
    assert ApiKey.objects.count() == 1


def test_api_key_create__revoked_keys_name__still_taken(
    admin_user, client_for, serving_key
):
    key, _ = serving_key
    services.api_key_revoke(key_id=key.pk, actor=admin_user)
    response = client_for(admin_user).post(
        reverse("apikey_create"), {"name": "serving-eu-1", "scopes": ["serving:read"]}
    )
    assert "exists" in " ".join(response.context["form"].errors.get("name", []))
    assert ApiKey.objects.count() == 1


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"name": "k1"}, "scopes", "at least one scope"),
        ({"name": "k1", "scopes": ["root"]}, "scopes", "Select a valid choice"),
        ({"name": "", "scopes": ["serving:read"]}, "name", "required"),
        ({"name": "my key", "scopes": ["serving:read"]}, "name", "slug"),
        ({"name": "k" * 65, "scopes": ["serving:read"]}, "name", "at most 64"),
        (
            {"name": "k1", "scopes": ["serving:read"], "rate_limit_per_minute": "0"},
            "rate_limit_per_minute",
            "greater than or equal to 1",
        ),
        (
            {"name": "k1", "scopes": ["serving:read"], "rate_limit_per_minute": "x"},
            "rate_limit_per_minute",
            "whole number",
        ),
    ],
)
def test_api_key_create__bad_input__field_error_and_nothing_written(
    admin_user, client_for, data, field, message
):
    response = client_for(admin_user).post(reverse("apikey_create"), data)
    assert response.status_code == 200
    errors = " ".join(response.context["form"].errors.get(field, []))
    assert message in errors, response.context["form"].errors
    assert not ApiKey.objects.exists()
    assert not RAW_KEY.search(response.content.decode())


def test_api_key_create__form_lists_every_scope_with_its_label(admin_user, client_for):
    body = client_for(admin_user).get(reverse("apikey_create")).content.decode()
    assert len(ApiKeyScope.choices) == 6
    for scope, label in ApiKeyScope.choices:
        assert f'value="{scope}"' in body
        assert label in body


def test_api_key_revoke__get__asks_for_confirmation_and_changes_nothing(
    admin_user, client_for, serving_key
):
    key, _ = serving_key
    response = client_for(admin_user).get(reverse("apikey_revoke", args=[key.pk]))
    body = response.content.decode()
    assert "Revoke API key" in body and "serving-eu-1" in body
    assert "Yes, revoke serving-eu-1" in body
    key.refresh_from_db()
    assert key.is_active


def test_api_key_revoke__confirmed__revoked_and_the_key_gets_401(
    admin_user, client_for, client, serving_key, django_capture_on_commit_callbacks
):
    key, raw_key = serving_key
    bearer = {"Authorization": f"Bearer {raw_key}"}
    # Given the key works (and so sits in the lookup cache)
    assert client.get(SNAPSHOT, headers=bearer).status_code == 200

    # When an admin confirms the revocation
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(admin_user).post(
            reverse("apikey_revoke", args=[key.pk]), follow=True
        )

    # Then the list says so and the key is refused at once
    assert response.redirect_chain[-1][0] == reverse("apikey_list")
    assert "revoked" in response.content.decode()
    key.refresh_from_db()
    assert key.revoked_at is not None and key.revoked_by == admin_user
    refused = client.get(SNAPSHOT, headers=bearer)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthenticated"


def test_api_key_revoke__already_revoked__message_and_nothing_changes(
    admin_user, client_for, serving_key
):
    key, _ = serving_key
    services.api_key_revoke(key_id=key.pk, actor=admin_user)
    key.refresh_from_db()
    revoked_at = key.revoked_at
    client = client_for(admin_user)
    page = client.get(reverse("apikey_revoke", args=[key.pk])).content.decode()
    assert "nothing to revoke" in page
    assert "Yes, revoke" not in page

    response = client.post(reverse("apikey_revoke", args=[key.pk]), follow=True)
    assert "already revoked" in response.content.decode()
    key.refresh_from_db()
    assert key.revoked_at == revoked_at


def test_api_key_revoke__no_such_key__404(admin_user, client_for):
    client = client_for(admin_user)
    assert client.get(reverse("apikey_revoke", args=[999])).status_code == 404
    assert client.post(reverse("apikey_revoke", args=[999])).status_code == 404
