"""Every change is audited: each mutating endpoint and form makes one audit entry per
changed record, with actor, time, reason, before and after.

The audit trail is the one admins read (`/audit/`, `GET /api/v1/audit`):
overrides.selectors.audit_log() over the django-simple-history records of blocks,
boosts, surfaces, regions, opt-outs, deletion requests, downstreams, API keys, model
versions, catalog items and users (accounts and their roles). (Deletion requests also
keep their own evidence timeline; that is evidence for the customer, not the admins'
trail.)

The mutating routes are found by the same URLconf walk as the authorization matrix:
every POST/PUT/PATCH/DELETE a view implements needs an entry in AUDIT_CASES, either
cases that drive it or a reason why it changes nothing worth auditing. Argued out:

- reads that are POSTed to keep ids out of URLs or carry a body (searches, the rank
  preview, serving rank and opt-out checks);
- signing in and out (sessions, recorded by django-axes, not changes of data): the
  last_login and password re-hash saves of a sign-in add no user record (tested);
- serving heartbeats (telemetry of which version an instance runs, overwritten each
  time) and logged predictions (data intake at serving rate, idempotent, kept in the
  prediction log itself);
- PUT on Django form views (ProcessFormView routes it to post() with an empty
  request.POST, so it can only fail validation).

Outside the URLconf: model registration and activation (the register_model command
and the admin's "activate" action) and a settings change in the admin are driven too,
and so are people and the catalog in the admin:

- users (opsconsole/admin.py, opsconsole/user_history.py): creating, changing roles,
  e-mail, staff and superuser status, deactivating, deleting, and password resets.
  The admin's user forms require a reason (a ticket or an approval: only a person can
  say why; the before and after already say what), the admin is the actor, and a
  change with its roles is one entry. Roles are snapshotted by name, the password
  only as "changed". Role changes outside the admin (shell, commands) are recorded
  with a generated reason; role definitions are read-only in the admin (they are
  code: opsconsole/auth.py, re-applied after every migrate);
- catalog items: hand edits in the admin, with the fields changed as the reason.
  Argued out: catalog imports (import_catalog, load_demo) are a sync from the
  product feed, whose file is their record; they add no entry per row, and the admin
  records an imported row as it was before its first edit so that edit has a before.
"""

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from overrides import selectors
from privacy.models import Downstream
from tests.factories import PASSWORD, make_block, make_boost
from tests.security.conftest_matrix import (
    ADMIN_GROUP,
    csrf_client,
    project_routes,
    train_tiny_model,
)

UNSAFE = ("POST", "PUT", "PATCH", "DELETE")


@dataclass
class Case:
    """Drive one change: `prepare(env)` makes what it needs (not counted), `act(env)`
    makes the change; `expected` is the new audit entries per kind."""

    name: str
    act: object
    expected: dict[str, int]
    actor: str  # username, or "apikey:<name>"
    prepare: object = None
    reason_contains: str = ""


def not_a_change(why: str) -> str:
    return why


# Helpers the cases use ------------------------------------------------------------


class Env:
    """Users, browser-like sessions per role and API keys for the cases."""

    def __init__(self, users, api_key_for):
        self.users = users
        self.sessions = {}
        for role, user in users.items():
            self.sessions[role] = csrf_client(user)
        self.objects = {}
        # Made now, so creating them is not counted as part of a case.
        self.keys = {}
        from opsconsole.models import ApiKey, ApiKeyScope

        for scope in ApiKeyScope.values:
            raw = api_key_for(scope)
            self.keys[scope] = (raw, ApiKey.objects.get(prefix=raw[:12]).user.username)

    def post(self, role: str, path: str, data=None, **kwargs):
        client, token = self.sessions[role]
        return client.post(path, data or {}, headers={"X-CSRFToken": token}, **kwargs)

    def api(self, scope: str, path: str, body):
        raw, _ = self.keys[scope]
        return Client().post(
            path,
            body,
            content_type="application/json",
            headers={"Authorization": f"Bearer {raw}"},
        )

    def key_user(self, scope: str) -> str:
        return self.keys[scope][1]

    def audit_api(self, params: dict) -> list[dict]:
        """The admins' REST view of the trail: the results of one page."""
        client = Client()
        client.force_login(self.users["admin"])
        return client.get("/api/v1/audit", params).json()["results"]


