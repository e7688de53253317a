"""Every rule of the override services, with the exact error the caller sees."""

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from opsconsole.errors import ConflictError
from opsconsole.times import iso_utc
from overrides import selectors, services
from overrides.models import (
    Block,
    Boost,
    CatalogItem,
    OverrideChange,
    Region,
    RuleStatus,
    Surface,
)
from overrides.services import BulkBlockRow
from tests.factories import CatalogItemFactory, make_block, make_boost

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
ISO_UTC_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$")


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def whole_minute(now):
    """A moment an hour ahead on a whole minute, so messages can be spelled out."""
    return (now + HOUR).replace(second=0, microsecond=0) + timedelta(minutes=1)


def _version() -> int:
    return selectors.current_version()


def _block_kwargs(actor, **overrides) -> dict:
    kwargs = {
        "item_id": "sku-1",
        "surface": None,
        "region": None,
        "reason": "Unsafe product",
        "actor": actor,
    }
    kwargs.update(overrides)
    return kwargs


def _boost_kwargs(actor, now, **overrides) -> dict:
    kwargs = {
        "item_id": "sku-2",
        "factor": 2.0,
        "surface": None,
        "region": None,
        "reason": "Cold start",
        "actor": actor,
        "starts_at": now + HOUR,
        "ends_at": now + HOUR + 14 * DAY,
    }
    kwargs.update(overrides)
    return kwargs


def _block_error(actor, **overrides) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        services.block_item(**_block_kwargs(actor, **overrides))
    assert Block.objects.count() == 0
    return caught.value.message_dict


def _boost_error(actor, now, **overrides) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        services.boost_create(**_boost_kwargs(actor, now, **overrides))
    assert Boost.objects.count() == 0
    return caught.value.message_dict


