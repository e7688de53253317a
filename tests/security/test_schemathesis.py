"""schemathesis against the project's own OpenAPI schema (/api/schema/).

Every operation is fuzzed in positive and negative data-generation mode, through
the real WSGI stack (CSRF enforced), as every principal allowed to call it: the
session users support_agent, account_manager, privacy_officer, admin, and an API
key for each scope that grants it. Every schemathesis check runs on every
response (no server errors, response schema, status codes, content types,
headers, ignored auth, negative data rejected, positive data accepted, ...).

Bounded by SCHEMATHESIS_MAX_EXAMPLES (fuzzing examples per operation and mode,
default 8); `make fuzz` runs a longer pass. Deterministic: a fixed seed and no
example database.
"""

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.config._checks import NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES
from schemathesis.generation.case import Case

from overrides.api.serializers import IDENTIFIER_FORMAT

from .principals_fuzz import (
    PRINCIPALS,
    InProcessWSGIHandler,
    build_world,
    key_principal,
    make_principals,
    make_users,
)

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "8"))
SEED = int(os.environ.get("SCHEMATHESIS_SEED", "20261123"))

AGENT, MANAGER, OFFICER, ADMIN = (
    "support_agent",
    "account_manager",
    "privacy_officer",
    "admin",
)
OVERRIDES_KEY = key_principal("overrides:write")
SERVING_KEY = key_principal("serving:read")
PREDICTIONS_KEY = key_principal("predictions:write")
EXPLANATIONS_KEY = key_principal("explanations:read")
PRIVACY_KEY = key_principal("privacy:write")

# Who may call each operation (README, Roles and REST API): each case is sent as
# each of them. A new operation without an entry fails test_every_operation__...
ALLOWED = {
    "GET /api/v1/blocks": [AGENT, MANAGER, ADMIN, OVERRIDES_KEY],
    "POST /api/v1/blocks": [AGENT, ADMIN, OVERRIDES_KEY],
    "GET /api/v1/blocks/{id}": [AGENT, MANAGER, ADMIN, OVERRIDES_KEY],
    "POST /api/v1/blocks/{id}/lift": [AGENT, ADMIN, OVERRIDES_KEY],
    "POST /api/v1/blocks/bulk": [AGENT, ADMIN, OVERRIDES_KEY],
    "GET /api/v1/boosts": [AGENT, MANAGER, ADMIN, OVERRIDES_KEY],
    "POST /api/v1/boosts": [MANAGER, ADMIN, OVERRIDES_KEY],
    "GET /api/v1/boosts/{id}": [AGENT, MANAGER, ADMIN, OVERRIDES_KEY],
    "POST /api/v1/boosts/{id}/end": [MANAGER, ADMIN, OVERRIDES_KEY],
    "GET /api/v1/audit": [ADMIN],
    "GET /api/v1/serving/snapshot": [SERVING_KEY],
    "POST /api/v1/serving/rank": [SERVING_KEY],
    "POST /api/v1/serving/optouts/check": [SERVING_KEY],
    "GET /api/v1/serving/changes": [SERVING_KEY],
    "POST /api/v1/serving/heartbeat": [SERVING_KEY],
    "POST /api/v1/predictions": [ADMIN, PREDICTIONS_KEY],
    "GET /api/v1/predictions/{prediction_id}/explanation": [
        AGENT,
        ADMIN,
        EXPLANATIONS_KEY,
    ],
    "POST /api/v1/privacy/optouts": [AGENT, OFFICER, ADMIN, PRIVACY_KEY],
    "POST /api/v1/privacy/optouts/withdraw": [OFFICER, ADMIN, PRIVACY_KEY],
    "GET /api/v1/privacy/optouts/training-export": [OFFICER, ADMIN, PRIVACY_KEY],
    "POST /api/v1/privacy/deletion-requests": [AGENT, OFFICER, ADMIN, PRIVACY_KEY],
    "GET /api/v1/privacy/deletion-requests/{request_id}": [
        OFFICER,
        ADMIN,
        PRIVACY_KEY,
    ],
}

# positive_data_acceptance is off for these operations only, each for a reason the
# schema cannot express (genuine false positives: every other check still runs,
# and negative data must still be rejected). A schema-valid body can be refused
# with a 400 because validity depends on the server's state or the clock:
STATE_DEPENDENT_VALIDITY = {
    # surface/region must be configured ones (admin settings, in the database); the
    # time window is relative to now; an overlapping open rule is refused.
    "POST /api/v1/blocks": "configured scopes, now, overlaps",
    # the same, plus factor <= BOOST_MAX_FACTOR and ends_at - starts_at <=
    # BOOST_MAX_DAYS (a relation between two fields).
    "POST /api/v1/boosts": "configured scopes, now, overlaps, window length",
    # a CSV body is `format: binary`: any bytes are schema-valid; its rows meet the
    # same rules as POST /api/v1/blocks (a row blocking again what an earlier
    # example blocked is a 400 row report, by the bulk contract).
    "POST /api/v1/blocks/bulk": "free-form CSV rows, configured scopes, overlaps",
    # model and model_version must be registered; the feature names are that
    # model's own (the registry, in the database).
    "POST /api/v1/predictions": "registered models and their feature names",
    # candidates' item_ids must be unique (contract: a duplicate is a 400); JSON
    # Schema's uniqueItems compares whole objects, so {"item_id": "a", "score": 1}
    # and {"item_id": "a", "score": 2} are schema-valid together.
    "POST /api/v1/serving/rank": "unique item_id across candidates",
    # received_at is optional but may not lie in the future (relative to now; the
    # deadline runs from it), which a date-time format cannot say.
    "POST /api/v1/privacy/deletion-requests": "received_at not after now",
}

