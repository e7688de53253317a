"""Authorization matrix: every URL of the project, method and principal.

The expected outcome of each cell is declared in MATRIX below, one entry per URL
pattern (the readable route of the URLconf walk; the admin site is one entry). A
pattern without an entry fails, and so does an entry whose pattern is gone, so a new
URL cannot ship without someone deciding who may use it.

Principals: anonymous, a session per role (support_agent, account_manager,
privacy_officer, admin; CSRF enforced, the token sent as a browser would), one API
key per scope of `opsconsole.models.ApiKeyScope` (a new scope gets a key, and is
refused everywhere its routes do not name it), and a revoked key holding every scope.

Outcomes: "ok" (past authentication and authorization: 2xx, 400 for the empty body
we send, 409...), "redirect" (a 3xx that is not to a login page), "login" (sent to a
login page), "401", "403", "404", "405".
"""

from dataclasses import dataclass, field

import pytest
from django.test import Client

from overrides.models import Block
from tests.security.conftest_matrix import (
    ADMIN_GROUP,
    PEOPLE,
    REVOKED,
    admin_sample_paths,
    all_principals,
    build_world,
    csrf_client,
    fill_path,
    key_principal,
    key_scopes,
    make_principals,
    outcome_of,
    project_routes,
    train_tiny_model,
)


@dataclass(frozen=True)
class Expect:
    """One row: the outcome per person, per key scope, for other keys and revoked."""

    people: tuple[str, ...]  # anonymous, support_agent, account_manager, officer, admin
    keys: dict[str, str] = field(default_factory=dict)  # scope -> outcome
    other_keys: str = "403"  # keys of any scope not named (new scopes too)
    revoked: str = "401"
    supported: bool = True  # False: a method the view does not implement

    def outcome_for(self, principal: str) -> str:
        if principal in PEOPLE:
            return self.people[PEOPLE.index(principal)]
        if principal == REVOKED:
            return self.revoked
        scope = principal.removeprefix("key:")
        return self.keys.get(scope, self.other_keys)


def page(people: str, *, supported: bool = True) -> Expect:
    """A console page: a key means nothing to it, so keys fare as anonymous does."""
    outcomes = tuple(people.split())
    return Expect(
        outcomes, other_keys=outcomes[0], revoked=outcomes[0], supported=supported
    )


def page_405(people: str) -> Expect:
    """A method the page does not implement (the permission is checked first)."""
    return page(people, supported=False)


def api(people: str, **keys: str) -> Expect:
    """A REST endpoint: `keys` names the scopes that get through (scope=outcome,
    underscores for the colon); any other key 403, a revoked key 401."""
    return Expect(
        tuple(people.split()),
        keys={scope.replace("_", ":"): outcome for scope, outcome in keys.items()},
    )


def api_405(*scopes: str) -> Expect:
    """A method the endpoint does not implement: anonymous 401, signed-in 405, a key
    with the endpoint's scope 405 and any other key 403."""
    return Expect(
        ("401", "405", "405", "405", "405"),
        keys={scope: "405" for scope in scopes},
        supported=False,
    )


def serving(outcome: str = "ok", *, supported: bool = True) -> Expect:
    """Serving reads: `serving:read` keys only; sessions never authenticate (401)."""
    return Expect(("401",) * 5, keys={"serving:read": outcome}, supported=supported)


def public(people: str = "ok ok ok ok ok", *, keys="ok", revoked="401", supported=True):
    outcomes = tuple(people.split())
    return Expect(outcomes, other_keys=keys, revoked=revoked, supported=supported)


SERVE = "serving:read"
WRITE = "overrides:write"
PRIVACY = "privacy:write"
EXPLAIN = "explanations:read"
PREDICT = "predictions:write"