def _minute(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


# block_item -----------------------------------------------------------------------


def test_block_item__valid_scoped__saved_with_every_field(agent, now):
    expires = now + 7 * DAY

    block = services.block_item(
        **_block_kwargs(
            agent,
            surface="home",
            region="SG",
            reason="  Recalled by supplier  ",
            expires_at=expires,
        )
    )

    saved = Block.objects.get(pk=block.pk)
    assert (
        saved.item_id,
        saved.surface_id,
        saved.region_id,
        saved.reason,
        saved.created_by,
        saved.expires_at,
        saved.withdrawn_at,
        saved.expiry_recorded_at,
    ) == ("sku-1", "home", "SG", "Recalled by supplier", agent, expires, None, None)
    assert saved.status_at(timezone.now()) == RuleStatus.ACTIVE


def test_block_item__no_starts_at__starts_now(agent):
    before = timezone.now()

    block = services.block_item(**_block_kwargs(agent))

    after = timezone.now()
    assert before <= block.starts_at <= after
    assert block.created_at == block.starts_at
    assert block.expires_at is None


def test_block_item__future_starts_at__scheduled(agent, now):
    block = services.block_item(**_block_kwargs(agent, starts_at=now + DAY))

    assert Block.objects.get(pk=block.pk).starts_at == now + DAY
    assert block.status_at(timezone.now()) == RuleStatus.SCHEDULED


def test_block_item__empty_strings_for_scope__global_rule(agent):
    block = services.block_item(**_block_kwargs(agent, surface="", region=""))

    assert (block.surface_id, block.region_id) == (None, None)


def test_block_item__unknown_surface__error_lists_configured_surfaces(agent):
    errors = _block_error(agent, surface="billboard")

    assert errors == {
        "surface": [
            "Unknown surface 'billboard'. "
            "Configured surfaces: email, home, product_page, search."
        ]
    }


def test_block_item__unknown_region__error_lists_configured_regions(agent):
    errors = _block_error(agent, region="sg")

    assert errors == {
        "region": ["Unknown region 'sg'. Configured regions: AE, DE, GB, SA, SG, US."]
    }


def test_block_item__inactive_surface_and_region__both_refused(agent):
    Surface.objects.filter(code="email").update(is_active=False)
    Region.objects.filter(code="US").update(is_active=False)

    errors = _block_error(agent, surface="email", region="US")

    assert errors == {
        "surface": [
            "Unknown surface 'email'. Configured surfaces: home, product_page, search."
        ],
        "region": ["Unknown region 'US'. Configured regions: AE, DE, GB, SA, SG."],
    }


def test_block_item__empty_item_id__error_on_item_id(agent):
    assert _block_error(agent, item_id="") == {"item_id": ["Item id is required."]}


def test_block_item__128_character_item_id__accepted(agent):
    block = services.block_item(**_block_kwargs(agent, item_id="x" * 128))

    assert Block.objects.get(pk=block.pk).item_id == "x" * 128


def test_block_item__129_character_item_id__error_on_item_id(agent):
    errors = _block_error(agent, item_id="x" * 129)

    assert list(errors) == ["item_id"]
    assert errors["item_id"][0] == (
        "Item id must be at most 128 characters (it has 129)."
    )


def test_block_item__129_character_item_id__exactly_one_message(agent):
    assert _block_error(agent, item_id="x" * 129) == {
        "item_id": ["Item id must be at most 128 characters (it has 129)."]
    }


@pytest.mark.parametrize(
    ("item_id", "shown"),
    [
        pytest.param("sku 1", "' '", id="space"),
        pytest.param("sku\t1", "'\\t'", id="tab"),
        pytest.param("sku\n1", "'\\n'", id="newline"),
        pytest.param("sku\u200b1", "'\\u200b'", id="zero-width-space"),
        pytest.param("sku\x1b1", "'\\x1b'", id="control-escape"),
        pytest.param("sku\x001", "'\\x00'", id="nul"),
        pytest.param("sku\u00a01", "'\\xa0'", id="no-break-space"),
    ],
)
def test_block_item__item_id_with_whitespace_or_control__error_on_item_id(
    agent, item_id, shown
):
    assert _block_error(agent, item_id=item_id) == {
        "item_id": [
            "Item id must not contain whitespace or control characters "
            f"(found {shown})."
        ]
    }


@pytest.mark.parametrize("reason", ["", "   ", "\t\n"])
def test_block_item__blank_reason__error_on_reason(agent, reason):
    errors = _block_error(agent, reason=reason)

    assert list(errors) == ["reason"]
    assert set(errors["reason"]) == {"A reason is required."}


def test_block_item__blank_reason__message_given_once(agent):
    assert _block_error(agent, reason="   ") == {"reason": ["A reason is required."]}


def test_block_item__blank_reason_and_end_before_start__both_errors_explained(
    agent, now
):
    errors = _block_error(
        agent, reason="", starts_at=now + 2 * DAY, expires_at=now + DAY
    )

    assert errors["expires_at"] == ["The end must be after the start."]
    assert "__all__" not in errors


def test_block_item__reason_over_1000_characters__error_on_reason(agent):
    errors = _block_error(agent, reason="r" * 1001)

    assert list(errors) == ["reason"]
    assert "1000" in errors["reason"][0]


def test_lift_block__reason_over_1000_characters__validation_error(agent):
    block = make_block(agent)

    with pytest.raises(ValidationError):
        services.lift_block(block_id=block.pk, reason="r" * 1001, actor=agent)

    assert Block.objects.get(pk=block.pk).withdrawn_at is None


def test_block_item__reason_of_1000_characters__accepted(agent):
    block = services.block_item(**_block_kwargs(agent, reason="r" * 1000))

    assert len(Block.objects.get(pk=block.pk).reason) == 1000


@pytest.mark.parametrize(
    "expires_offset",
    [pytest.param(timedelta(0), id="equal"), pytest.param(-HOUR, id="before")],
)
def test_block_item__expires_not_after_starts__error_on_expires_at(
    agent, now, expires_offset
):
    starts_at = now + DAY

    errors = _block_error(
        agent, starts_at=starts_at, expires_at=starts_at + expires_offset
    )

    assert errors == {"expires_at": ["The end must be after the start."]}


def test_block_item__expires_in_the_past__error_on_expires_at(agent, now):
    errors = _block_error(agent, starts_at=now - 2 * DAY, expires_at=now - DAY)

    assert errors == {"expires_at": ["The end must be in the future."]}


def test_block_item__open_block_same_item_and_scope__conflict_with_existing_id(
    agent, whole_minute
):
    existing = services.block_item(
        **_block_kwargs(
            agent,
            surface="home",
            region="SG",
            starts_at=whole_minute,
            expires_at=whole_minute + DAY,
        )
    )
    version = _version()

    with pytest.raises(ConflictError) as caught:
        services.block_item(**_block_kwargs(agent, surface="home", region="SG"))

    assert caught.value.existing_id == existing.pk
    assert caught.value.message == (
        f"sku-1 already has an open block on home · SG (block #{existing.pk}, "
        f"from {_minute(whole_minute)} until {_minute(whole_minute + DAY)}). "
        "Lift it first or choose another time window."
    )
    assert caught.value.code == "conflict"
    assert caught.value.status_code == 409
    assert list(Block.objects.all()) == [existing]
    assert _version() == version


def test_block_item__permanent_global_block__conflict_says_no_end(agent, now):
    existing = make_block(agent, starts_at=now + HOUR)

    with pytest.raises(ConflictError) as caught:
        make_block(agent, starts_at=now + DAY, expires_at=now + 2 * DAY)

    assert caught.value.existing_id == existing.pk
    assert "on all surfaces · all regions" in caught.value.message
    assert caught.value.message.endswith(
        " with no end). Lift it first or choose another time window."
    )


def test_block_item__scheduled_block_overlapping_active_one__conflict(agent, now):
    active = make_block(agent, expires_at=now + 3 * DAY)

    with pytest.raises(ConflictError) as caught:
        make_block(agent, starts_at=now + DAY, expires_at=now + 5 * DAY)

    assert caught.value.existing_id == active.pk


def test_block_item__active_block_overlapping_scheduled_one__conflict(agent, now):
    scheduled = make_block(agent, starts_at=now + DAY)

    with pytest.raises(ConflictError) as caught:
        make_block(agent, expires_at=now + 2 * DAY)

    assert caught.value.existing_id == scheduled.pk


@pytest.mark.parametrize(
    ("surface", "region"),
    [("home", None), (None, "SG"), ("home", "SG"), ("search", "SG")],
)
def test_block_item__same_item_other_scope__allowed(agent, surface, region):
    make_block(agent, surface="home", region="AE")

    make_block(agent, surface=surface, region=region)

    assert Block.objects.filter(item_id="sku-1").count() == 2


def test_block_item__other_item_same_scope__allowed(agent):
    make_block(agent, item_id="sku-1")

    make_block(agent, item_id="SKU-1")

    assert Block.objects.count() == 2


def test_block_item__previous_block_lifted__allowed(agent):
    first = make_block(agent)
    services.lift_block(block_id=first.pk, reason="False alarm", actor=agent)

    second = make_block(agent)

    assert Block.objects.active(timezone.now()).get() == second


def test_block_item__starts_exactly_when_previous_expires__allowed(agent, now):
    first = make_block(agent, expires_at=now + DAY)

    second = make_block(agent, starts_at=first.expires_at)

    assert second.starts_at == first.expires_at
    assert Block.objects.count() == 2


def test_block_item__expires_exactly_when_next_starts__allowed(agent, now):
    later = make_block(agent, starts_at=now + DAY)

    earlier = make_block(agent, expires_at=later.starts_at)

    assert earlier.expires_at == later.starts_at
    assert Block.objects.count() == 2


def test_block_item__previous_block_expired__allowed(agent, now):
    old = make_block(agent, expires_at=now + DAY)
    Block.objects.filter(pk=old.pk).update(
        starts_at=now - 3 * DAY, expires_at=now - DAY
    )

    make_block(agent)

    assert Block.objects.count() == 2


# lift_block -----------------------------------------------------------------------


def test_lift_block__active_block__records_withdrawal(agent, users):
    block = make_block(users["admin"])
    before = timezone.now()

    lifted = services.lift_block(
        block_id=block.pk, reason="  Supplier fixed it ", actor=agent
    )

    saved = Block.objects.get(pk=block.pk)
    assert before <= saved.withdrawn_at <= timezone.now()
    assert saved.withdrawn_by == agent
    assert saved.withdrawal_reason == "Supplier fixed it"
    assert saved.created_by == users["admin"]
    assert saved.status_at(timezone.now()) == RuleStatus.LIFTED
    assert lifted.withdrawn_at == saved.withdrawn_at


def test_lift_block__scheduled_block__lifted(agent, now):
    block = make_block(agent, starts_at=now + DAY)

    services.lift_block(block_id=block.pk, reason="Not needed", actor=agent)

    assert Block.objects.get(pk=block.pk).withdrawn_by == agent


def test_lift_block__lifted_twice__conflict(agent):
    block = make_block(agent)
    services.lift_block(block_id=block.pk, reason="Done", actor=agent)
    version = _version()

    with pytest.raises(ConflictError) as caught:
        services.lift_block(block_id=block.pk, reason="Again", actor=agent)

    assert caught.value.message == (
        f"Block #{block.pk} is already lifted; there is nothing to lift."
    )
    assert caught.value.existing_id == block.pk
    assert Block.objects.get(pk=block.pk).withdrawal_reason == "Done"
    assert _version() == version


def test_lift_block__expired_block__conflict(agent, now):
    block = make_block(agent, expires_at=now + DAY)
    Block.objects.filter(pk=block.pk).update(
        starts_at=now - 2 * DAY, expires_at=now - DAY
    )

    with pytest.raises(ConflictError) as caught:
        services.lift_block(block_id=block.pk, reason="Late", actor=agent)

    assert caught.value.message == (
        f"Block #{block.pk} is already expired; there is nothing to lift."
    )
    assert Block.objects.get(pk=block.pk).withdrawn_at is None


@pytest.mark.parametrize("reason", ["", "  \n"])
def test_lift_block__blank_reason__validation_error_and_nothing_changes(agent, reason):
    block = make_block(agent)
    version = _version()

    with pytest.raises(ValidationError) as caught:
        services.lift_block(block_id=block.pk, reason=reason, actor=agent)

    assert caught.value.message_dict == {"reason": ["A reason is required."]}
    saved = Block.objects.get(pk=block.pk)
    assert (saved.withdrawn_at, saved.withdrawn_by, saved.withdrawal_reason) == (
        None,
        None,
        "",
    )
    assert _version() == version
    assert block.history.count() == 1
    assert OverrideChange.objects.count() == 1


def test_lift_block__unknown_id__does_not_exist(agent):
    with pytest.raises(Block.DoesNotExist):
        services.lift_block(block_id=999_999, reason="Gone", actor=agent)


# boost_create ---------------------------------------------------------------------


def test_boost_create__valid__saved_with_every_field(manager, now):
    boost = services.boost_create(
        **_boost_kwargs(manager, now, surface="search", region="AE", factor=1.5)
    )

    saved = Boost.objects.get(pk=boost.pk)
    assert (
        saved.item_id,
        saved.factor,
        saved.surface_id,
        saved.region_id,
        saved.reason,
        saved.created_by,
        saved.starts_at,
        saved.ends_at,
    ) == (
        "sku-2",
        1.5,
        "search",
        "AE",
        "Cold start",
        manager,
        now + HOUR,
        now + HOUR + 14 * DAY,
    )


def test_boost_create__no_starts_at__starts_now(manager, now):
    before = timezone.now()

    boost = services.boost_create(**_boost_kwargs(manager, now, starts_at=None))

    assert before <= boost.starts_at <= timezone.now()
    assert boost.status_at(timezone.now()) == RuleStatus.ACTIVE


@pytest.mark.parametrize(
    ("factor", "shown"), [(0, "0"), (1, "1"), (1.0, "1"), (5.01, "5.01"), (-2, "-2")]
)
def test_boost_create__factor_out_of_range__error_on_factor(
    manager, now, factor, shown
):
    assert _boost_error(manager, now, factor=factor) == {
        "factor": [f"The factor must be more than 1 and at most 5 (got {shown})."]
    }


@pytest.mark.parametrize("factor", [5, 5.0, 1.01, 1.000001])
def test_boost_create__factor_in_range__accepted(manager, now, factor):
    boost = services.boost_create(**_boost_kwargs(manager, now, factor=factor))

    assert Boost.objects.get(pk=boost.pk).factor == factor


def test_boost_create__max_factor_setting_raised__read_at_call_time(
    manager, now, settings
):
    settings.BOOST_MAX_FACTOR = 10

    boost = services.boost_create(**_boost_kwargs(manager, now, factor=8))

    assert Boost.objects.get(pk=boost.pk).factor == 8


def test_boost_create__max_factor_setting_lowered__read_at_call_time(
    manager, now, settings
):
    settings.BOOST_MAX_FACTOR = 1.5

    assert _boost_error(manager, now, factor=2) == {
        "factor": ["The factor must be more than 1 and at most 1.5 (got 2)."]
    }


def test_boost_create__exactly_max_days__accepted(manager, now):
    starts_at = now + HOUR

    boost = services.boost_create(
        **_boost_kwargs(manager, now, starts_at=starts_at, ends_at=starts_at + 90 * DAY)
    )

    assert boost.ends_at - boost.starts_at == timedelta(days=90)


def test_boost_create__max_days_plus_one_second__error_on_ends_at(manager, now):
    starts_at = now + HOUR

    errors = _boost_error(
        manager,
        now,
        starts_at=starts_at,
        ends_at=starts_at + 90 * DAY + timedelta(seconds=1),
    )

    assert errors == {
        "ends_at": ["A boost can last at most 90 days (this one lasts 90.0)."]
    }


def test_boost_create__max_days_setting_lowered__read_at_call_time(
    manager, now, settings
):
    settings.BOOST_MAX_DAYS = 7
    starts_at = now + HOUR

    errors = _boost_error(
        manager, now, starts_at=starts_at, ends_at=starts_at + 7 * DAY + 12 * HOUR
    )

    assert errors == {
        "ends_at": ["A boost can last at most 7 days (this one lasts 7.5)."]
    }


def test_boost_create__max_days_setting_raised__read_at_call_time(
    manager, now, settings
):
    settings.BOOST_MAX_DAYS = 120
    starts_at = now + HOUR

    boost = services.boost_create(
        **_boost_kwargs(
            manager, now, starts_at=starts_at, ends_at=starts_at + 100 * DAY
        )
    )

    assert Boost.objects.filter(pk=boost.pk).exists()


@pytest.mark.parametrize(
    "ends_offset",
    [pytest.param(timedelta(0), id="equal"), pytest.param(-HOUR, id="before")],
)
def test_boost_create__ends_not_after_starts__error_on_ends_at(
    manager, now, ends_offset
):
    starts_at = now + DAY

    errors = _boost_error(
        manager, now, starts_at=starts_at, ends_at=starts_at + ends_offset
    )

    assert errors == {"ends_at": ["The end must be after the start."]}


def test_boost_create__ends_in_the_past__error_on_ends_at(manager, now):
    errors = _boost_error(manager, now, starts_at=now - 2 * DAY, ends_at=now - DAY)

    assert errors == {"ends_at": ["The end must be in the future."]}


def test_boost_create__blank_reason__error_on_reason(manager, now):
    errors = _boost_error(manager, now, reason=" ")

    assert list(errors) == ["reason"]
    assert set(errors["reason"]) == {"A reason is required."}


def test_boost_create__blank_reason_and_bad_factor__factor_error_explained(
    manager, now
):
    errors = _boost_error(manager, now, reason="", factor=0)

    assert errors["factor"] == ["The factor must be more than 1 and at most 5 (got 0)."]
    assert "__all__" not in errors


def test_boost_create__unknown_surface__error_lists_configured(manager, now):
    assert _boost_error(manager, now, surface="tv") == {
        "surface": [
            "Unknown surface 'tv'. "
            "Configured surfaces: email, home, product_page, search."
        ]
    }


def test_boost_create__item_id_with_space__error_on_item_id(manager, now):
    assert _boost_error(manager, now, item_id="sku 2") == {
        "item_id": [
            "Item id must not contain whitespace or control characters (found ' ')."
        ]
    }


def test_boost_create__overlapping_boost_same_scope__conflict(manager, whole_minute):
    existing = services.boost_create(
        **_boost_kwargs(
            manager,
            whole_minute,
            surface="home",
            starts_at=whole_minute,
            ends_at=whole_minute + 10 * DAY,
        )
    )
    version = _version()

    with pytest.raises(ConflictError) as caught:
        services.boost_create(
            **_boost_kwargs(
                manager,
                whole_minute,
                surface="home",
                factor=3,
                starts_at=whole_minute + 9 * DAY,
                ends_at=whole_minute + 12 * DAY,
            )
        )

    assert caught.value.existing_id == existing.pk
    assert caught.value.message == (
        f"sku-2 already has an open boost on home · all regions (boost #{existing.pk}, "
        f"from {_minute(whole_minute)} until {_minute(whole_minute + 10 * DAY)}). "
        "End it first or choose another time window."
    )
    assert Boost.objects.count() == 1
    assert _version() == version


def test_boost_create__adjacent_windows_same_scope__allowed(manager, now):
    first = make_boost(manager, starts_at=now + HOUR, ends_at=now + 8 * DAY)

    second = make_boost(manager, starts_at=first.ends_at, ends_at=now + 15 * DAY)

    assert Boost.objects.filter(item_id="sku-2").count() == 2
    assert second.starts_at == first.ends_at


def test_boost_create__overlapping_window_other_scope__allowed(manager, now):
    make_boost(manager, surface="home")

    make_boost(manager, surface="email")

    assert Boost.objects.count() == 2


def test_boost_create__previous_boost_ended_early__allowed(manager):
    first = make_boost(manager)
    services.end_boost(boost_id=first.pk, reason="Stock ran out", actor=manager)

    make_boost(manager)

    assert Boost.objects.active(timezone.now()).count() == 1


# end_boost ------------------------------------------------------------------------


def test_end_boost__running_boost__records_withdrawal(manager):
    boost = make_boost(manager)
    before = timezone.now()

    services.end_boost(boost_id=boost.pk, reason=" Campaign over ", actor=manager)

    saved = Boost.objects.get(pk=boost.pk)
    assert before <= saved.withdrawn_at <= timezone.now()
    assert (saved.withdrawn_by, saved.withdrawal_reason) == (manager, "Campaign over")
    assert saved.status_at(timezone.now()) == RuleStatus.ENDED


def test_end_boost__ended_twice__conflict(manager):
    boost = make_boost(manager)
    services.end_boost(boost_id=boost.pk, reason="Over", actor=manager)

    with pytest.raises(ConflictError) as caught:
        services.end_boost(boost_id=boost.pk, reason="Over again", actor=manager)

    assert caught.value.message == (
        f"Boost #{boost.pk} is already ended early; there is nothing to end."
    )
    assert caught.value.existing_id == boost.pk


def test_end_boost__expired_boost__conflict(manager, now):
    boost = make_boost(manager)
    Boost.objects.filter(pk=boost.pk).update(starts_at=now - 3 * DAY, ends_at=now - DAY)

    with pytest.raises(ConflictError) as caught:
        services.end_boost(boost_id=boost.pk, reason="Late", actor=manager)

    assert caught.value.message == (
        f"Boost #{boost.pk} is already expired; there is nothing to end."
    )
    assert Boost.objects.get(pk=boost.pk).withdrawn_at is None


def test_end_boost__blank_reason__validation_error_and_nothing_changes(manager):
    boost = make_boost(manager)
    version = _version()

    with pytest.raises(ValidationError) as caught:
        services.end_boost(boost_id=boost.pk, reason=" ", actor=manager)

    assert caught.value.message_dict == {"reason": ["A reason is required."]}
    assert Boost.objects.get(pk=boost.pk).withdrawn_at is None
    assert _version() == version


# Override version and change log --------------------------------------------------


def test_override_version__each_change__rises_by_exactly_one(agent, manager):
    start = _version()

    block = make_block(agent)
    assert _version() == start + 1
    services.lift_block(block_id=block.pk, reason="Done", actor=agent)
    assert _version() == start + 2
    boost = make_boost(manager)
    assert _version() == start + 3
    services.end_boost(boost_id=boost.pk, reason="Done", actor=manager)
    assert _version() == start + 4


@pytest.mark.parametrize(
    "failing_call",
    [
        pytest.param(
            lambda actor, now: make_block(actor, item_id="bad id"), id="bad-item"
        ),
        pytest.param(lambda actor, now: make_block(actor, reason=""), id="no-reason"),
        pytest.param(
            lambda actor, now: make_block(actor, surface="nowhere"), id="bad-surface"
        ),
        pytest.param(
            lambda actor, now: make_block(actor, expires_at=now - DAY), id="past"
        ),
        pytest.param(lambda actor, now: make_block(actor), id="conflict"),
        pytest.param(lambda actor, now: make_boost(actor, factor=9), id="boost-factor"),
        pytest.param(
            lambda actor, now: make_boost(actor, item_id="sku-9"),
            id="boost-conflict",
        ),
        pytest.param(
            lambda actor, now: services.lift_block(
                block_id=Block.objects.get().pk, reason="", actor=actor
            ),
            id="lift-no-reason",
        ),
    ],
)
def test_override_version__service_raises__unchanged_and_no_change_logged(
    agent, now, failing_call
):
    make_block(agent)
    make_boost(agent, item_id="sku-9")
    version = _version()
    changes = OverrideChange.objects.count()

    with pytest.raises((ValidationError, ConflictError)):
        failing_call(agent, now)

    assert _version() == version
    assert OverrideChange.objects.count() == changes
    assert Block.objects.count() == 1
    assert Boost.objects.count() == 1


def test_change_log__block_lift_boost_end__consecutive_versions_and_documents(
    agent, manager, whole_minute
):
    start = _version()
    singapore_start = whole_minute.astimezone(ZoneInfo("Asia/Singapore"))
    block = services.block_item(
        **_block_kwargs(agent, surface="home", region="SA", starts_at=singapore_start)
    )
    services.lift_block(block_id=block.pk, reason="Done", actor=agent)
    boost = services.boost_create(
        **_boost_kwargs(
            manager,
            whole_minute,
            factor=2.5,
            starts_at=whole_minute,
            ends_at=whole_minute + 14 * DAY,
        )
    )
    services.end_boost(boost_id=boost.pk, reason="Done", actor=manager)

    changes = list(OverrideChange.objects.order_by("version"))

    start_text = whole_minute.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    end_text = (whole_minute + 14 * DAY).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    block_document = {
        "id": block.pk,
        "item_id": "sku-1",
        "surface": "home",
        "region": "SA",
        "starts_at": start_text,
        "expires_at": None,
    }
    boost_document = {
        "id": boost.pk,
        "item_id": "sku-2",
        "surface": None,
        "region": None,
        "starts_at": start_text,
        "factor": 2.5,
        "ends_at": end_text,
    }
    assert [(c.version, c.action, c.rule) for c in changes] == [
        (start + 1, "block", block_document),
        (start + 2, "unblock", block_document),
        (start + 3, "boost", boost_document),
        (start + 4, "unboost", boost_document),
    ]
    assert _version() == start + 4


def test_change_log__block_with_default_start__times_are_iso_utc_z(agent, now):
    block = make_block(agent, expires_at=now + DAY)

    document = OverrideChange.objects.get().rule

    assert ISO_UTC_Z.match(document["starts_at"]), document["starts_at"]
    assert ISO_UTC_Z.match(document["expires_at"]), document["expires_at"]
    assert datetime.fromisoformat(document["starts_at"]) == block.starts_at
    assert datetime.fromisoformat(document["expires_at"]) == now + DAY


def test_rule_change__after_commit__new_version_is_announced(
    agent, monkeypatch, django_capture_on_commit_callbacks
):
    seen: list[int] = []
    monkeypatch.setattr(services.serving, "announce_version", seen.append)

    with django_capture_on_commit_callbacks(execute=True):
        make_block(agent)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ConflictError):
        make_block(agent)

    assert seen == [_version()]


