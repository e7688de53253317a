"""The database enforces the rules itself, for writes that bypass the services.

SQLite does it with triggers, PostgreSQL with CHECK and exclusion constraints; every
test here must pass on both (the suite runs once per database).
"""

import threading
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from opsconsole.errors import ConflictError
from overrides import services
from overrides.models import Block, Boost
from tests.factories import UserFactory

# The error names the guard: SQLite's trigger message or PostgreSQL's constraint.
BLOCK_OVERLAP = "overlapping block for the same item and scope|block_no_overlap"
BOOST_OVERLAP = "overlapping boost for the same item and scope|boost_no_overlap"

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@pytest.fixture
def actor(db):
    return UserFactory(username="shell-user")


@pytest.fixture
def now():
    return timezone.now()


def _insert_block(actor, *, item_id="sku-1", surface=None, region=None, **fields):
    return Block.objects.create(
        item_id=item_id,
        surface_id=surface,
        region_id=region,
        reason=fields.pop("reason", "Inserted directly"),
        created_by=actor,
        **fields,
    )


def _insert_boost(actor, *, item_id="sku-2", surface=None, region=None, **fields):
    return Boost.objects.create(
        item_id=item_id,
        surface_id=surface,
        region_id=region,
        reason=fields.pop("reason", "Inserted directly"),
        factor=fields.pop("factor", 2.0),
        created_by=actor,
        **fields,
    )


# Overlapping blocks ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("surface", "region"),
    [
        pytest.param(None, None, id="global"),
        pytest.param("home", None, id="surface-only"),
        pytest.param(None, "SG", id="region-only"),
        pytest.param("home", "SG", id="surface-and-region"),
    ],
)
def test_block_insert__overlapping_open_block_same_scope__integrity_error(
    actor, now, surface, region
):
    _insert_block(actor, surface=surface, region=region, starts_at=now)

    with pytest.raises(IntegrityError, match=BLOCK_OVERLAP), transaction.atomic():
        _insert_block(
            actor, surface=surface, region=region, starts_at=now + DAY, expires_at=None
        )

    assert Block.objects.filter(item_id="sku-1").count() == 1


def test_block_insert__bounded_windows_overlapping_by_one_second__integrity_error(
    actor, now
):
    _insert_block(actor, starts_at=now, expires_at=now + HOUR)

    with pytest.raises(IntegrityError, match=BLOCK_OVERLAP), transaction.atomic():
        _insert_block(
            actor,
            starts_at=now + HOUR - timedelta(seconds=1),
            expires_at=now + 2 * HOUR,
        )

    assert Block.objects.count() == 1


def test_block_insert__window_starts_when_previous_expires__allowed(actor, now):
    _insert_block(actor, starts_at=now, expires_at=now + HOUR)

    _insert_block(actor, starts_at=now + HOUR, expires_at=None)

    assert Block.objects.filter(item_id="sku-1").count() == 2


def test_block_insert__window_ends_when_next_starts__allowed(actor, now):
    _insert_block(actor, starts_at=now + HOUR, expires_at=None)

    _insert_block(actor, starts_at=now, expires_at=now + HOUR)

    assert Block.objects.filter(item_id="sku-1").count() == 2


def test_block_insert__previous_block_lifted__allowed(actor, now):
    _insert_block(actor, starts_at=now - HOUR, withdrawn_at=now, withdrawn_by=actor)

    _insert_block(actor, starts_at=now)

    assert Block.objects.filter(item_id="sku-1", withdrawn_at__isnull=True).count() == 1


def test_block_insert__new_block_inserted_already_withdrawn__allowed(actor, now):
    _insert_block(actor, starts_at=now)

    _insert_block(actor, starts_at=now, withdrawn_at=now, withdrawn_by=actor)

    assert Block.objects.filter(item_id="sku-1").count() == 2


@pytest.mark.parametrize(
    ("first_scope", "second_scope"),
    [
        pytest.param((None, None), ("home", None), id="global-vs-surface"),
        pytest.param((None, None), (None, "SG"), id="global-vs-region"),
        pytest.param(("home", "SG"), ("home", "AE"), id="other-region"),
        pytest.param(("home", "SG"), ("search", "SG"), id="other-surface"),
    ],
)
def test_block_insert__same_item_other_scope__allowed(
    actor, now, first_scope, second_scope
):
    _insert_block(actor, surface=first_scope[0], region=first_scope[1], starts_at=now)

    _insert_block(actor, surface=second_scope[0], region=second_scope[1], starts_at=now)

    assert Block.objects.filter(item_id="sku-1").count() == 2


def test_block_insert__other_item_same_scope__allowed(actor, now):
    _insert_block(actor, item_id="sku-1", starts_at=now)

    _insert_block(actor, item_id="sku-10", starts_at=now)

    assert Block.objects.count() == 2


def test_block_update__reopening_lifted_block_over_open_one__integrity_error(
    actor, now
):
    lifted = _insert_block(
        actor, starts_at=now - HOUR, withdrawn_at=now, withdrawn_by=actor
    )
    _insert_block(actor, starts_at=now)

    with pytest.raises(IntegrityError, match=BLOCK_OVERLAP), transaction.atomic():
        Block.objects.filter(pk=lifted.pk).update(withdrawn_at=None, withdrawn_by=None)

    lifted.refresh_from_db()
    assert lifted.withdrawn_at == now


def test_block_update__extending_into_next_window__integrity_error(actor, now):
    first = _insert_block(actor, starts_at=now, expires_at=now + HOUR)
    _insert_block(actor, starts_at=now + 2 * HOUR)

    with pytest.raises(IntegrityError, match=BLOCK_OVERLAP), transaction.atomic():
        Block.objects.filter(pk=first.pk).update(expires_at=now + 3 * HOUR)

    first.refresh_from_db()
    assert first.expires_at == now + HOUR