# fmt: off
# route (readable, from the URLconf)
#   method(s):  outcomes for anonymous, support_agent, account_manager,
#               privacy_officer, admin (keys: see page/api/serving/public)
MATRIX: dict[str, dict[str, Expect]] = {
    "": {
        "GET HEAD":   page("login ok ok ok ok"),
        "POST":       page_405("login 405 405 405 405"),
    },
    "login/": {
        "GET HEAD POST PUT": page("ok redirect redirect redirect redirect"),
        "DELETE":     page_405("405 redirect redirect redirect redirect"),
    },
    "logout/": {
        "GET":        page_405("405 405 405 405 405"),
        # Last: it signs the session out, and sends everyone to the login page.
        "POST":       page("login login login login login"),
    },
    "password/change/": {
        "GET HEAD POST PUT": page("login ok ok ok ok"),
        "DELETE":     page_405("login 405 405 405 405"),
    },
    "password/changed/": {
        "GET HEAD":   page("login ok ok ok ok"),
        "POST":       page_405("login 405 405 405 405"),
    },
    # API keys: admins only.
    "settings/api-keys/": {
        "GET HEAD":   page("login 403 403 403 ok"),
        "POST":       page_405("login 403 403 403 405"),
    },
    "settings/api-keys/new/": {
        "GET HEAD POST PUT": page("login 403 403 403 ok"),
        "DELETE":     page_405("login 403 403 403 405"),
    },
    "settings/api-keys/<int:pk>/revoke/": {
        "GET HEAD":   page("login 403 403 403 ok"),
        "POST":       page("login 403 403 403 redirect"),
        "PUT":        page_405("login 403 403 403 405"),
    },
    # Blocks: support agents write, account managers read.
    "blocks/": {
        "GET HEAD":   page("login ok ok 403 ok"),
        "POST":       page_405("login 405 405 403 405"),
    },
    "blocks/new/": {
        "GET HEAD POST PUT": page("login ok 403 403 ok"),
        "DELETE":     page_405("login 405 403 403 405"),
    },
    "blocks/bulk/": {
        "GET HEAD POST PUT": page("login ok 403 403 ok"),
        "DELETE":     page_405("login 405 403 403 405"),
    },
    "blocks/<int:pk>/lift/": {
        "GET HEAD POST PUT": page("login ok 403 403 ok"),
        "DELETE":     page_405("login 405 403 403 405"),
    },
    # Boosts: account managers write, support agents read.
    "boosts/": {
        "GET HEAD":   page("login ok ok 403 ok"),
        "POST":       page_405("login 405 405 403 405"),
    },
    "boosts/new/": {
        "GET HEAD POST PUT": page("login 403 ok 403 ok"),
        "DELETE":     page_405("login 403 405 403 405"),
    },
    "boosts/<int:pk>/end/": {
        "GET HEAD POST PUT": page("login 403 ok 403 ok"),
        "DELETE":     page_405("login 403 405 403 405"),
    },
    # Items and serving pages: whoever reads blocks or boosts.
    "items/": {
        "GET HEAD":   page("login ok ok 403 ok"),
        "POST":       page_405("login 405 405 403 405"),
    },
    "items/lookup.json": {
        "GET HEAD":   page("login ok ok 403 ok"),
        "POST":       page_405("login 405 405 403 405"),
    },
    "items/<path:item_id>/": {
        "GET HEAD":   page("login ok ok 403 ok"),
        "POST":       page_405("login 405 405 403 405"),
    },
    "serving/": {
        "GET HEAD":   page("login ok ok 403 ok"),
        "POST":       page_405("login 405 405 403 405"),
    },
    "serving/preview/": {
        "GET HEAD POST PUT": page("login ok ok 403 ok"),
        "DELETE":     page_405("login 405 405 403 405"),
    },
    # The audit trail: admins only.
    "audit/": {
        "GET HEAD":   page("login 403 403 403 ok"),
        "POST":       page_405("login 403 403 403 405"),
    },
    "audit/export.csv": {
        "GET HEAD":   page("login 403 403 403 ok"),
        "POST":       page_405("login 403 403 403 405"),
    },
    # Explanations: support agents and admins; the access log: admins.
    "explanations/": {
        "GET HEAD POST PUT": page("login ok 403 403 ok"),
        "DELETE":     page_405("login 405 403 403 405"),
    },
    "explanations/predictions/<path:prediction_id>/force.png": {
        "GET HEAD":   page("login ok 403 403 ok"),
        "POST":       page_405("login 405 403 403 405"),
    },
    "explanations/predictions/<path:prediction_id>/": {
        "GET HEAD":   page("login ok 403 403 ok"),
        "POST":       page_405("login 405 403 403 405"),
    },
    "explanations/views/": {
        "GET HEAD":   page("login 403 403 403 ok"),
        "POST":       page_405("login 403 403 403 405"),
    },
    # Privacy: agents file (and are sent to the intake form), officers handle.
    "privacy/": {
        "GET HEAD POST": page("login redirect 403 ok ok"),
        "PUT":        page_405("login redirect 403 405 405"),
    },
    "privacy/requests/new/": {
        "GET HEAD POST PUT": page("login ok 403 ok ok"),
        "DELETE":     page_405("login 405 403 405 405"),
    },
    "privacy/requests/<uuid:request_id>/": {
        "GET HEAD":   page("login 403 403 ok ok"),
        "POST":       page_405("login 403 403 405 405"),
    },
    "privacy/requests/<uuid:request_id>/extend/": {
        "GET HEAD":   page("login 403 403 redirect redirect"),
        "POST":       page("login 403 403 ok ok"),
        "PUT":        page_405("login 403 403 405 405"),
    },
    "privacy/requests/<uuid:request_id>/retry/": {
        "GET HEAD POST": page("login 403 403 redirect redirect"),
        "PUT":        page_405("login 403 403 405 405"),
    },
    "privacy/requests/<uuid:request_id>/evidence.<str:extension>": {
        "GET HEAD":   page("login 403 403 ok ok"),
        "POST":       page_405("login 403 403 405 405"),
    },
    "privacy/optouts/": {
        "GET HEAD POST": page("login ok 403 ok ok"),
        "PUT":        page_405("login 405 403 405 405"),
    },
    "privacy/downstreams/": {
        "GET HEAD":   page("login 403 403 ok ok"),
        "POST":       page_405("login 403 403 405 405"),
    },
    "privacy/downstreams/new/": {
        "GET HEAD POST PUT": page("login 403 403 ok ok"),
        "DELETE":     page_405("login 403 403 405 405"),
    },
    "privacy/downstreams/<int:downstream_id>/": {
        "GET HEAD POST PUT": page("login 403 403 ok ok"),
        "DELETE":     page_405("login 403 403 405 405"),
    },
    # REST: blocks and boosts (overrides:write keys too).
    "api/v1/blocks": {
        "GET HEAD":   api("401 ok ok 403 ok", overrides_write="ok"),
        "POST":       api("401 ok 403 403 ok", overrides_write="ok"),
        "DELETE":     api_405(WRITE),
    },
    "api/v1/blocks/bulk": {
        "POST":       api("401 ok 403 403 ok", overrides_write="ok"),
        "GET":        api_405(WRITE),
    },
    "api/v1/blocks/<pk>": {
        "GET HEAD":   api("401 ok ok 403 ok", overrides_write="ok"),
        "DELETE PUT": api_405(WRITE),
    },
    "api/v1/blocks/<pk>/lift": {
        "POST":       api("401 ok 403 403 ok", overrides_write="ok"),
        "GET":        api_405(WRITE),
    },
    "api/v1/boosts": {
        "GET HEAD":   api("401 ok ok 403 ok", overrides_write="ok"),
        "POST":       api("401 403 ok 403 ok", overrides_write="ok"),
        "DELETE":     api_405(WRITE),
    },
    "api/v1/boosts/<pk>": {
        "GET HEAD":   api("401 ok ok 403 ok", overrides_write="ok"),
        "DELETE PUT": api_405(WRITE),
    },
    "api/v1/boosts/<pk>/end": {
        "POST":       api("401 403 ok 403 ok", overrides_write="ok"),
        "GET":        api_405(WRITE),
    },
    "api/v1/audit": {
        "GET HEAD":   api("401 403 403 403 ok"),  # no key may read it
        "POST":       api_405(),
    },
    # REST: serving reads, keys with serving:read only.
    "api/v1/serving/snapshot": {
        "GET HEAD":   serving(),
        "POST":       serving("405", supported=False),
    },
    "api/v1/serving/rank": {
        "POST":       serving(),
        "GET":        serving("405", supported=False),
    },
    "api/v1/serving/optouts/check": {
        "POST":       serving(),
        "GET":        serving("405", supported=False),
    },
    "api/v1/serving/changes": {
        "GET HEAD":   serving(),
        "POST":       serving("405", supported=False),
    },
    "api/v1/serving/heartbeat": {
        "POST":       serving(),
        "GET":        serving("405", supported=False),
    },
    # REST: predictions and explanations.
    "api/v1/predictions": {
        "POST":       api("401 403 403 403 ok", predictions_write="ok"),
        "GET":        api_405(PREDICT),
    },
    "api/v1/predictions/<str:prediction_id>/explanation": {
        "GET HEAD":   api("401 ok 403 403 ok", explanations_read="ok"),
        "POST":       api_405(EXPLAIN),
    },
    # REST: privacy (privacy:write keys).
    "api/v1/privacy/optouts": {
        "POST":       api("401 ok 403 ok ok", privacy_write="ok"),
        "GET":        api_405(PRIVACY),
    },
    "api/v1/privacy/optouts/withdraw": {
        "POST":       api("401 403 403 ok ok", privacy_write="ok"),
        "GET":        api_405(PRIVACY),
    },
    "api/v1/privacy/optouts/training-export": {
        "GET HEAD":   api("401 403 403 ok ok", privacy_write="ok"),
        "POST":       api_405(PRIVACY),
    },
    "api/v1/privacy/deletion-requests": {
        "POST":       api("401 ok 403 ok ok", privacy_write="ok"),
        "GET":        api_405(PRIVACY),
    },
    "api/v1/privacy/deletion-requests/<uuid:request_id>": {
        "GET HEAD":   api("401 403 403 ok ok", privacy_write="ok"),
        "POST":       api_405(PRIVACY),
    },
    # Public: the schema and its docs, the probes (no authentication at all).
    "api/schema/": {
        "GET HEAD":   public(),
        "POST":       public("405 405 405 405 405", keys="405", supported=False),
    },
    "api/docs/": {
        "GET HEAD":   public(),
        "POST":       public("405 405 405 405 405", keys="405", supported=False),
    },
    "healthz": {
        "GET HEAD":   public(keys="ok", revoked="ok"),
        "POST":       public("405 405 405 405 405", keys="405", revoked="405",
                             supported=False),
    },
    "readyz": {
        "GET HEAD":   public(keys="ok", revoked="ok"),
        "POST":       public("405 405 405 405 405", keys="405", revoked="405",
                             supported=False),
    },
    # Prometheus: keys with metrics:read only; sessions never authenticate (401).
    "metrics": {
        "GET HEAD":   Expect(("401",) * 5, keys={"metrics:read": "ok"}),
        "POST":       Expect(("401",) * 5, keys={"metrics:read": "405"},
                             supported=False),
    },
    # Django's admin site, declared once (a sample of its pages is requested): staff
    # admins only; everyone else, keys included, is sent to the admin's login.
    ADMIN_GROUP: {
        "GET HEAD POST": page("login login login login ok"),
    },
}
# fmt: on