# Audit trail ----------------------------------------------------------------------


def test_history__each_change__one_record_with_actor_and_reason(agent, manager):
    block = make_block(agent, reason="Unsafe product")
    services.lift_block(block_id=block.pk, reason="Supplier fixed it", actor=manager)
    boost = make_boost(manager, reason="Cold start")
    services.end_boost(boost_id=boost.pk, reason="Launch over", actor=agent)

    block_records = list(block.history.order_by("history_id"))
    boost_records = list(boost.history.order_by("history_id"))
    assert [
        (r.history_type, r.history_user, r.history_change_reason) for r in block_records
    ] == [("+", agent, "Unsafe product"), ("~", manager, "Supplier fixed it")]
    assert [
        (r.history_type, r.history_user, r.history_change_reason) for r in boost_records
    ] == [("+", manager, "Cold start"), ("~", agent, "Launch over")]


def test_audit_entries__block_lift_boost_end__labels_actors_and_changes(
    agent, manager, now
):
    block = make_block(agent, surface="home", reason="Unsafe product")
    lifted = services.lift_block(
        block_id=block.pk, reason="Supplier fixed it", actor=agent
    )
    boost = make_boost(manager, factor=3.0, ends_at=now + 7 * DAY)
    ended = services.end_boost(boost_id=boost.pk, reason="Launch over", actor=manager)

    entries = selectors.audit_entries_for_page(
        selectors.audit_log(kinds=["block", "boost"])
    )

    assert [
        (e.kind, e.object_id, e.action, e.actor, e.reason, e.item_id) for e in entries
    ] == [
        ("boost", boost.pk, "Ended early", "account-manager", "Launch over", "sku-2"),
        ("boost", boost.pk, "Boosted", "account-manager", "Cold start", "sku-2"),
        ("block", block.pk, "Lifted", "support-agent", "Supplier fixed it", "sku-1"),
        ("block", block.pk, "Blocked", "support-agent", "Unsafe product", "sku-1"),
    ]
    ended_early, boosted, lift, blocked = entries
    assert {c.field: (c.before, c.after) for c in lift.changes} == {
        "withdrawn_at": (None, iso_utc(lifted.withdrawn_at)),
        "withdrawn_by": (None, "support-agent"),
        "withdrawal_reason": (None, "Supplier fixed it"),
    }
    assert {c.field: (c.before, c.after) for c in ended_early.changes} == {
        "withdrawn_at": (None, iso_utc(ended.withdrawn_at)),
        "withdrawn_by": (None, "account-manager"),
        "withdrawal_reason": (None, "Launch over"),
    }
    assert {c.field: (c.before, c.after) for c in blocked.changes} == {
        "item_id": (None, "sku-1"),
        "surface": (None, "home"),
        "reason": (None, "Unsafe product"),
        "created_by": (None, "support-agent"),
        "starts_at": (None, iso_utc(block.starts_at)),
    }
    assert {c.field: (c.before, c.after) for c in boosted.changes} == {
        "item_id": (None, "sku-2"),
        "reason": (None, "Cold start"),
        "created_by": (None, "account-manager"),
        "starts_at": (None, iso_utc(boost.starts_at)),
        "factor": (None, 3.0),
        "ends_at": (None, iso_utc(now + 7 * DAY)),
    }


