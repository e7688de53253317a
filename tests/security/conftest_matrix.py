"""Helpers for the security tests: the URL walk, principals, a world of objects,
aged sessions and /metrics values.

Not a conftest.py (other engineers write under tests/security/ too): the test modules
import what they need from here.
"""

import re
from dataclasses import dataclass, field
from datetime import timedelta

import joblib
from django.contrib.admin.sites import site as admin_site
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from opsconsole.middleware import SESSION_SEEN_KEY, SESSION_STARTED_KEY
from opsconsole.models import ApiKeyScope
from tests.factories import UserFactory, make_block, make_boost

PEOPLE = ("anonymous", "support_agent", "account_manager", "privacy_officer", "admin")
REVOKED = "revoked-key"
ADMIN_GROUP = "admin/…"
LOGIN_PATHS = ("/login/", "/admin/login/")


def key_principal(scope: str) -> str:
    return f"key:{scope}"


def key_scopes() -> list[str]:
    """Every scope the project knows: a new one gets its own key automatically."""
    return list(ApiKeyScope.values)


def all_principals() -> list[str]:
    return [*PEOPLE, *(key_principal(scope) for scope in key_scopes()), REVOKED]


# The URL walk ---------------------------------------------------------------------

_NAMED_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")


def readable_route(route: str) -> str:
    """`api/v1/^blocks/(?P<pk>[^/.]+)/lift$` -> `api/v1/blocks/<pk>/lift`."""
    route = _NAMED_GROUP.sub(r"<\1>", route)
    return route.replace("^", "").replace("$", "").replace("\\.", ".")


@dataclass
class Route:
    route: str  # readable, the table's key
    name: str
    pattern: URLPattern
    supported: set[str] | None = field(default=None)  # None: cannot be introspected


def supported_methods(pattern: URLPattern) -> set[str] | None:
    """The HTTP methods a view answers other than with 405 (OPTIONS left out).

    Function views cannot be introspected (their decorators decide): None.
    """
    callback = pattern.callback
    actions = getattr(callback, "actions", None)
    if actions is not None:  # a DRF viewset route
        methods = {method.upper() for method in actions}
    elif hasattr(callback, "view_class"):
        view_class = callback.view_class
        methods = {
            method.upper()
            for method in view_class.http_method_names
            if method != "options" and hasattr(view_class, method)
        }
    else:
        return None
    if "GET" in methods:
        methods.add("HEAD")  # Django and DRF answer HEAD with the GET handler
    return methods


def walk_urlconf(urlconf: str = "opsconsole.urls") -> list[Route]:
    """Every URL pattern of the project, included apps too; admin/ folded into one."""
    routes: list[Route] = []

    def walk(patterns, prefix: str, namespace: str) -> None:
        for pattern in patterns:
            text = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                inner = pattern.namespace or ""
                walk(
                    pattern.url_patterns,
                    text,
                    f"{namespace}{inner}:" if inner else namespace,
                )
                continue
            routes.append(
                Route(
                    route=readable_route(text),
                    name=f"{namespace}{pattern.name or ''}",
                    pattern=pattern,
                    supported=supported_methods(pattern),
                )
            )

    walk(get_resolver(urlconf).url_patterns, "", "")
    return routes


def project_routes() -> dict[str, Route]:
    """{readable route: Route}, with every admin/ pattern under ADMIN_GROUP."""
    found: dict[str, Route] = {}
    for route in walk_urlconf():
        key = ADMIN_GROUP if route.route.startswith("admin/") else route.route
        found.setdefault(key, route)
    return found


# Outcomes --------------------------------------------------------------------------


def outcome_of(response) -> str:
    """One word for what a response means to the caller.

    "login": a redirect to a login page; "redirect": any other 3xx; 401, 403, 404,
    405 as such; "500" for any 5xx (a crash or an outage: never what an allowed
    principal should get, so it fails the matrix); anything else (2xx, 400, 409,
    410...) is "ok": the request got past authentication and authorization.
    """
    status = response.status_code
    if status in (301, 302, 303, 307, 308):
        location = response.get("Location", "")
        if any(location.startswith(path) for path in LOGIN_PATHS):
            return "login"
        return "redirect"
    if status in (401, 403, 404, 405):
        return str(status)
    if status >= 500:
        return "500"
    return "ok"


# Principals ------------------------------------------------------------------------


def csrf_client(user=None) -> tuple[Client, str]:
    """A browser-like client: CSRF enforced, token taken from the login page's cookie
    before signing in (a login does not change the cookie the client holds)."""
    client = Client(enforce_csrf_checks=True)
    client.get("/login/")
    token = client.cookies["csrftoken"].value
    if user is not None:
        client.force_login(user)
    return client, token


@dataclass
class Principal:
    name: str
    client: Client
    headers: dict = field(default_factory=dict)

    def request(self, method: str, path: str, **kwargs):
        """An empty body: a form post for pages, `{}` as JSON for the REST API (what
        its parsers accept, so a refusal is about who asks, not the media type)."""
        if path.startswith("/api/") and method not in ("GET", "HEAD"):
            kwargs.setdefault("data", "{}")
            kwargs.setdefault("content_type", "application/json")
        return getattr(self.client, method.lower())(
            path, headers=self.headers, **kwargs
        )