def _methods(spec: str) -> list[str]:
    return spec.split()


def _declared(route: str) -> dict[str, Expect]:
    return {
        method: expect
        for spec, expect in MATRIX[route].items()
        for method in _methods(spec)
    }


def test_matrix__every_url_pattern__has_exactly_one_entry():
    routes = project_routes()
    missing = sorted(
        f"{route!r} (url name {found.name!r})"
        for route, found in routes.items()
        if route not in MATRIX
    )
    stale = sorted(route for route in MATRIX if route not in routes)
    assert not missing, (
        "URL patterns without an entry in MATRIX (tests/security/"
        f"test_authorization_matrix.py): {', '.join(missing)}"
    )
    assert not stale, f"MATRIX entries for URL patterns that are gone: {stale}"


def test_matrix__methods__match_what_each_view_implements():
    """The table declares every method a view implements, and at least one it does
    not (so 405s are tested too)."""
    problems = []
    for route, found in project_routes().items():
        if route not in MATRIX or route == ADMIN_GROUP:
            continue
        declared = _declared(route)
        supported = {m for m, expect in declared.items() if expect.supported}
        unsupported = {m for m, expect in declared.items() if not expect.supported}
        if not unsupported:
            problems.append(f"{route}: declare at least one unsupported method")
        if found.supported is not None and supported != found.supported:
            problems.append(
                f"{route}: the view implements {sorted(found.supported)}, "
                f"MATRIX declares {sorted(supported)} as supported"
            )
    assert not problems, "\n".join(problems)