def test_audit_entries__expiry_recorded__expired_by_system(agent, now):
    block = make_block(agent, expires_at=now + HOUR)
    services.record_expired_rules(now=now + 2 * HOUR)

    latest = selectors.audit_entries_for_page(selectors.audit_log()[:1])

    assert [(e.kind, e.object_id, e.action, e.actor, e.reason) for e in latest] == [
        (
            "block",
            block.pk,
            "Expired",
            "system",
            f"Expired at {(now + HOUR).isoformat()}",
        )
    ]
    assert [(c.field, c.before) for c in latest[0].changes] == [
        ("expiry_recorded_at", None)
    ]
    assert latest[0].changes[0].after == iso_utc(now + 2 * HOUR)


# record_expired_rules -------------------------------------------------------------


def test_record_expired_rules__mixed_rules__marks_only_expired_unrecorded(
    agent, manager, now
):
    expiring_block = make_block(agent, item_id="expiring", expires_at=now + HOUR)
    permanent_block = make_block(agent, item_id="permanent")
    later_block = make_block(agent, item_id="later", expires_at=now + 5 * HOUR)
    lifted_block = make_block(agent, item_id="lifted", expires_at=now + HOUR)
    services.lift_block(block_id=lifted_block.pk, reason="Done", actor=agent)
    expiring_boost = make_boost(manager, item_id="boosted", ends_at=now + 2 * HOUR)
    ended_boost = make_boost(manager, item_id="ended", ends_at=now + HOUR)
    services.end_boost(boost_id=ended_boost.pk, reason="Done", actor=manager)
    version = _version()
    sweep_time = now + 3 * HOUR

    recorded = services.record_expired_rules(now=sweep_time)

    assert recorded == 2
    assert set(
        Block.objects.filter(expiry_recorded_at=sweep_time).values_list("pk", flat=True)
    ) == {expiring_block.pk}
    assert set(
        Boost.objects.filter(expiry_recorded_at=sweep_time).values_list("pk", flat=True)
    ) == {expiring_boost.pk}
    assert not Block.objects.filter(
        pk__in=[permanent_block.pk, later_block.pk, lifted_block.pk],
        expiry_recorded_at__isnull=False,
    ).exists()
    assert Boost.objects.get(pk=ended_boost.pk).expiry_recorded_at is None
    assert _version() == version + 2
    assert [
        (c.version, c.action, c.rule["id"])
        for c in OverrideChange.objects.filter(version__gt=version)
    ] == [
        (version + 1, "unblock", expiring_block.pk),
        (version + 2, "unboost", expiring_boost.pk),
    ]
    assert expiring_block.history.count() == 2
    assert expiring_block.history.first().history_user is None