def make_principals(users: dict, api_key_for) -> dict[str, Principal]:
    """Anonymous and one session per role (CSRF enforced, the token sent as a
    browser's JavaScript would), one key per scope, and a revoked key."""
    from opsconsole import services
    from opsconsole.models import ApiKey

    principals = {}
    for name in PEOPLE:
        user = None if name == "anonymous" else users[name]
        client, token = csrf_client(user)
        principals[name] = Principal(name, client, {"X-CSRFToken": token})
    for scope in key_scopes():
        raw = api_key_for(scope)
        principals[key_principal(scope)] = Principal(
            key_principal(scope), Client(), {"Authorization": f"Bearer {raw}"}
        )
    raw = api_key_for(*key_scopes())
    key = ApiKey.objects.get(prefix=raw[:12])
    services.api_key_revoke(key_id=key.pk, actor=users["admin"])
    principals[REVOKED] = Principal(
        REVOKED, Client(), {"Authorization": f"Bearer {raw}"}
    )
    return principals


# A world of objects for the path parameters -----------------------------------------


@dataclass
class World:
    block: object
    boost: object
    deletion_request: object
    prediction: object
    api_key: object
    downstream: object
    filer: object  # the support agent who filed the deletion request

    def path_kwargs(self) -> dict[str, str]:
        return {
            "pk": None,  # depends on the route: see fill_path
            "item_id": self.block.item_id,
            "prediction_id": self.prediction.prediction_id,
            "request_id": str(self.deletion_request.pk),
            "extension": "json",
            "downstream_id": str(self.downstream.pk),
        }


def train_tiny_model(directory) -> tuple:
    """One small LightGBM regressor and its feature file (train once per session)."""
    import json

    from tests.explanations.conftest import FEATURES, _train, _training_data

    frame, labels, target = _training_data()
    artifact = directory / "model.joblib"
    joblib.dump(_train("lightgbm-regressor", frame, labels, target), artifact)
    features = directory / "FEATURES.json"
    features.write_text(json.dumps({"features": FEATURES}))
    return artifact, features


def build_world(users: dict, tiny_model: tuple) -> World:
    """One of each object a URL can name, made through the real services.

    Call with settings.MODEL_ARTIFACT_DIR pointing at a fresh directory.
    """
    from explanations import explainers
    from explanations import services as explanation_services
    from explanations.models import Prediction
    from opsconsole import services as key_services
    from privacy import services as privacy_services
    from tests.explanations.conftest import ROW

    explainers.forget_explainers()
    artifact, features = tiny_model
    model_version = explanation_services.register_model(
        name="security-model",
        version="1",
        artifact_path=artifact,
        features_path=features,
        activate=True,
    )
    explanation_services.log_predictions(
        records=[
            {
                "prediction_id": "pred-security-1",
                "model": model_version.name,
                "model_version": model_version.version,
                "customer_id": "cust-security-1",
                "features": dict(ROW),
                "output": 0.42,
            }
        ]
    )
    filer = UserFactory(username="filing-agent", role="support_agent")
    deletion_request = privacy_services.deletion_request_create(
        customer_id="cust-security-2", source="ticket-1", actor=filer
    )
    # Made after the request, so the request has no delivery to retry.
    downstream = privacy_services.downstream_create(
        name="crm",
        url="http://127.0.0.1:9/delete",
        secret="s" * 20,
        actor=users["admin"],
    )
    api_key, _raw = key_services.api_key_create(
        name="target-key", scopes=["serving:read"], actor=users["admin"]
    )
    return World(
        block=make_block(users["support_agent"], item_id="sku-security-1"),
        boost=make_boost(
            users["account_manager"],
            item_id="sku-security-2",
            ends_at=timezone.now() + timedelta(days=3),
        ),
        deletion_request=deletion_request,
        prediction=Prediction.objects.get(prediction_id="pred-security-1"),
        api_key=api_key,
        downstream=downstream,
        filer=filer,
    )


_PK_OBJECTS = {
    "settings/api-keys/": "api_key",
    "blocks/": "block",
    "api/v1/blocks/": "block",
    "boosts/": "boost",
    "api/v1/boosts/": "boost",
}


def fill_path(route: str, world: World) -> str:
    """The route with its parameters replaced by the world's real objects."""
    values = world.path_kwargs()
    if "<" in route and "pk>" in route:
        prefix = next(p for p in _PK_OBJECTS if route.startswith(p))
        values["pk"] = str(getattr(world, _PK_OBJECTS[prefix]).pk)

    def value(match: re.Match) -> str:
        name = match.group(1).split(":")[-1]
        return values[name]

    return "/" + re.sub(r"<([\w:]+)>", value, route)


def admin_sample_paths(world: World, users: dict) -> list[str]:
    """A representative sample of the admin site: its index, every registered
    model's list, and the change and history pages of a few objects."""
    paths = ["/admin/"]
    for model in admin_site._registry:
        meta = model._meta
        paths.append(f"/admin/{meta.app_label}/{meta.model_name}/")
    paths += [
        f"/admin/overrides/block/{world.block.pk}/change/",
        f"/admin/overrides/block/{world.block.pk}/history/",
        f"/admin/auth/user/{users['support_agent'].pk}/change/",
        "/admin/overrides/surface/add/",
    ]
    return paths


# Sessions and metrics --------------------------------------------------------------


def age_session(client, *, started: float, seen: float) -> None:
    """Set when the client's session started and was last seen (epoch seconds)."""
    session = client.session
    session[SESSION_STARTED_KEY] = started
    session[SESSION_SEEN_KEY] = seen
    session.save()


def metric_value(body: str, name: str, **labels) -> float:
    """One sample of a /metrics page: `name`, with exactly these labels if given."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "")
    match = re.search(rf"^{pattern} (\S+)$", body, re.MULTILINE)
    assert match, f"{name}{{{wanted}}} not in /metrics"
    return float(match.group(1))