def test_principals__every_scope__has_a_key():
    principals = all_principals()
    for scope in key_scopes():
        assert key_principal(scope) in principals
    assert REVOKED in principals and "anonymous" in principals


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    return train_tiny_model(tmp_path_factory.mktemp("security-model"))


@pytest.fixture
def world(users, settings, tmp_path, tiny_model):
    from explanations import explainers

    settings.MODEL_ARTIFACT_DIR = tmp_path / "models"
    yield build_world(users, tiny_model)
    explainers.forget_explainers()


@pytest.fixture
def principals(users, api_key_for):
    return make_principals(users, api_key_for)


def _run(principals, paths: list[str], route: str, post_paths=None) -> list[str]:
    mismatches = []
    for method, expect in _declared(route).items():
        unsafe = method not in ("GET", "HEAD")
        for path in post_paths if unsafe and post_paths is not None else paths:
            for name in all_principals():
                response = principals[name].request(method, path)
                got = outcome_of(response)
                wanted = expect.outcome_for(name)
                if got != wanted:
                    mismatches.append(
                        f"{method} {path} as {name}: expected {wanted}, got {got} "
                        f"(HTTP {response.status_code})"
                    )
    return mismatches


@pytest.mark.parametrize("route", [r for r in MATRIX if r != ADMIN_GROUP])
def test_matrix__route__answers_each_principal_as_declared(
    route, principals, world, db
):
    mismatches = _run(principals, [fill_path(route, world)], route)
    assert not mismatches, "\n".join(mismatches)