def test_record_expired_rules__second_run__returns_zero_and_changes_nothing(agent, now):
    make_block(agent, expires_at=now + HOUR)
    assert services.record_expired_rules(now=now + 2 * HOUR) == 1
    version = _version()
    changes = OverrideChange.objects.count()

    assert services.record_expired_rules(now=now + 3 * HOUR) == 0

    assert _version() == version
    assert OverrideChange.objects.count() == changes
    assert Block.objects.get().expiry_recorded_at == now + 2 * HOUR


def test_record_expired_rules__nothing_expired__returns_zero(agent, now):
    make_block(agent, expires_at=now + DAY)
    version = _version()

    assert services.record_expired_rules(now=now + HOUR) == 0

    assert _version() == version
    assert Block.objects.get().expiry_recorded_at is None


def test_record_expired_rules__window_ends_exactly_now__recorded(agent, now):
    block = make_block(agent, expires_at=now + HOUR)

    assert services.record_expired_rules(now=block.expires_at) == 1


# prune_change_log -----------------------------------------------------------------


def test_prune_change_log__old_entries__deleted_except_newest(agent, settings, now):
    settings.CHANGE_LOG_RETENTION_DAYS = 14
    for item_id in ("a", "b", "c", "d"):
        make_block(agent, item_id=item_id)
    versions = list(OverrideChange.objects.values_list("version", flat=True))
    OverrideChange.objects.filter(version__in=versions[:2]).update(
        created_at=now - 15 * DAY
    )
    OverrideChange.objects.filter(version=versions[2]).update(created_at=now - 13 * DAY)

    deleted = services.prune_change_log(now=now)

    assert deleted == 2
    assert (
        list(OverrideChange.objects.values_list("version", flat=True)) == (versions[2:])
    )