def _block(env):
    env.objects["block"] = make_block(env.users["support_agent"], item_id="sku-a1")


def _boost(env):
    env.objects["boost"] = make_boost(env.users["account_manager"], item_id="sku-a2")


def _deletion_request(env):
    from privacy import services

    env.objects["request"] = services.deletion_request_create(
        customer_id="cust-audit-1",
        source="ticket-a",
        actor=env.users["privacy_officer"],
    )


def _downstream(env):
    from privacy import services

    env.objects["downstream"] = services.downstream_create(
        name="warehouse",
        url="http://127.0.0.1:9/d",
        secret="x" * 20,
        actor=env.users["admin"],
    )


def _api_key(env):
    from opsconsole import services

    env.objects["api_key"], _ = services.api_key_create(
        name="to-revoke", scopes=["serving:read"], actor=env.users["admin"]
    )


def _optout(env):
    from overrides.services import optout_register

    optout_register(
        customer_id="cust-audit-2",
        kinds=["personalization"],
        source="ticket-o",
        actor=env.users["privacy_officer"],
    )


NEW_PASSWORD = "another-long-passphrase-42"
LONG_SOURCE = "ticket-" + "y" * 150  # sources may be 200 characters long
TOMORROW = (timezone.now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")


def _expect_status(response, *codes):
    assert response.status_code in codes, (
        response.status_code,
        response.content[:500],
    )
    return response


# fmt: off
AUDIT_CASES: dict[tuple[str, str], list[Case] | str] = {
    # Console forms -----------------------------------------------------------------
    ("blocks/new/", "POST"): [Case(
        "block from the form",
        lambda env: _expect_status(env.post("support_agent", "/blocks/new/", {
            "item_id": "sku-f1", "reason": "Recall", "surface": "", "region": ""}),
            302),
        {"block": 1}, "support-agent", reason_contains="Recall")],
    ("blocks/bulk/", "POST"): [Case(
        "bulk block, two rows applied",
        lambda env: _expect_status(env.post("support_agent", "/blocks/bulk/", {
            "item_ids": "sku-b1\nsku-b2", "reason": "Recall batch", "surface": "",
            "region": "", "action": "apply"}), 302),
        {"block": 2}, "support-agent", reason_contains="Recall batch")],
    ("blocks/<int:pk>/lift/", "POST"): [Case(
        "lift from the form",
        lambda env: _expect_status(env.post(
            "support_agent", f"/blocks/{env.objects['block'].pk}/lift/",
            {"reason": "Fixed"}), 302),
        {"block": 1}, "support-agent", prepare=_block, reason_contains="Fixed")],
    ("boosts/new/", "POST"): [Case(
        "boost from the form",
        lambda env: _expect_status(env.post("account_manager", "/boosts/new/", {
            "item_id": "sku-f2", "factor": "1.5", "reason": "Launch", "surface": "",
            "region": "", "ends_at": TOMORROW}), 302),
        {"boost": 1}, "account-manager", reason_contains="Launch")],
    ("boosts/<int:pk>/end/", "POST"): [Case(
        "end a boost from the form",
        lambda env: _expect_status(env.post(
            "account_manager", f"/boosts/{env.objects['boost'].pk}/end/",
            {"reason": "Sold out"}), 302),
        {"boost": 1}, "account-manager", prepare=_boost, reason_contains="Sold out")],
    ("privacy/requests/new/", "POST"): [Case(
        "deletion request filed by a support agent (opts out of both kinds)",
        lambda env: _expect_status(env.post("support_agent", "/privacy/requests/new/", {
            "customer_id": "cust-f1", "source": LONG_SOURCE,
            "identity_verified": "on"}), 200, 302),
        {"deletion_request": 1, "optout": 2}, "support-agent",
        reason_contains=LONG_SOURCE)],
    ("privacy/requests/<uuid:request_id>/extend/", "POST"): [Case(
        "extend a deadline, with a long reason",
        lambda env: _expect_status(env.post(
            "privacy_officer", f"/privacy/requests/{env.objects['request'].pk}/extend/",
            {"reason": "Backups need restoring first. " * 8}), 302),
        {"deletion_request": 1}, "privacy-officer", prepare=_deletion_request,
        reason_contains="Backups need restoring first.")],
    ("privacy/requests/<uuid:request_id>/retry/", "POST"): [Case(
        "retry now",
        lambda env: _expect_status(env.post(
            "privacy_officer",
            f"/privacy/requests/{env.objects['request'].pk}/retry/"), 302),
        {"deletion_request": 1}, "privacy-officer", prepare=_deletion_request,
        reason_contains="Retry now")],
    ("privacy/optouts/", "POST"): [
        Case("register an opt-out from the form",
             lambda env: _expect_status(env.post("support_agent", "/privacy/optouts/", {
                 "customer_id": "cust-f2", "kinds": ["training"],
                 "source": LONG_SOURCE, "action": "register"}), 302),
             {"optout": 1}, "support-agent", reason_contains=LONG_SOURCE),
        Case("withdraw an opt-out from the form",
             lambda env: _expect_status(env.post(
                 "privacy_officer", "/privacy/optouts/", {
                 "customer_id": "cust-audit-2", "kinds": ["personalization"],
                 "source": "ticket-w", "action": "withdraw"}), 302),
             {"optout": 1}, "privacy-officer", prepare=_optout,
             reason_contains="ticket-w"),
    ],
    ("privacy/downstreams/new/", "POST"): [Case(
        "add a downstream",
        lambda env: _expect_status(env.post(
            "privacy_officer", "/privacy/downstreams/new/", {
                "name": "crm", "url": "http://127.0.0.1:9/crm", "secret": "z" * 20,
                "is_active": "on"}), 302),
        {"downstream": 1}, "privacy-officer", reason_contains="added")],
    ("privacy/downstreams/<int:downstream_id>/", "POST"): [Case(
        "change a downstream's URL and secret",
        lambda env: _expect_status(env.post(
            "privacy_officer",
            f"/privacy/downstreams/{env.objects['downstream'].pk}/",
            {"name": "warehouse", "url": "http://127.0.0.1:9/new", "secret": "q" * 20,
             "is_active": "on"}), 302),
        {"downstream": 1}, "privacy-officer", prepare=_downstream,
        reason_contains="url")],
    ("settings/api-keys/new/", "POST"): [Case(
        "create an API key",
        lambda env: _expect_status(env.post("admin", "/settings/api-keys/new/", {
            "name": "new-key", "scopes": ["serving:read"]}), 200),
        {"api_key": 1, "user": 1}, "admin", reason_contains="serving:read")],
    ("settings/api-keys/<int:pk>/revoke/", "POST"): [Case(
        "revoke an API key",
        lambda env: _expect_status(env.post(
            "admin", f"/settings/api-keys/{env.objects['api_key'].pk}/revoke/"), 302),
        {"api_key": 1}, "admin", prepare=_api_key, reason_contains="Revoked")],
    ("password/change/", "POST"): [Case(
        "a person changes their own password (recorded, never the hash)",
        lambda env: _expect_status(env.post("support_agent", "/password/change/", {
            "old_password": PASSWORD, "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD}), 302),
        {"user": 1}, "support-agent", reason_contains="Password changed")],
    # REST ---------------------------------------------------------------------------
    ("api/v1/blocks", "POST"): [Case(
        "block over REST with an overrides:write key",
        lambda env: _expect_status(env.api("overrides:write", "/api/v1/blocks", {
            "item_id": "sku-r1", "reason": "Recall", "surface": None,
            "region": None}), 201),
        {"block": 1}, "key:overrides:write", reason_contains="Recall")],
    ("api/v1/blocks/bulk", "POST"): [Case(
        "bulk block over REST",
        lambda env: _expect_status(env.api("overrides:write", "/api/v1/blocks/bulk", [
            {"item_id": "sku-r2", "reason": "Batch"},
            {"item_id": "sku-r3", "reason": "Batch"}]), 201),
        {"block": 2}, "key:overrides:write", reason_contains="Batch")],
    ("api/v1/blocks/<pk>/lift", "POST"): [Case(
        "lift over REST",
        lambda env: _expect_status(env.api(
            "overrides:write", f"/api/v1/blocks/{env.objects['block'].pk}/lift",
            {"reason": "Fixed upstream"}), 200),
        {"block": 1}, "key:overrides:write", prepare=_block,
        reason_contains="Fixed upstream")],
    ("api/v1/boosts", "POST"): [Case(
        "boost over REST",
        lambda env: _expect_status(env.api("overrides:write", "/api/v1/boosts", {
            "item_id": "sku-r4", "factor": 1.5, "reason": "Launch", "surface": None,
            "region": None,
            "ends_at": (timezone.now() + timedelta(days=2)).isoformat()}), 201),
        {"boost": 1}, "key:overrides:write", reason_contains="Launch")],
    ("api/v1/boosts/<pk>/end", "POST"): [Case(
        "end a boost over REST",
        lambda env: _expect_status(env.api(
            "overrides:write", f"/api/v1/boosts/{env.objects['boost'].pk}/end",
            {"reason": "Over"}), 200),
        {"boost": 1}, "key:overrides:write", prepare=_boost, reason_contains="Over")],
    ("api/v1/privacy/optouts", "POST"): [Case(
        "register opt-outs over REST, with a 200-character source",
        lambda env: _expect_status(env.api("privacy:write", "/api/v1/privacy/optouts", {
            "customer_id": "cust-r1", "kinds": ["personalization", "training"],
            "source": "t" * 200}), 200),
        {"optout": 2}, "key:privacy:write", reason_contains="t" * 200)],
    ("api/v1/privacy/optouts/withdraw", "POST"): [Case(
        "withdraw an opt-out over REST",
        lambda env: _expect_status(env.api(
            "privacy:write", "/api/v1/privacy/optouts/withdraw", {
                "customer_id": "cust-audit-2", "kinds": ["personalization"],
                "source": "ticket-rw"}), 200),
        {"optout": 1}, "key:privacy:write", prepare=_optout,
        reason_contains="ticket-rw")],
    ("api/v1/privacy/deletion-requests", "POST"): [Case(
        "deletion request over REST",
        lambda env: _expect_status(env.api(
            "privacy:write", "/api/v1/privacy/deletion-requests", {
                "customer_id": "cust-r2", "source": LONG_SOURCE}), 202),
        {"deletion_request": 1, "optout": 2}, "key:privacy:write",
        reason_contains=LONG_SOURCE)],
    # Not changes (see the module docstring) ------------------------------------------
    ("login/", "POST"): not_a_change("signing in: a session, recorded by django-axes"),
    ("logout/", "POST"): not_a_change("signing out: a session"),
    ("privacy/", "POST"): not_a_change("a search by customer id, posted to keep it "
                                       "out of URLs"),
    ("serving/preview/", "POST"): not_a_change("a preview of the rank: reads only"),
    ("explanations/", "POST"): not_a_change("a lookup by prediction or customer id"),
    ("api/v1/serving/rank", "POST"): not_a_change("a read of the rules"),
    ("api/v1/serving/optouts/check", "POST"): not_a_change("a read of opt-outs"),
    ("api/v1/serving/heartbeat", "POST"): not_a_change(
        "telemetry: the version an instance runs, overwritten each time"),
    ("api/v1/predictions", "POST"): not_a_change(
        "data intake at serving rate; idempotent; the prediction log is its record"),
}
# fmt: on

# Form views answer PUT with post() and an empty request.POST: it cannot change
# anything, so each is declared here rather than driven.
_FORM_PUT = "PUT on a form view: post() with an empty request.POST, always invalid"


def _unsafe_routes() -> dict[tuple[str, str], str]:
    found = {}
    for route, entry in project_routes().items():
        if route == ADMIN_GROUP or entry.supported is None:
            continue
        for method in entry.supported & set(UNSAFE):
            found[(route, method)] = entry.name
    return found


def _declared() -> dict:
    declared = dict(AUDIT_CASES)
    for (route, method), _name in _unsafe_routes().items():
        if method == "PUT" and (route, "POST") in declared:
            declared.setdefault((route, "PUT"), _FORM_PUT)
    return declared


def test_audit_cases__every_mutating_route__is_driven_or_argued_out():
    declared = _declared()
    unsafe = _unsafe_routes()
    missing = sorted(
        f"{method} {route} (url name {name!r})"
        for (route, method), name in unsafe.items()
        if (route, method) not in declared
    )
    stale = sorted(f"{m} {r}" for (r, m) in declared if (r, m) not in unsafe)
    assert not missing, (
        "Mutating URLs without an audit case in AUDIT_CASES (tests/security/"
        f"test_audit_coverage.py): {', '.join(missing)}"
    )
    assert not stale, f"AUDIT_CASES for routes or methods that are gone: {stale}"


def _audit_keys() -> set[tuple[str, int]]:
    return {(row["audit_kind"], row["history_id"]) for row in selectors.audit_log()}


def _new_entries(before: set) -> list:
    """The audit entries made since `before` (a set from _audit_keys())."""
    new_rows = [
        row
        for row in selectors.audit_log()
        if (row["audit_kind"], row["history_id"]) not in before
    ]
    return selectors.audit_entries_for_page(new_rows)


def _check_new_entries(env, case: Case, before: set, started) -> list:
    entries = _new_entries(before)
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.kind] = counts.get(entry.kind, 0) + 1
    assert counts == case.expected, f"{case.name}: new audit entries {counts}"
    actor = (
        env.key_user(case.actor.removeprefix("key:"))
        if case.actor.startswith("key:")
        else case.actor
    )
    for entry in entries:
        assert entry.actor == actor, (case.name, entry)
        assert started <= entry.when <= timezone.now(), (case.name, entry)
        assert entry.reason.strip(), (case.name, entry)
        assert entry.changes, (case.name, entry)
        assert any(change.before != change.after for change in entry.changes), (
            case.name,
            entry,
        )
    main = [entry for entry in entries if case.reason_contains in entry.reason]
    assert main, f"{case.name}: no entry with the reason {case.reason_contains!r}"
    return entries


def _run(env, case: Case) -> list:
    """Prepare and act one case; check and return its new entries."""
    if case.prepare:
        case.prepare(env)
    before, started = _audit_keys(), timezone.now()
    case.act(env)
    return _check_new_entries(env, case, before, started)


def _drive(env, case: Case) -> list:
    """_run(), and the admins' REST view of the trail shows the same entries."""
    entries = _run(env, case)
    shown = {
        (item["kind"], item["history_id"]) for item in env.audit_api({"page_size": 200})
    }
    for entry in entries:
        assert (entry.kind, entry.history_id) in shown, (case.name, entry)
    return entries


def _admin_post(env, path: str, data: dict, *codes):
    return _expect_status(env.post("admin", path, data), *codes)


@pytest.fixture
def env(users, api_key_for):
    return Env(users, api_key_for)


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(case, id=f"{method} {route} #{index}")
        for (route, method), cases in AUDIT_CASES.items()
        if isinstance(cases, list)
        for index, case in enumerate(cases)
    ],
)
def test_change__through_its_endpoint__adds_one_audit_entry_per_record(case, env):
    _drive(env, case)


# Changes made outside the URLconf -------------------------------------------------


@pytest.fixture(scope="session")
def audit_model(tmp_path_factory):
    return train_tiny_model(tmp_path_factory.mktemp("audit-model"))


def test_model_registration_and_activation__are_audited(
    env, settings, tmp_path, audit_model
):
    from explanations import services
    from explanations.models import ModelVersion

    settings.MODEL_ARTIFACT_DIR = tmp_path / "models"
    artifact, features = audit_model
    admin = env.users["admin"]

    def register(version: str):
        return services.register_model(
            name="audited",
            version=version,
            artifact_path=artifact,
            features_path=features,
            activate=True,
            actor=admin,
        )

    # Registering (and activating) a first version is one change of one record
    _run(
        env,
        Case(
            "register",
            lambda env: register("1"),
            {"model_version": 1},
            "admin",
            reason_contains="Registered",
        ),
    )
    # A second active version also deactivates the first: one entry each
    _run(
        env,
        Case(
            "register v2",
            lambda env: register("2"),
            {"model_version": 2},
            "admin",
            reason_contains="Replaced",
        ),
    )
    # The admin's "activate" action switches back: again one entry per version
    first = ModelVersion.objects.get(name="audited", version="1")
    _run(
        env,
        Case(
            "activate in the admin",
            lambda env: _admin_post(
                env,
                "/admin/explanations/modelversion/",
                {"action": "activate", "_selected_action": [first.pk]},
                302,
            ),
            {"model_version": 2},
            "admin",
            reason_contains="Activated",
        ),
    )


def test_admin_settings_change__is_audited_with_actor_and_reason(env):
    from overrides.models import Surface

    surface = Surface.objects.get(code="home")
    _run(
        env,
        Case(
            "rename a surface in the admin",
            lambda env: _admin_post(
                env,
                f"/admin/overrides/surface/{surface.pk}/change/",
                {"code": "home", "name": "Home page (new)", "is_active": "on"},
                302,
            ),
            {"surface": 1},
            "admin",
            reason_contains="name",
        ),
    )


def test_downstream_history__never_holds_the_secret(env):
    _downstream(env)
    downstream = Downstream.objects.get(name="warehouse")
    assert not hasattr(downstream.history.first(), "secret")


# People and the catalog in the admin ------------------------------------------------


def _changes(entry) -> dict:
    return {change.field: (change.before, change.after) for change in entry.changes}


def _user_form(user, **changes) -> dict:
    """The admin's user change form as the browser posts it (unchecked boxes absent)."""
    data = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "groups": [str(pk) for pk in user.groups.values_list("pk", flat=True)],
        "is_active": "on" if user.is_active else "",
        "is_staff": "on" if user.is_staff else "",
        "is_superuser": "on" if user.is_superuser else "",
    }
    data.update(changes)
    return {name: value for name, value in data.items() if value not in ("", None)}