def test_matrix__admin_site_sample__answers_each_principal_as_declared(
    principals, world, users
):
    # Every sampled page is read; one form (a surface) is posted, empty.
    mismatches = _run(
        principals,
        admin_sample_paths(world, users),
        ADMIN_GROUP,
        post_paths=["/admin/overrides/surface/add/"],
    )
    assert not mismatches, "\n".join(mismatches)


# Object-level checks and CSRF ---------------------------------------------------------


def test_deletion_request__agent_who_filed_it__cannot_open_detail_or_evidence(
    world, client_for
):
    # Given the support agent who filed the request (intake only)
    filer = client_for(world.filer)
    request_id = world.deletion_request.pk
    # Then neither its page, its evidence nor its API record opens for them
    for path in (
        f"/privacy/requests/{request_id}/",
        f"/privacy/requests/{request_id}/evidence.json",
        f"/privacy/requests/{request_id}/evidence.csv",
        f"/api/v1/privacy/deletion-requests/{request_id}",
    ):
        response = filer.get(path)
        assert response.status_code == 403, path
        assert b"cust-security-2" not in response.content
        assert world.deletion_request.customer_hash.encode() not in response.content


def test_api_key__of_one_scope__cannot_reach_another_scopes_objects(world, api_key_for):
    reachable_by = {
        f"/api/v1/blocks/{world.block.pk}": "overrides:write",
        f"/api/v1/boosts/{world.boost.pk}": "overrides:write",
        f"/api/v1/privacy/deletion-requests/{world.deletion_request.pk}": (
            "privacy:write"
        ),
        f"/api/v1/predictions/{world.prediction.prediction_id}/explanation": (
            "explanations:read"
        ),
    }
    keys = {scope: api_key_for(scope) for scope in key_scopes()}
    for path, scope in reachable_by.items():
        for other, raw in keys.items():
            response = Client().get(path, headers={"Authorization": f"Bearer {raw}"})
            wanted = 200 if other == scope else 403
            assert response.status_code == wanted, (path, other)