def test_prune_change_log__every_entry_old__keeps_the_newest(agent, now):
    for item_id in ("a", "b", "c"):
        make_block(agent, item_id=item_id)
    OverrideChange.objects.update(created_at=now - 100 * DAY)

    deleted = services.prune_change_log(now=now)

    assert deleted == 2
    assert list(OverrideChange.objects.values_list("version", flat=True)) == [
        _version()
    ]


def test_prune_change_log__empty_log__returns_zero(db):
    assert services.prune_change_log() == 0


# block_items_in_bulk --------------------------------------------------------------


def _rows(*item_ids: str, **fields) -> list[BulkBlockRow]:
    fields.setdefault("reason", "Supplier recall")
    return [
        BulkBlockRow(line=line, item_id=item_id, **fields)
        for line, item_id in enumerate(item_ids, start=2)
    ]


def test_block_items_in_bulk__valid_rows__all_written_with_versions(agent):
    CatalogItemFactory(item_id="sku-1")
    CatalogItemFactory(item_id="sku-2")
    start = _version()

    result = services.block_items_in_bulk(
        rows=_rows("sku-1", "sku-2", surface="home"), actor=agent, dry_run=False
    )

    assert (result.applied, result.is_valid, result.error_count) == (True, True, 0)
    assert sorted(b.item_id for b in result.blocks) == ["sku-1", "sku-2"]
    assert set(
        Block.objects.values_list("item_id", "surface_id", "reason", "created_by")
    ) == {
        ("sku-1", "home", "Supplier recall", agent.pk),
        ("sku-2", "home", "Supplier recall", agent.pk),
    }
    assert _version() == start + 2
    assert list(
        OverrideChange.objects.filter(version__gt=start).values_list(
            "version", "action"
        )
    ) == [(start + 1, "block"), (start + 2, "block")]
    for block in Block.objects.all():
        assert [
            (r.history_user, r.history_change_reason) for r in block.history.all()
        ] == [(agent, "Supplier recall")]
    assert [row.warnings for row in result.rows] == [[], []]


