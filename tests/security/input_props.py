"""Shared pieces of the bad-input tests: Hypothesis settings, strategies, and a
snapshot of everything a write could leave behind.

The settings are a named profile chosen with HYPOTHESIS_PROFILE (default `ci`: 50
examples, derandomized, so a CI run is repeatable; `long`: 1,000 random examples).
They are applied per test rather than loaded globally, so other modules' Hypothesis
users (schemathesis) keep their own.
"""

import os
import unicodedata
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

_COMMON = {
    "deadline": None,
    "database": None,
    # Fixtures (users, settings) are set up once per test, not per example: each
    # example that writes runs inside its own rolled-back savepoint instead.
    "suppress_health_check": [
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
}
settings.register_profile("ci", max_examples=50, derandomize=True, **_COMMON)
settings.register_profile("long", max_examples=1000, **_COMMON)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
bounded = settings(settings.get_profile(PROFILE))

# The identifier rule (contract, Identifiers), stated independently of the code.
FORBIDDEN_CATEGORIES = ("Cc", "Cf", "Cs", "Co", "Zs", "Zl", "Zp")


def is_forbidden(character: str) -> bool:
    return character.isspace() or unicodedata.category(character) in (
        FORBIDDEN_CATEGORIES
    )


allowed_characters = st.characters(exclude_categories=FORBIDDEN_CATEGORIES).filter(
    lambda character: not character.isspace()
)
forbidden_characters = st.one_of(
    st.sampled_from(" \t\n\r\x00\x1f\x7f\x85\xa0\u00ad\u200b\u2028\u3000\ufeff"),
    st.characters(categories=FORBIDDEN_CATEGORIES),
)


def valid_ids(max_length: int) -> st.SearchStrategy[str]:
    return st.text(allowed_characters, min_size=1, max_size=max_length)


def invalid_ids(max_length: int, *, text_only: bool = False) -> st.SearchStrategy:
    """Ids the contract refuses: empty, too long, a forbidden character, not text."""
    with_forbidden = st.tuples(
        st.text(allowed_characters, max_size=20),
        forbidden_characters,
        st.text(allowed_characters, max_size=20),
    ).map("".join)
    text = [
        st.just(""),
        st.text(allowed_characters, min_size=max_length + 1, max_size=max_length + 40),
        with_forbidden,
    ]
    if text_only:
        return st.one_of(*text)
    return st.one_of(*text, st.sampled_from([None, 0, 1.5, ["sku-1"], {"id": "s"}]))


NEW_YORK = ZoneInfo("America/New_York")
KIRITIMATI = ZoneInfo("Pacific/Kiritimati")  # UTC+14: the far-future edge overflows
ZONES = [
    UTC,
    ZoneInfo("Europe/Berlin"),
    NEW_YORK,
    ZoneInfo("Australia/Lord_Howe"),  # a 30-minute DST shift
    ZoneInfo("Asia/Kolkata"),
    KIRITIMATI,
]


def aware_times(
    min_value: datetime = datetime(2000, 1, 1),
    max_value: datetime = datetime.max,
) -> st.SearchStrategy[datetime]:
    """Aware datetimes in zones with and without DST, folds included."""
    return st.datetimes(
        min_value=min_value,
        max_value=max_value,
        timezones=st.sampled_from(ZONES),
        allow_imaginary=True,
    )


def in_utc(moment: datetime) -> datetime | None:
    """The instant in UTC, or None when UTC cannot hold it (year 10000 or 0)."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return None


def future_window_times() -> st.SearchStrategy[datetime]:
    """Aware times from tomorrow to 2100 (so "in the future" is never borderline)."""
    start = datetime.now() + timedelta(days=1)  # naive by design
    return aware_times(min_value=start, max_value=datetime(2100, 1, 1))


@contextmanager
def rolled_back():
    """One Hypothesis example's writes, undone when it ends (a savepoint)."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def written_state() -> dict[str, int]:
    """Counts of every table a bad request could write to, and the override version."""
    from explanations.models import Prediction
    from overrides.models import (
        Block,
        Boost,
        OptOut,
        OverrideChange,
        OverrideVersion,
        ServingInstance,
    )
    from privacy.models import DeletionRequest, DownstreamDelivery, EvidenceEvent

    counted = {
        "blocks": Block.objects,
        "block_history": Block.history,
        "boosts": Boost.objects,
        "boost_history": Boost.history,
        "changes": OverrideChange.objects,
        "optouts": OptOut.objects,
        "optout_history": OptOut.history,
        "deletion_requests": DeletionRequest.objects,
        "deliveries": DownstreamDelivery.objects,
        "evidence": EvidenceEvent.objects,
        "predictions": Prediction.objects,
        "serving_instances": ServingInstance.objects,
    }
    state = {name: manager.count() for name, manager in counted.items()}
    state["version"] = OverrideVersion.objects.values_list("value", flat=True).get(
        pk=OverrideVersion.SINGLETON_ID
    )
    return state
