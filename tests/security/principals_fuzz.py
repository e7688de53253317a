"""Helpers for the schemathesis run: the app under test, who calls it, what exists.

The app is Django's real WSGI handler (CSRF enforced, every middleware), called
in-process so each request sees the test's database transaction. Principals carry
real credentials: a signed-in session with its CSRF token, or a Bearer API key.
"""

from dataclasses import dataclass, field
from datetime import timedelta

import joblib
import numpy as np
import pandas as pd
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.middleware.csrf import get_token
from django.test import Client, RequestFactory
from django.utils import timezone

from explanations import services as explanation_services
from opsconsole.auth import ROLES
from opsconsole.models import ApiKeyScope
from opsconsole.services import api_key_create
from privacy import services as privacy_services
from tests.factories import UserFactory, make_block, make_boost
from tests.security.conftest_matrix import key_principal


class InProcessWSGIHandler(WSGIHandler):
    """Django's WSGI handler that keeps the test's database connection open.

    Django closes "obsolete" connections when a request starts and finishes; inside
    a test's transaction that would close it mid-test. Django's own test client
    disconnects the same receiver for the same reason (django.test.client).
    """

    def __call__(self, environ, start_response):
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
        try:
            response = super().__call__(environ, start_response)
            # Drain now: closing the response sends request_finished.
            body = b"".join(response)
            response.close()
        finally:
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)
        return [body]


# Principals ------------------------------------------------------------------------


PRINCIPALS = (*ROLES, *(key_principal(scope) for scope in ApiKeyScope.values))


@dataclass
class Principal:
    """What one principal sends: headers and, for a session, its cookies."""

    headers: dict[str, str]
    cookies: dict[str, str] = field(default_factory=dict)

    def call_kwargs(self) -> dict:
        return {"headers": self.headers, "cookies": self.cookies}


def session_principal(user) -> Principal:
    """A real session cookie plus a CSRF cookie and the matching header.

    The token comes from Django's own get_token(), so the CSRF middleware checks it
    exactly as it checks the browser's. The cookies go twice: in `cookies`, which the
    in-process (werkzeug) transport puts on the request, and as the `Cookie` header a
    real client sends, which is how schemathesis' ignored_auth check recognises them
    as the credentials to strip from its probes (werkzeug replaces that header by its
    own cookie jar, so the server sees them once).
    """
    client = Client()
    client.force_login(user)
    request = RequestFactory().get("/")
    token = get_token(request)
    cookies = {
        "sessionid": client.cookies["sessionid"].value,
        "csrftoken": request.META["CSRF_COOKIE"],
    }
    cookie_header = "; ".join(f"{name}={value}" for name, value in cookies.items())
    return Principal(
        headers={"Cookie": cookie_header, "X-CSRFToken": token}, cookies=cookies
    )


def make_principals(db_users: dict) -> dict[str, Principal]:
    """{principal: credentials}: one session per role and one key per scope."""
    principals = {role: session_principal(user) for role, user in db_users.items()}
    for scope in ApiKeyScope.values:
        _key, raw_key = api_key_create(
            name=f"fuzz-{scope.replace(':', '-')}", scopes=[scope]
        )
        principals[key_principal(scope)] = Principal(
            headers={"Authorization": f"Bearer {raw_key}"}
        )
    return principals


def make_users() -> dict:
    return {
        role: UserFactory(username=f"fuzz-{role.replace('_', '-')}", role=role)
        for role in ROLES
    }


# A small world of objects, so path ids can name real ones ---------------------------

FEATURES = ["tenure_months", "visits_last_week", "spend"]


@dataclass
class World:
    block_ids: list[int]
    boost_ids: list[int]
    prediction_id: str
    deletion_request_id: str


def _tiny_model(path):
    import lightgbm

    generator = np.random.default_rng(11)
    frame = pd.DataFrame(
        {name: generator.normal(10, 3, 120) for name in FEATURES}, columns=FEATURES
    )
    labels = (frame["visits_last_week"] > frame["visits_last_week"].median()).astype(
        int
    )
    model = lightgbm.LGBMClassifier(
        n_estimators=5, num_leaves=4, min_child_samples=5, verbose=-1
    )
    joblib.dump(model.fit(frame, labels), path)


def build_world(*, admin, artifact_dir) -> World:
    """Rules, a logged prediction with an active model, and a deletion request."""
    artifact_dir.mkdir(parents=True, exist_ok=True)
    artifact = artifact_dir / "fuzz-model.joblib"
    _tiny_model(artifact)
    model_version = explanation_services.register_model(
        name="fuzz_model", version="1", artifact_path=artifact, activate=True
    )
    explanation_services.log_predictions(
        records=[
            {
                "prediction_id": "fuzz-prediction-1",
                "model": model_version.name,
                "model_version": model_version.version,
                "customer_id": "fuzz-customer-1",
                "features": dict.fromkeys(FEATURES, 1.0),
                "output": 0.5,
            }
        ]
    )
    later = timezone.now() + timedelta(days=1)
    blocks = [
        make_block(admin, item_id="fuzz-sku-1"),
        make_block(admin, item_id="fuzz-sku-2", starts_at=later),
    ]
    boosts = [
        make_boost(admin, item_id="fuzz-sku-3"),
        make_boost(admin, item_id="fuzz-sku-4", starts_at=later),
    ]
    deletion = privacy_services.deletion_request_create(
        customer_id="fuzz-customer-2", source="fuzzing", actor=admin
    )
    return World(
        block_ids=[block.pk for block in blocks],
        boost_ids=[boost.pk for boost in boosts],
        prediction_id="fuzz-prediction-1",
        deletion_request_id=str(deletion.pk),
    )