def test_block_items_in_bulk__dry_run__writes_nothing(agent):
    start = _version()

    result = services.block_items_in_bulk(
        rows=_rows("sku-1", "sku-2"), actor=agent, dry_run=True
    )

    assert (result.applied, result.is_valid, result.blocks) == (False, True, [])
    assert Block.objects.count() == 0
    assert Block.history.count() == 0
    assert OverrideChange.objects.count() == 0
    assert _version() == start


def test_block_items_in_bulk__one_bad_row__nothing_written_and_row_errors(agent):
    make_block(agent, item_id="already")
    start = _version()
    rows = _rows("sku-1", "bad id", "sku-3", "already")
    rows[2].reason = "  "

    result = services.block_items_in_bulk(rows=rows, actor=agent, dry_run=False)

    assert (result.applied, result.is_valid, result.error_count) == (False, False, 3)
    assert result.rows[0].errors == []
    assert result.rows[1].errors == [
        "item_id: Item id must not contain whitespace or control characters "
        "(found ' ')."
    ]
    assert set(result.rows[2].errors) == {"reason: A reason is required."}
    assert len(result.rows[3].errors) == 1
    assert (
        result.rows[3]
        .errors[0]
        .startswith("already already has an open block on all surfaces · all regions")
    )
    assert list(Block.objects.values_list("item_id", flat=True)) == ["already"]
    assert OverrideChange.objects.count() == 1
    assert _version() == start