def test_admin_user_changes__one_entry_each__admin_as_actor_with_the_reason(env):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user_model = get_user_model()
    support_agent = str(Group.objects.get(name="support_agent").pk)
    admin_role = str(Group.objects.get(name="admin").pk)

    # Creating an account: one entry, without the password
    entries = _drive(
        env,
        Case(
            "add a user in the admin",
            lambda env: _admin_post(
                env,
                "/admin/auth/user/add/",
                {
                    "username": "new-hire",
                    "usable_password": "true",
                    "password1": NEW_PASSWORD,
                    "password2": NEW_PASSWORD,
                    "change_reason": "IT-101: new support agent",
                },
                302,
            ),
            {"user": 1},
            "admin",
            reason_contains="IT-101",
        ),
    )
    user = user_model.objects.get(username="new-hire")
    assert entries[0].action == "Created user"
    assert _changes(entries[0])["username"] == (None, "new-hire")
    assert user.password not in repr(entries)

    # Giving a role and an e-mail address: the user and its roles are one entry
    entries = _drive(
        env,
        Case(
            "give a role in the admin",
            lambda env: _admin_post(
                env,
                f"/admin/auth/user/{user.pk}/change/",
                _user_form(
                    user,
                    groups=[support_agent],
                    email="new@example.com",
                    change_reason="IT-102: joins support",
                ),
                302,
            ),
            {"user": 1},
            "admin",
            reason_contains="IT-102",
        ),
    )
    assert entries[0].action == "Changed roles"
    assert _changes(entries[0]) == {
        "roles": (None, "support_agent"),
        "email": (None, "new@example.com"),
    }

    # Promoting to admin: roles, staff and superuser status before and after
    user.refresh_from_db()
    entries = _drive(
        env,
        Case(
            "make an admin",
            lambda env: _admin_post(
                env,
                f"/admin/auth/user/{user.pk}/change/",
                _user_form(
                    user,
                    groups=[support_agent, admin_role],
                    is_staff="on",
                    is_superuser="on",
                    change_reason="IT-103: on call",
                ),
                302,
            ),
            {"user": 1},
            "admin",
            reason_contains="IT-103",
        ),
    )
    assert _changes(entries[0]) == {
        "roles": ("support_agent", "admin, support_agent"),
        "is_staff": (False, True),
        "is_superuser": (False, True),
    }

    # An admin resets the password: recorded as changed, the hash nowhere
    entries = _drive(
        env,
        Case(
            "reset a password in the admin",
            lambda env: _admin_post(
                env,
                f"/admin/auth/user/{user.pk}/password/",
                {
                    "usable_password": "true",
                    "password1": "a-third-passphrase-77",
                    "password2": "a-third-passphrase-77",
                    "set-password": "1",
                    "change_reason": "IT-104: locked out",
                },
                302,
            ),
            {"user": 1},
            "admin",
            reason_contains="IT-104",
        ),
    )
    user.refresh_from_db()
    assert user.check_password("a-third-passphrase-77")
    assert entries[0].action == "Changed password"
    assert _changes(entries[0]) == {"password": (None, "changed")}
    assert entries[0].reason == "Password set in the admin: IT-104: locked out"
    assert user.password not in repr(entries)

    # Disabling password sign-in (e.g. for single sign-on only): recorded as such
    entries = _drive(
        env,
        Case(
            "disable password sign-in in the admin",
            lambda env: _admin_post(
                env,
                f"/admin/auth/user/{user.pk}/password/",
                {
                    "usable_password": "false",
                    "unset-password": "1",
                    "change_reason": "IT-106: SSO only",
                },
                302,
            ),
            {"user": 1},
            "admin",
            reason_contains="Password sign-in disabled in the admin: IT-106",
        ),
    )
    assert entries[0].action == "Disabled password sign-in"
    assert _changes(entries[0]) == {"usable_password": (True, False)}

    # Deactivating: is_active before and after
    entries = _drive(
        env,
        Case(
            "deactivate in the admin",
            lambda env: _admin_post(
                env,
                f"/admin/auth/user/{user.pk}/change/",
                _user_form(user, is_active="", change_reason="IT-105: left"),
                302,
            ),
            {"user": 1},
            "admin",
            reason_contains="IT-105",
        ),
    )
    assert entries[0].action == "Deactivated user"
    assert _changes(entries[0]) == {"is_active": (True, False)}

    # Deleting: one entry, its roles gone
    user.refresh_from_db()
    entries = _drive(
        env,
        Case(
            "delete in the admin",
            lambda env: _admin_post(
                env, f"/admin/auth/user/{user.pk}/delete/", {"post": "yes"}, 302
            ),
            {"user": 1},
            "admin",
            reason_contains="Deleted in the admin",
        ),
    )
    assert entries[0].action == "Deleted user"
    assert not user_model.objects.filter(pk=user.pk).exists()