# The identifier format of the schema (contract, Identifiers): no whitespace,
# control, formatting, surrogate or private-use character in any plane. Its JSON
# Schema pattern can only name the Basic Multilingual Plane (ECMA-262 without the
# `u` flag), so the generator learns the rest here.
schemathesis.openapi.format(
    IDENTIFIER_FORMAT,
    st.text(
        st.characters(exclude_categories=("Cc", "Cf", "Cs", "Co", "Zs", "Zl", "Zp")),
        min_size=1,
        max_size=64,
    ),
)

APPLICATION = InProcessWSGIHandler()


def _config(mode: str) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {
                "mode": mode,
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
                # Credentials are the principals'; ignored_auth still probes
                # every operation without them and with invalid ones.
                "with-security-parameters": False,
            },
            # The contract answers a body over the size limit with 413: a
            # rejection as good as a 400 (a negative case may grow past it).
            "checks": {
                "negative_data_rejection": {
                    "expected-statuses": [
                        *NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES,
                        "413",
                    ]
                }
            },
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},
            },
            "operations": [
                {
                    "include-name": label,
                    "checks": {"positive_data_acceptance": {"enabled": False}},
                }
                for label in STATE_DEPENDENT_VALIDITY
            ],
        }
    )


positive_schema = schemathesis.openapi.from_wsgi(
    "/api/schema/", APPLICATION, config=_config("positive")
)
negative_schema = schemathesis.openapi.from_wsgi(
    "/api/schema/", APPLICATION, config=_config("negative")
)


def _without_identifier_format(node) -> None:
    """Drop the identifier format from a schema, in place, keeping its pattern.

    In negative mode schemathesis counts any value of a format it does not know as
    a violation (it has no checker for custom formats), so every valid id it draws
    there would be "invalid data accepted". The pattern still states the rule for
    the mutations to break; positive mode keeps the format (it names the rule in
    every plane, which the pattern cannot).
    """
    if isinstance(node, dict):
        if node.get("format") == IDENTIFIER_FORMAT:
            del node["format"]
        for child in node.values():
            _without_identifier_format(child)
    elif isinstance(node, list):
        for child in node:
            _without_identifier_format(child)


_without_identifier_format(negative_schema.raw_schema)

CASES_RUN: dict[str, int] = {}


@pytest.fixture
def fuzz_world(db, settings, tmp_path):
    """Users, their credentials and a few objects that path ids can name."""
    from explanations import explainers

    settings.MODEL_ARTIFACT_DIR = tmp_path / "models"
    explainers.forget_explainers()
    users = make_users()
    world = build_world(admin=users[ADMIN], artifact_dir=settings.MODEL_ARTIFACT_DIR)
    yield make_principals(users), world
    explainers.forget_explainers()


def _known_ids(case: Case, world) -> list[dict]:
    """Path parameters naming real objects, for positive cases with an id."""
    label = case.operation.label
    if "/blocks/{id}" in label:
        return [{"id": pk} for pk in world.block_ids]
    if "/boosts/{id}" in label:
        return [{"id": pk} for pk in world.boost_ids]
    if "{prediction_id}" in label:
        return [{"prediction_id": world.prediction_id}]
    if "{request_id}" in label:
        return [{"request_id": world.deletion_request_id}]
    return []


def _send_as_allowed(case: Case, headers_by_principal: dict, mode: str) -> None:
    for principal in ALLOWED[case.operation.label]:
        credentials = headers_by_principal[principal]
        response = case.call_and_validate(**credentials.call_kwargs())
        CASES_RUN[mode] = CASES_RUN.get(mode, 0) + 1
        # The principal is allowed: a refusal means the credentials were not used.
        assert response.status_code not in (401, 403), (
            principal,
            response.status_code,
            response.text[:300],
        )


# One world per operation and mode, shared by its examples on purpose: rules the
# earlier examples created make the later ones meet conflicts and lifted rules.
SHARED_WORLD = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@positive_schema.parametrize()
@SHARED_WORLD
def test_api__positive_data__conforms(case, fuzz_world):
    headers_by_principal, world = fuzz_world
    _send_as_allowed(case, headers_by_principal, "positive")
    for parameters in _known_ids(case, world):
        case.path_parameters = {**case.path_parameters, **parameters}
        _send_as_allowed(case, headers_by_principal, "positive")


@negative_schema.parametrize()
@SHARED_WORLD
def test_api__negative_data__rejected(case, fuzz_world):
    headers_by_principal, _world = fuzz_world
    _send_as_allowed(case, headers_by_principal, "negative")


def test_every_operation__has_allowed_principals__declared(request):
    operations = {result.ok().label for result in positive_schema.get_all_operations()}
    assert operations == set(ALLOWED)
    assert {p for allowed in ALLOWED.values() for p in allowed} <= set(PRINCIPALS)
    # Last in the module, so it can say how many requests the fuzzing sent.
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    if reporter is not None and CASES_RUN:
        counts = ", ".join(f"{mode} {count}" for mode, count in CASES_RUN.items())
        with plugins.get_plugin("capturemanager").global_and_fixture_disabled():
            reporter.write_line(
                f"\nschemathesis: {sum(CASES_RUN.values())} requests ({counts})"
            )