def test_block_items_in_bulk__parse_error_on_row__nothing_written(agent):
    rows = _rows("sku-1", "sku-2")
    rows[1].errors.append("expires_at: 'soon' is not an ISO 8601 date or date-time.")
    start = _version()

    result = services.block_items_in_bulk(rows=rows, actor=agent, dry_run=False)

    assert (result.applied, result.error_count) == (False, 1)
    assert Block.objects.count() == 0
    assert _version() == start


def test_block_items_in_bulk__duplicate_item_and_scope__error_on_later_line(agent):
    rows = _rows("sku-1", "sku-2", "sku-1", surface="home")

    result = services.block_items_in_bulk(rows=rows, actor=agent, dry_run=True)

    assert [(row.line, row.errors) for row in result.rows] == [
        (2, []),
        (3, []),
        (4, ["Same item and scope as line 2."]),
    ]
    assert result.is_valid is False


def test_block_items_in_bulk__same_item_other_scope__both_valid(agent):
    rows = _rows("sku-1", "sku-1")
    rows[1].region = "SG"

    result = services.block_items_in_bulk(rows=rows, actor=agent, dry_run=False)

    assert result.applied is True
    assert set(Block.objects.values_list("item_id", "region_id")) == {
        ("sku-1", None),
        ("sku-1", "SG"),
    }


def test_block_items_in_bulk__ids_not_in_catalog__warned_but_applied(agent):
    CatalogItemFactory(item_id="known")

    result = services.block_items_in_bulk(
        rows=_rows("known", "unknown"), actor=agent, dry_run=False
    )

    assert [(row.item_id, row.warnings) for row in result.rows] == [
        ("known", []),
        ("unknown", ["Not in the catalog; it will be blocked anyway."]),
    ]
    assert result.applied is True
    assert Block.objects.count() == 2


def test_block_items_in_bulk__more_than_max_rows__validation_error(agent, settings):
    settings.BULK_MAX_ROWS = 2

    with pytest.raises(ValidationError) as caught:
        services.block_items_in_bulk(
            rows=_rows("a", "b", "c"), actor=agent, dry_run=True
        )

    assert caught.value.message_dict == {"rows": ["At most 2 rows at once (got 3)."]}


def test_block_items_in_bulk__exactly_max_rows__applied(agent, settings):
    settings.BULK_MAX_ROWS = 2

    result = services.block_items_in_bulk(
        rows=_rows("a", "b"), actor=agent, dry_run=False
    )

    assert result.applied is True
    assert Block.objects.count() == 2


def test_block_items_in_bulk__no_rows__validation_error(agent):
    with pytest.raises(ValidationError) as caught:
        services.block_items_in_bulk(rows=[], actor=agent, dry_run=False)

    assert caught.value.message_dict == {"rows": ["There are no rows to block."]}


def test_block_items_in_bulk__expired_window_row__error_on_that_row(agent, now):
    rows = _rows("sku-1", "sku-2")
    rows[1].starts_at = now - 2 * DAY
    rows[1].expires_at = now - DAY

    result = services.block_items_in_bulk(rows=rows, actor=agent, dry_run=True)

    assert [row.errors for row in result.rows] == [
        [],
        ["expires_at: The end must be in the future."],
    ]


# import_catalog -------------------------------------------------------------------


def test_import_catalog__new_and_existing__created_and_updated(db):
    CatalogItemFactory(item_id="sku-1", title="Old title", category="Garden")
    created = datetime(2025, 1, 2, 3, 4, tzinfo=UTC)

    result = services.import_catalog(
        rows=[
            {"item_id": " sku-1 ", "title": " New title ", "category": "Kitchen"},
            {"item_id": "sku-2", "title": "Lamp", "created": created},
        ]
    )

    assert (result.created, result.updated) == (1, 1)
    assert set(
        CatalogItem.objects.values_list("item_id", "title", "category", "created_at")
    ) == {
        ("sku-1", "New title", "Kitchen", None),
        ("sku-2", "Lamp", "", created),
    }


def test_import_catalog__one_bad_row__nothing_written(db):
    CatalogItemFactory(item_id="sku-1", title="Old title")

    with pytest.raises(ValidationError) as caught:
        services.import_catalog(
            rows=[
                {"item_id": "sku-1", "title": "New title"},
                {"item_id": "bad id", "title": "Lamp"},
                {"item_id": "sku-3", "title": ""},
            ]
        )

    assert caught.value.message_dict == {
        "line 3": [
            "item_id: Item id must not contain whitespace or control characters "
            "(found ' ')."
        ],
        "line 4": ["title: This field cannot be blank."],
    }
    assert list(CatalogItem.objects.values_list("item_id", "title")) == [
        ("sku-1", "Old title")
    ]


def test_import_catalog__duplicate_item_id__error_on_later_line(db):
    with pytest.raises(ValidationError) as caught:
        services.import_catalog(
            rows=[
                {"item_id": "sku-1", "title": "A"},
                {"item_id": "sku-1", "title": "B"},
            ]
        )

    assert caught.value.message_dict == {"line 3": ["Duplicate item id 'sku-1'."]}
    assert CatalogItem.objects.count() == 0


def test_import_catalog__no_rows__validation_error(db):
    with pytest.raises(ValidationError) as caught:
        services.import_catalog(rows=[])

    assert caught.value.message_dict == {"rows": ["The file has no rows."]}
