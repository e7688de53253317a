"""Rule status boundaries, the time-window queryset filters and identifier rules."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from opsconsole.identifiers import validate_customer_id, validate_item_id
from overrides.models import Block, Boost, CatalogItem, RuleStatus
from tests.factories import UserFactory

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
def actor(db):
    return UserFactory(username="model-tester")


def _block(**fields) -> Block:
    return Block(item_id="sku-1", reason="Unsafe", **fields)


def _boost(**fields) -> Boost:
    return Boost(item_id="sku-2", reason="Launch", factor=2.0, **fields)


# status_at ------------------------------------------------------------------------


def test_block_status_at__starts_exactly_now__is_active():
    assert _block(starts_at=NOW).status_at(NOW) == RuleStatus.ACTIVE


def test_block_status_at__starts_one_microsecond_later__is_scheduled():
    block = _block(starts_at=NOW + timedelta(microseconds=1))

    assert block.status_at(NOW) == RuleStatus.SCHEDULED


def test_block_status_at__expires_exactly_now__is_expired():
    block = _block(starts_at=NOW - HOUR, expires_at=NOW)

    assert block.status_at(NOW) == RuleStatus.EXPIRED


def test_block_status_at__expires_one_microsecond_later__is_active():
    block = _block(starts_at=NOW - HOUR, expires_at=NOW + timedelta(microseconds=1))

    assert block.status_at(NOW) == RuleStatus.ACTIVE


def test_block_status_at__no_expiry__stays_active_forever():
    block = _block(starts_at=NOW - HOUR, expires_at=None)

    assert block.status_at(NOW + timedelta(days=3650)) == RuleStatus.ACTIVE


def test_block_status_at__lifted_before_expiry__is_lifted():
    block = _block(starts_at=NOW - HOUR, expires_at=NOW + HOUR)
    block.withdrawn_at = NOW - HOUR / 2

    assert block.status_at(NOW) == RuleStatus.LIFTED


def test_block_status_at__lifted_then_window_passed__still_lifted():
    block = _block(starts_at=NOW - 2 * HOUR, expires_at=NOW - HOUR)
    block.withdrawn_at = NOW - 90 * timedelta(minutes=1)

    assert block.status_at(NOW) == RuleStatus.LIFTED


def test_boost_status_at__ended_early__is_ended():
    boost = _boost(starts_at=NOW - HOUR, ends_at=NOW + HOUR, withdrawn_at=NOW)

    assert boost.status_at(NOW) == RuleStatus.ENDED
    assert RuleStatus(boost.status_at(NOW)).label == "Ended early"


def test_boost_status_at__ends_exactly_now__is_expired():
    boost = _boost(starts_at=NOW - HOUR, ends_at=NOW)

    assert boost.status_at(NOW) == RuleStatus.EXPIRED


def test_rule_is_open__scheduled_or_active__true_and_expired__false():
    now = timezone.now()

    assert _block(starts_at=now + HOUR).is_open is True
    assert _block(starts_at=now - HOUR).is_open is True
    assert _block(starts_at=now - 2 * HOUR, expires_at=now - HOUR).is_open is False


def test_rule_scope_label__nulls__read_as_all():
    assert _block(starts_at=NOW).scope_label == "all surfaces · all regions"
    assert (
        _block(starts_at=NOW, surface_id="home", region_id="SG").scope_label
        == "home · SG"
    )


# clean ----------------------------------------------------------------------------


def test_block_clean__expires_at_equals_starts_at__error_on_expires_at():
    block = _block(starts_at=NOW, expires_at=NOW)

    with pytest.raises(ValidationError) as caught:
        block.clean()

    assert caught.value.message_dict == {
        "expires_at": ["The end must be after the start."]
    }


def test_block_clean__whitespace_reason__error_on_reason():
    block = Block(item_id="sku-1", reason=" \t ", starts_at=NOW)

    with pytest.raises(ValidationError) as caught:
        block.clean()

    assert caught.value.message_dict == {"reason": ["A reason is required."]}


def test_boost_clean__factor_above_configured_max__error_names_the_max(settings):
    settings.BOOST_MAX_FACTOR = 3
    boost = _boost(starts_at=NOW, ends_at=NOW + HOUR)
    boost.factor = 3.5

    with pytest.raises(ValidationError) as caught:
        boost.clean()

    assert caught.value.message_dict == {
        "factor": ["The factor must be more than 1 and at most 3 (got 3.5)."]
    }


# RuleQuerySet ---------------------------------------------------------------------


@pytest.fixture
def blocks_by_state(actor):
    """One block per state around NOW, each for its own item so none overlap."""

    def make(item_id: str, starts_at, expires_at=None, withdrawn_at=None) -> Block:
        return Block.objects.create(
            item_id=item_id,
            reason="Test",
            created_by=actor,
            starts_at=starts_at,
            expires_at=expires_at,
            withdrawn_at=withdrawn_at,
            withdrawn_by=actor if withdrawn_at else None,
        )

    return {
        "active_permanent": make("active-permanent", NOW - HOUR),
        "active_starting_now": make("active-starting-now", NOW, NOW + HOUR),
        "scheduled": make("scheduled", NOW + HOUR, NOW + 2 * HOUR),
        "expired": make("expired", NOW - 2 * HOUR, NOW - HOUR),
        "expiring_now": make("expiring-now", NOW - HOUR, NOW),
        "lifted": make("lifted", NOW - HOUR, None, withdrawn_at=NOW - HOUR / 2),
        "lifted_scheduled": make(
            "lifted-scheduled", NOW + HOUR, None, withdrawn_at=NOW - HOUR
        ),
    }


def _item_ids(queryset) -> set[str]:
    return set(queryset.values_list("item_id", flat=True))


def test_rule_queryset_active__mixed_states__only_in_force_at_now(blocks_by_state):
    assert _item_ids(Block.objects.active(NOW)) == {
        "active-permanent",
        "active-starting-now",
    }


def test_rule_queryset_scheduled__mixed_states__only_future_not_withdrawn(
    blocks_by_state,
):
    assert _item_ids(Block.objects.scheduled(NOW)) == {"scheduled"}


def test_rule_queryset_expired__mixed_states__ended_at_or_before_now(
    blocks_by_state,
):
    assert _item_ids(Block.objects.expired(NOW)) == {"expired", "expiring-now"}


def test_rule_queryset_withdrawn__mixed_states__only_lifted(blocks_by_state):
    assert _item_ids(Block.objects.withdrawn()) == {"lifted", "lifted-scheduled"}


def test_rule_queryset_current_or_scheduled__mixed_states__active_and_scheduled(
    blocks_by_state,
):
    assert _item_ids(Block.objects.current_or_scheduled(NOW)) == {
        "active-permanent",
        "active-starting-now",
        "scheduled",
    }


def test_rule_queryset_filters__every_block__matches_status_at(blocks_by_state):
    for block in blocks_by_state.values():
        status = block.status_at(NOW)
        assert set(Block.objects.with_status(status, NOW)) >= {block}, status
        others = {RuleStatus.ACTIVE, RuleStatus.SCHEDULED, RuleStatus.EXPIRED} - {
            status
        }
        for other in others:
            assert block not in set(Block.objects.with_status(other, NOW)), other


def test_rule_queryset_with_status__lifted_and_unknown__withdrawn_and_none(
    blocks_by_state,
):
    assert _item_ids(Block.objects.with_status("lifted", NOW)) == {
        "lifted",
        "lifted-scheduled",
    }
    assert _item_ids(Block.objects.with_status("ended", NOW)) == set()
    assert _item_ids(Block.objects.with_status("bogus", NOW)) == set()


def test_rule_queryset_with_status__ended_for_boosts__withdrawn_boosts(actor):
    ended = Boost.objects.create(
        item_id="ended",
        reason="Test",
        factor=2,
        created_by=actor,
        starts_at=NOW - HOUR,
        ends_at=NOW + HOUR,
        withdrawn_at=NOW - HOUR / 2,
    )
    Boost.objects.create(
        item_id="running",
        reason="Test",
        factor=2,
        created_by=actor,
        starts_at=NOW - HOUR,
        ends_at=NOW + HOUR,
    )

    assert list(Boost.objects.with_status("ended", NOW)) == [ended]
    assert _item_ids(Boost.objects.with_status("active", NOW)) == {"running"}
    assert _item_ids(Boost.objects.with_status("lifted", NOW)) == set()


def test_rule_queryset_for_scope__null_scope__only_global_rules(actor):
    for surface, region in ((None, None), ("home", None), (None, "SG")):
        Block.objects.create(
            item_id="sku-1",
            reason="Test",
            created_by=actor,
            starts_at=NOW,
            surface_id=surface,
            region_id=region,
        )

    scoped = Block.objects.for_scope(None, None)
    assert [(b.surface_id, b.region_id) for b in scoped] == [(None, None)]
    assert [
        (b.surface_id, b.region_id) for b in Block.objects.for_scope("home", None)
    ] == [("home", None)]
    assert Block.objects.for_scope("home", "SG").count() == 0


@pytest.fixture
def window_block(actor):
    """A block in force over [NOW, NOW + 2h)."""
    return Block.objects.create(
        item_id="sku-1",
        reason="Test",
        created_by=actor,
        starts_at=NOW,
        expires_at=NOW + 2 * HOUR,
    )


@pytest.mark.parametrize(
    ("starts_at", "ends_at", "overlaps"),
    [
        pytest.param(NOW - HOUR, NOW, False, id="ends-exactly-at-its-start"),
        pytest.param(NOW + 2 * HOUR, None, False, id="starts-exactly-at-its-end"),
        pytest.param(NOW + 3 * HOUR, NOW + 4 * HOUR, False, id="entirely-after"),
        pytest.param(NOW - 2 * HOUR, NOW - HOUR, False, id="entirely-before"),
        pytest.param(NOW - HOUR, NOW + timedelta(seconds=1), True, id="meets-start"),
        pytest.param(NOW + HOUR, None, True, id="open-ended-inside"),
        pytest.param(NOW + 2 * HOUR - timedelta(seconds=1), None, True, id="last-sec"),
        pytest.param(NOW - HOUR, NOW + 5 * HOUR, True, id="contains-it"),
    ],
)
def test_rule_queryset_overlapping__window__half_open_boundaries(
    window_block, starts_at, ends_at, overlaps
):
    found = Block.objects.overlapping(starts_at=starts_at, ends_at=ends_at)

    assert list(found) == ([window_block] if overlaps else [])


def test_rule_queryset_overlapping__permanent_rule__overlaps_any_later_window(actor):
    permanent = Block.objects.create(
        item_id="sku-1", reason="Test", created_by=actor, starts_at=NOW
    )

    far = NOW + timedelta(days=3650)
    assert list(Block.objects.overlapping(starts_at=far, ends_at=None)) == [permanent]
    assert list(Block.objects.overlapping(starts_at=NOW - HOUR, ends_at=NOW)) == []


def test_rule_queryset_overlapping__withdrawn_rule__never_overlaps(window_block):
    Block.objects.filter(pk=window_block.pk).update(withdrawn_at=NOW)

    assert list(Block.objects.overlapping(starts_at=NOW, ends_at=None)) == []


# Identifiers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "item_id",
    ["sku-1", "a", "a" * 128, "SKU/42:red", "ürün-7", "商品-1", "café-☕", "A_b.C"],
)
def test_validate_item_id__valid__passes(item_id):
    validate_item_id(item_id)


@pytest.mark.parametrize("value", ["", None, 42])
def test_validate_item_id__empty_or_not_text__required(value):
    with pytest.raises(ValidationError) as caught:
        validate_item_id(value)

    assert caught.value.messages == ["Item id is required."]
    assert caught.value.code == "required"


def test_validate_item_id__129_characters__max_length_with_count():
    with pytest.raises(ValidationError) as caught:
        validate_item_id("a" * 129)

    assert caught.value.messages == [
        "Item id must be at most 128 characters (it has 129)."
    ]
    assert caught.value.code == "max_length"


@pytest.mark.parametrize(
    ("item_id", "shown"),
    [
        ("sku 1", "' '"),
        ("sku\t1", "'\\t'"),
        ("sku\n1", "'\\n'"),
        ("sku1\r", "'\\r'"),
        (" sku1", "' '"),
        ("sku\x001", "'\\x00'"),
        ("sku\x071", "'\\x07'"),
        ("sku\x7f1", "'\\x7f'"),
        ("sku\u200b1", "'\\u200b'"),
        ("sku\u00a01", "'\\xa0'"),
        ("sku\u20281", "'\\u2028'"),
        ("sku\u202e1", "'\\u202e'"),
        ("sku\ufeff1", "'\\ufeff'"),
        ("sku\u30001", "'\\u3000'"),
    ],
)
def test_validate_item_id__whitespace_or_control__invalid_names_character(
    item_id, shown
):
    with pytest.raises(ValidationError) as caught:
        validate_item_id(item_id)

    assert caught.value.messages == [
        f"Item id must not contain whitespace or control characters (found {shown})."
    ]
    assert caught.value.code == "invalid_characters"


def test_validate_customer_id__256_characters__passes():
    validate_customer_id("c" * 256)


def test_validate_customer_id__257_characters__max_length_with_count():
    with pytest.raises(ValidationError) as caught:
        validate_customer_id("c" * 257)

    assert caught.value.messages == [
        "Customer id must be at most 256 characters (it has 257)."
    ]


def test_validate_customer_id__space__invalid_characters():
    with pytest.raises(ValidationError) as caught:
        validate_customer_id("c 1")

    assert caught.value.messages == [
        "Customer id must not contain whitespace or control characters (found ' ')."
    ]


def test_catalog_item_full_clean__item_id_with_tab__error_on_item_id(db):
    item = CatalogItem(item_id="sku\t1", title="Lamp")

    with pytest.raises(ValidationError) as caught:
        item.full_clean()

    assert caught.value.message_dict == {
        "item_id": [
            "Item id must not contain whitespace or control characters (found '\\t')."
        ]
    }