def test_block_update__saving_open_block_unchanged__allowed(actor, now):
    block = _insert_block(actor, starts_at=now)

    block.reason = "Edited in a shell"
    block.save()

    block.refresh_from_db()
    assert block.reason == "Edited in a shell"


# Overlapping boosts ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("surface", "region"),
    [
        pytest.param(None, None, id="global"),
        pytest.param("search", "AE", id="surface-and-region"),
    ],
)
def test_boost_insert__overlapping_open_boost_same_scope__integrity_error(
    actor, now, surface, region
):
    _insert_boost(
        actor, surface=surface, region=region, starts_at=now, ends_at=now + 2 * DAY
    )

    with pytest.raises(IntegrityError, match=BOOST_OVERLAP), transaction.atomic():
        _insert_boost(
            actor,
            surface=surface,
            region=region,
            factor=3.0,
            starts_at=now + DAY,
            ends_at=now + 3 * DAY,
        )

    assert Boost.objects.filter(item_id="sku-2").count() == 1


def test_boost_insert__adjacent_windows__allowed(actor, now):
    _insert_boost(actor, starts_at=now, ends_at=now + DAY)

    _insert_boost(actor, starts_at=now + DAY, ends_at=now + 2 * DAY)

    assert Boost.objects.filter(item_id="sku-2").count() == 2


def test_boost_insert__previous_boost_ended_early__allowed(actor, now):
    _insert_boost(
        actor,
        starts_at=now - HOUR,
        ends_at=now + DAY,
        withdrawn_at=now,
        withdrawn_by=actor,
    )

    _insert_boost(actor, starts_at=now, ends_at=now + DAY)

    assert Boost.objects.filter(item_id="sku-2").count() == 2


def test_boost_insert__same_item_other_scope__allowed(actor, now):
    _insert_boost(actor, starts_at=now, ends_at=now + DAY)

    _insert_boost(actor, surface="email", starts_at=now, ends_at=now + DAY)

    assert Boost.objects.filter(item_id="sku-2").count() == 2


def test_block_and_boost__same_item_same_scope_same_window__allowed(actor, now):
    _insert_block(actor, item_id="sku-3", starts_at=now)

    _insert_boost(actor, item_id="sku-3", starts_at=now, ends_at=now + DAY)

    assert Block.objects.filter(item_id="sku-3").count() == 1
    assert Boost.objects.filter(item_id="sku-3").count() == 1


# CHECK constraints ----------------------------------------------------------------


@pytest.mark.parametrize(
    "factor",
    [
        pytest.param(1.0, id="exactly-1"),
        pytest.param(0.5, id="below-1"),
        pytest.param(0.0, id="zero"),
        pytest.param(-2.0, id="negative"),
        pytest.param(100.01, id="above-ceiling"),
    ],
)
def test_boost_insert__factor_out_of_bounds__integrity_error(actor, now, factor):
    with (
        pytest.raises(IntegrityError, match="boost_factor_bounds"),
        transaction.atomic(),
    ):
        _insert_boost(actor, factor=factor, starts_at=now, ends_at=now + DAY)

    assert Boost.objects.count() == 0


@pytest.mark.parametrize("factor", [1.000001, 100.0])
def test_boost_insert__factor_at_database_bounds__allowed(actor, now, factor):
    _insert_boost(actor, factor=factor, starts_at=now, ends_at=now + DAY)

    assert Boost.objects.get().factor == factor


@pytest.mark.parametrize(
    "offset",
    [pytest.param(timedelta(0), id="equal"), pytest.param(-HOUR, id="before")],
)
def test_boost_insert__ends_at_not_after_starts_at__integrity_error(actor, now, offset):
    with (
        pytest.raises(IntegrityError, match="boost_ends_after_start"),
        transaction.atomic(),
    ):
        _insert_boost(actor, starts_at=now, ends_at=now + offset)

    assert Boost.objects.count() == 0


@pytest.mark.parametrize(
    "offset",
    [pytest.param(timedelta(0), id="equal"), pytest.param(-HOUR, id="before")],
)
def test_block_insert__expires_at_not_after_starts_at__integrity_error(
    actor, now, offset
):
    with (
        pytest.raises(IntegrityError, match="block_expires_after_start"),
        transaction.atomic(),
    ):
        _insert_block(actor, starts_at=now, expires_at=now + offset)

    assert Block.objects.count() == 0


def test_block_insert__empty_reason__integrity_error(actor, now):
    with (
        pytest.raises(IntegrityError, match="block_reason_required"),
        transaction.atomic(),
    ):
        _insert_block(actor, starts_at=now, reason="")

    assert Block.objects.count() == 0


def test_boost_insert__empty_reason__integrity_error(actor, now):
    with (
        pytest.raises(IntegrityError, match="boost_reason_required"),
        transaction.atomic(),
    ):
        _insert_boost(actor, starts_at=now, ends_at=now + DAY, reason="")

    assert Boost.objects.count() == 0


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_block_item__two_agents_at_once__one_block_and_one_conflict(agent):
    """The version row lock serializes writers, so the overlap check cannot race."""
    barrier = threading.Barrier(2)
    outcomes = []

    def attempt():
        barrier.wait()
        try:
            services.block_item(
                item_id="sku-race",
                surface="home",
                region="SA",
                reason="Race",
                actor=agent,
            )
            outcomes.append("blocked")
        except ConflictError:
            outcomes.append("conflict")
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["blocked", "conflict"]
    assert Block.objects.filter(item_id="sku-race").count() == 1