@pytest.mark.parametrize("parameter", ["api_key", "key", "token", "access_token"])
def test_api_key__in_query_string__is_refused(parameter, world, api_key_for):
    raw = api_key_for(*key_scopes())
    for path in (f"/api/v1/blocks/{world.block.pk}", "/api/v1/serving/snapshot"):
        alone = Client().get(path, {parameter: raw})
        assert alone.status_code == 401, path
        # Even beside a valid header: the key has leaked into a URL (and logs).
        both = Client().get(
            path, {parameter: raw}, headers={"Authorization": f"Bearer {raw}"}
        )
        assert both.status_code == 401, path
        assert b"query string" in both.content


def test_serving_endpoints__staff_session__never_authenticates(world, users):
    client, token = csrf_client(users["admin"])
    headers = {"X-CSRFToken": token}
    assert client.get("/api/v1/serving/snapshot").status_code == 401
    assert client.get("/api/v1/serving/changes?since=0").status_code == 401
    for path, body in (
        ("/api/v1/serving/rank", {"candidates": [{"item_id": "a", "score": 1}]}),
        ("/api/v1/serving/optouts/check", {"customer_ids": ["c-1"]}),
        ("/api/v1/serving/heartbeat", {"instance": "i-1", "version": 0}),
    ):
        response = client.post(
            path, body, content_type="application/json", headers=headers
        )
        assert response.status_code == 401, path


def test_session_post__without_csrf_token__is_refused_and_with_it_accepted(
    world, users
):
    # Given a support agent's browser-like session (CSRF enforced)
    client, token = csrf_client(users["support_agent"])
    form = {"item_id": "sku-csrf", "reason": "Recall", "surface": "", "region": ""}
    api_body = {
        "item_id": "sku-csrf-api",
        "reason": "Recall",
        "surface": None,
        "region": None,
    }
    # When they post without the token, then nothing is written
    assert client.post("/blocks/new/", form).status_code == 403
    assert (
        client.post(
            "/api/v1/blocks", api_body, content_type="application/json"
        ).status_code
        == 403
    )
    assert not Block.objects.filter(item_id__startswith="sku-csrf").exists()
    # When they post the form with its token (as a browser does), it is accepted
    accepted = client.post("/blocks/new/", {**form, "csrfmiddlewaretoken": token})
    assert accepted.status_code == 302
    api = client.post(
        "/api/v1/blocks",
        api_body,
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert api.status_code == 201
    assert Block.objects.filter(item_id__startswith="sku-csrf").count() == 2


def test_optout_page__support_agent__cannot_withdraw_with_a_valid_form(
    world, client_for
):
    from overrides.models import OptOut

    response = client_for(world.filer).post(
        "/privacy/optouts/",
        {
            "customer_id": "cust-security-2",
            "kinds": ["personalization"],
            "source": "ticket-2",
            "action": "withdraw",
        },
    )
    assert response.status_code == 403
    assert not OptOut.objects.filter(withdrawn_at__isnull=False).exists()