def test_admin_user_change__without_reason_or_without_change__records_nothing(env):
    user = env.users["account_manager"]
    before = _audit_keys()

    # No reason: the form is shown again with the error, nothing is saved
    response = _admin_post(
        env, f"/admin/auth/user/{user.pk}/change/", _user_form(user, is_staff="on"), 200
    )
    assert "change_reason" in response.context["adminform"].form.errors
    response = _admin_post(
        env,
        f"/admin/auth/user/{user.pk}/password/",
        {
            "usable_password": "true",
            "password1": NEW_PASSWORD,
            "password2": NEW_PASSWORD,
            "set-password": "1",
        },
        200,
    )
    assert "change_reason" in response.context["form"].errors
    # A reason but nothing changed: nothing to record
    _admin_post(
        env,
        f"/admin/auth/user/{user.pk}/change/",
        _user_form(user, change_reason="Looked only"),
        302,
    )

    assert _audit_keys() == before
    user.refresh_from_db()
    assert not user.is_staff


def test_signing_in__adds_no_user_history(env, settings):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    settings.PASSWORD_HASHERS = [
        *settings.PASSWORD_HASHERS,
        "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    ]
    user = env.users["support_agent"]
    # A password hashed with an older hasher is re-hashed (saved) on sign-in too.
    user.password = make_password(PASSWORD, hasher="pbkdf2_sha1")
    user.save_without_historical_record()
    before = _audit_keys()

    response = Client().post(
        "/login/", {"username": user.username, "password": PASSWORD}
    )
    Client().force_login(user)

    assert response.status_code == 302
    user = get_user_model().objects.get(pk=user.pk)
    assert user.last_login is not None
    assert not user.password.startswith("pbkdf2_sha1")  # re-hashed and saved
    assert _audit_keys() == before


def test_role_changes_outside_the_admin__recorded_either_side(env):
    from django.contrib.auth.models import Group

    user = env.users["privacy_officer"]
    group = Group.objects.get(name="support_agent")

    def add_from_the_group(env):
        group.user_set.add(user)

    entries = _drive(
        env,
        Case(
            "a role given in the shell",
            lambda env: user.groups.remove(Group.objects.get(name="privacy_officer")),
            {"user": 1},
            "system",
            reason_contains="Changed outside the admin",
        ),
    )
    assert _changes(entries[0]) == {"roles": ("privacy_officer", None)}
    entries = _drive(
        env,
        Case(
            "a member added from the group's side",
            add_from_the_group,
            {"user": 1},
            "system",
            reason_contains="Changed outside the admin",
        ),
    )
    assert _changes(entries[0]) == {"roles": (None, "support_agent")}


def test_role_definitions__read_only_in_the_admin(env):
    from django.contrib.auth.models import Group

    group = Group.objects.get(name="support_agent")
    response = env.post(
        "admin",
        f"/admin/auth/group/{group.pk}/change/",
        {"name": "support_agent", "permissions": []},
    )

    assert response.status_code == 403
    assert group.permissions.exists()


def test_catalog_edits_in_the_admin__audited_with_before_and_shown_with_the_item(env):
    from overrides import services
    from overrides.models import CatalogItem

    services.import_catalog(rows=[{"item_id": "sku-c1", "title": "Lawn mower"}])
    item = CatalogItem.objects.get(item_id="sku-c1")
    assert not item.history.exists()  # imports are not audited (see the model)

    def retitle(title: str):
        return lambda env: _admin_post(
            env,
            f"/admin/overrides/catalogitem/{item.pk}/change/",
            {"item_id": "sku-c1", "title": title, "category": ""},
            302,
        )

    # The first edit records the imported row first, so it has a before
    before = _audit_keys()
    retitle("Lawn mower (petrol)")(env)
    edit, imported = _new_entries(before)
    assert (edit.kind, edit.actor, edit.action, edit.reason) == (
        "catalog_item",
        "admin",
        "Changed catalog item",
        "Changed in the admin: title",
    )
    assert _changes(edit) == {"title": ("Lawn mower", "Lawn mower (petrol)")}
    assert (imported.actor, imported.when) == ("system", item.imported_at)
    assert imported.reason.startswith("As imported")
    # Later edits: one entry each
    entries = _drive(
        env,
        Case(
            "retitle again",
            retitle("Lawn mower (electric)"),
            {"catalog_item": 1},
            "admin",
            reason_contains="title",
        ),
    )
    assert _changes(entries[0]) == {
        "title": ("Lawn mower (petrol)", "Lawn mower (electric)")
    }
    by_item = env.audit_api({"item_id": "sku-c1"})
    assert [(row["kind"], row["actor"]) for row in by_item] == [
        ("catalog_item", "admin"),
        ("catalog_item", "admin"),
        ("catalog_item", "system"),
    ]


def test_catalog_admin_edit__after_a_reimport__import_recorded_and_edit_diffs_it(env):
    from overrides import services
    from overrides.models import CatalogItem

    # Given an item edited in the admin, then imported again with another title
    services.import_catalog(rows=[{"item_id": "sku-c2", "title": "Kettle"}])
    item = CatalogItem.objects.get(item_id="sku-c2")
    path = f"/admin/overrides/catalogitem/{item.pk}/change/"
    _admin_post(env, path, {"item_id": "sku-c2", "title": "Kettle 1L"}, 302)
    services.import_catalog(
        rows=[{"item_id": "sku-c2", "title": "Kettle 1.7L", "category": "Kitchen"}]
    )
    item.refresh_from_db()
    before = _audit_keys()

    # When the admin edits it again (the category only)
    _admin_post(
        env,
        path,
        {"item_id": "sku-c2", "title": "Kettle 1.7L", "category": "Appliances"},
        302,
    )

    # Then the import's changes are their own entry, and the edit shows only its own
    edit, imported = _new_entries(before)
    assert (edit.actor, edit.reason) == ("admin", "Changed in the admin: category")
    assert _changes(edit) == {"category": ("Kitchen", "Appliances")}
    assert (imported.actor, imported.when) == ("system", item.imported_at)
    assert imported.reason.startswith("As imported")
    assert _changes(imported) == {
        "title": ("Kettle 1L", "Kettle 1.7L"),
        "category": (None, "Kitchen"),  # an empty value shows as none
    }


def test_audit_api__pages_of_user_and_catalog_entries__constant_query_count(env):
    from django.contrib.auth.models import Group
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.factories import CatalogItemFactory, UserFactory

    role = Group.objects.get(name="support_agent")
    client = Client()
    client.force_login(env.users["admin"])

    def queries_for_a_page(changes: int) -> int:
        for _ in range(changes):
            user = UserFactory()
            user.groups.add(role)
            user.groups.remove(role)
            item = CatalogItemFactory()
            item.title += " (new)"
            item.save()
            make_block(env.users["support_agent"], item_id=item.item_id)
        with CaptureQueriesContext(connection) as captured:
            response = client.get(
                "/api/v1/audit",
                {"kind": ["user", "catalog_item", "block"], "page_size": 200},
            )
        assert response.status_code == 200
        assert {row["kind"] for row in response.json()["results"]} == {
            "user",
            "catalog_item",
            "block",
        }
        return len(captured)

    assert queries_for_a_page(3) == queries_for_a_page(30)
