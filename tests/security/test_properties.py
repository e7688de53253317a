"""Bad input at scale, part 1: property-based tests (Hypothesis) of ids, scores, time
windows and CSV rows, through the services and the rule evaluation.

What must hold: valid input is accepted and comes back as given; invalid input raises
the service's ValidationError naming the field and writes nothing (row counts,
override version and change feed unchanged); a ranking is the non-blocked candidates
sorted by score, descending, ties in input order. Every example that writes runs in
its own rolled-back savepoint, so examples never see each other's rows.
Run more examples with HYPOTHESIS_PROFILE=long.
"""

import copy
import csv
import io
import math
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from hypothesis import assume, example, given
from hypothesis import strategies as st

from explanations import services as explanation_services
from explanations.models import ModelVersion, Prediction
from opsconsole.customer_ids import hash_customer_id
from opsconsole.identifiers import (
    CUSTOMER_ID_MAX_LENGTH,
    FORBIDDEN_CHARACTER,
    ITEM_ID_MAX_LENGTH,
    validate_item_id,
)
from opsconsole_client.rules import RuleSet
from overrides import bulk, optout_mirror, services
from overrides.api.serving import ServingError, _all_valid_ids, candidate_columns
from overrides.models import Block, Boost, OptOutKind
from overrides.selectors import rule_document
from privacy import selectors as privacy_selectors
from privacy import services as privacy_services

from .input_props import (
    KIRITIMATI,
    NEW_YORK,
    ZONES,
    aware_times,
    bounded,
    future_window_times,
    in_utc,
    invalid_ids,
    is_forbidden,
    rolled_back,
    valid_ids,
    written_state,
)

pytestmark = pytest.mark.django_db

SURFACES = [None, "home", "search"]
REGIONS = [None, "SG", "DE"]


def _message_fields(error: ValidationError) -> dict[str, list[str]]:
    return error.message_dict if hasattr(error, "error_dict") else {}


# Identifiers -----------------------------------------------------------------------


def test_forbidden_character_class__every_code_point__same_as_the_identifier_rule():
    # The serving check's character class is a table of ranges; this walks all of
    # Unicode so the table and unicodedata can never drift apart unnoticed.
    differing = [
        hex(code_point)
        for code_point in range(0x110000)
        if bool(FORBIDDEN_CHARACTER.match(chr(code_point)))
        != is_forbidden(chr(code_point))
    ]

    assert differing == []


def _accepted_by_validator(value: object, max_length: int) -> bool:
    validate = (
        validate_item_id if max_length == ITEM_ID_MAX_LENGTH else hash_customer_id
    )
    try:
        validate(value)
    except ValidationError:
        return False
    return True


@bounded
@given(
    ids=st.lists(
        st.one_of(
            valid_ids(ITEM_ID_MAX_LENGTH),
            invalid_ids(ITEM_ID_MAX_LENGTH),
            st.text(max_size=10),
        ),
        min_size=1,
        max_size=5,
    ),
    max_length=st.sampled_from([ITEM_ID_MAX_LENGTH, CUSTOMER_ID_MAX_LENGTH]),
)
@example(ids=["sku\u0600x"], max_length=ITEM_ID_MAX_LENGTH)  # Cf, once let through
@example(ids=["sku\ue000"], max_length=ITEM_ID_MAX_LENGTH)  # private use
@example(ids=["sku\u2065"], max_length=ITEM_ID_MAX_LENGTH)  # unassigned: allowed
def test_serving_id_check__any_ids__agrees_with_the_services_validator(ids, max_length):
    expected = all(_accepted_by_validator(value, max_length) for value in ids)

    assert _all_valid_ids(ids, max_length) is expected


@bounded
@given(item_id=valid_ids(ITEM_ID_MAX_LENGTH), surface=st.sampled_from(SURFACES))
@example(item_id="Sku-1", surface=None)
def test_block_item__valid_item_id__stored_exactly_and_case_sensitive(
    agent, item_id, surface
):
    with rolled_back():
        before = written_state()

        block = services.block_item(
            item_id=item_id,
            surface=surface,
            region=None,
            reason="Recall",
            actor=agent,
        )

        stored = Block.objects.get(pk=block.pk)
        assert stored.item_id == item_id
        assert written_state()["version"] == before["version"] + 1
        assert written_state()["changes"] == before["changes"] + 1
        rules = RuleSet.from_document({"version": 1, "blocked": [rule_document(block)]})
        now = timezone.now().timestamp()
        assert rules.blocking_rule(item_id, surface=surface, region="SG", now=now)
        other_case = item_id.swapcase()
        if other_case != item_id:
            assert not Block.objects.filter(item_id=other_case).exists()
            assert (
                rules.blocking_rule(other_case, surface=surface, region="SG", now=now)
                is None
            )


@bounded
@given(item_id=invalid_ids(ITEM_ID_MAX_LENGTH, text_only=True))  # typed: str
def test_block_item__invalid_item_id__validation_error_and_nothing_written(
    agent, item_id
):
    before = written_state()

    with pytest.raises(ValidationError) as raised:
        services.block_item(
            item_id=item_id, surface=None, region=None, reason="Recall", actor=agent
        )

    messages = _message_fields(raised.value)
    assert messages.get("item_id"), messages
    assert "Item id" in " ".join(messages["item_id"])
    assert written_state() == before


@bounded
@given(
    customer_id=valid_ids(CUSTOMER_ID_MAX_LENGTH),
    kinds=st.lists(st.sampled_from(OptOutKind.values), min_size=1, unique=True),
)
def test_optout_register__valid_customer_id__round_trips_by_hash_only(
    officer, customer_id, kinds
):
    try:
        with rolled_back():
            services.optout_register(
                customer_id=customer_id, kinds=kinds, source="T-1", actor=officer
            )

            assert privacy_selectors.active_optout_kinds(customer_id) == sorted(kinds)
            other_case = customer_id.swapcase()
            if other_case != customer_id:
                assert privacy_selectors.active_optout_kinds(other_case) == []
    finally:
        # The Redis copy is written before commit (fail closed): undo it too.
        if optout_mirror.enabled():
            optout_mirror.remove(hash_customer_id(customer_id), list(kinds))


@bounded
@given(customer_id=invalid_ids(CUSTOMER_ID_MAX_LENGTH))
def test_privacy_services__invalid_customer_id__validation_error_and_nothing_written(
    officer, customer_id
):
    before = written_state()

    with pytest.raises(ValidationError) as optout_error:
        services.optout_register(
            customer_id=customer_id,
            kinds=["personalization"],
            source="T-1",
            actor=officer,
        )
    with pytest.raises(ValidationError) as deletion_error:
        privacy_services.deletion_request_create(
            customer_id=customer_id, source="T-1", actor=officer
        )

    assert _message_fields(optout_error.value).get("customer_id")
    assert _message_fields(deletion_error.value).get("customer_id")
    assert written_state() == before


# Scores ----------------------------------------------------------------------------

finite_scores = st.floats(allow_nan=False, allow_infinity=False)
bad_scores = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, None, "0.5", True, [0.5]]),
    st.floats().filter(lambda value: not math.isfinite(value)),
)


@bounded
@given(scores=st.lists(finite_scores, min_size=1, max_size=30))
def test_candidate_columns__finite_scores__accepted_unchanged(scores):
    candidates = [
        {"item_id": f"sku-{index}", "score": score}
        for index, score in enumerate(scores)
    ]

    ids, columns, distinct = candidate_columns(copy.deepcopy(candidates))

    assert ids == [candidate["item_id"] for candidate in candidates]
    assert columns == scores
    assert distinct == set(ids)


@bounded
@given(
    scores=st.lists(finite_scores, min_size=1, max_size=10),
    bad=bad_scores,
    position=st.integers(min_value=0),
)
def test_candidate_columns__one_bad_score__400_names_the_item(scores, bad, position):
    index = position % (len(scores) + 1)
    candidates = [
        {"item_id": f"sku-{number}", "score": score}
        for number, score in enumerate(scores)
    ]
    candidates.insert(index, {"item_id": "sku-bad", "score": bad})

    with pytest.raises(ServingError) as raised:
        candidate_columns(candidates)

    assert raised.value.fields == {
        "candidates": [f"Item {index}: score must be a finite number."]
    }


def _factor_is_valid(factor: object) -> bool:
    return (
        isinstance(factor, float)
        and math.isfinite(factor)
        and 1 < factor <= django_settings.BOOST_MAX_FACTOR
    )


@bounded
@given(
    factor=st.one_of(
        st.floats(min_value=0.5, max_value=6),
        st.floats(),
        st.sampled_from([1.0, 5.0, math.nextafter(5.0, 6), math.nextafter(1.0, 2)]),
    )
)
def test_boost_create__factor__accepted_only_in_bounds_and_finite(manager, factor):
    with rolled_back():
        before = written_state()
        call = {
            "item_id": "sku-1",
            "factor": factor,
            "surface": None,
            "region": None,
            "reason": "Launch",
            "actor": manager,
            "ends_at": timezone.now() + timedelta(days=7),
        }

        if _factor_is_valid(factor):
            boost = services.boost_create(**call)
            assert Boost.objects.get(pk=boost.pk).factor == factor
            assert written_state()["version"] == before["version"] + 1
        else:
            with pytest.raises(ValidationError) as raised:
                services.boost_create(**call)
            assert "factor" in _message_fields(raised.value)
            assert written_state() == before


@pytest.fixture
def model_version(db, settings):
    settings.EXPLANATION_PRECOMPUTE = False
    return ModelVersion.objects.create(
        name="propensity",
        version="1",
        artifact="propensity.joblib",
        artifact_sha256="0" * 64,
        framework="lightgbm",
        output_space="log_odds",
        features=[{"name": "age"}, {"name": "visits"}],
    )


@bounded
@given(
    age=st.one_of(st.none(), finite_scores),
    visits=st.one_of(st.none(), finite_scores),
    output=finite_scores,
)
def test_log_predictions__finite_values__stored_as_given(
    model_version, age, visits, output
):
    record = {
        "prediction_id": "p-1",
        "model": "propensity",
        "model_version": "1",
        "features": {"age": age, "visits": visits},
        "output": output,
    }
    with rolled_back():
        [logged] = explanation_services.log_predictions(records=[record])

        stored = Prediction.objects.get(prediction_id="p-1")
        assert logged.created
        # As numbers: PostgreSQL's jsonb gives 2.8e16 back as the int 28000000000000000.
        assert {
            name: None if value is None else float(value)
            for name, value in stored.features.items()
        } == {"age": age, "visits": visits}
        assert stored.output == output


@bounded
@given(bad=bad_scores, where=st.sampled_from(["age", "visits", "output"]))
def test_log_predictions__non_finite_or_non_numeric__400_and_nothing_written(
    model_version, bad, where
):
    features = {"age": 30.0, "visits": 2.0}
    output = 0.5
    if where == "output":
        output = bad
    else:
        features[where] = bad
    assume(bad is not None or where == "output")  # a null feature means missing
    before = written_state()

    with pytest.raises(ValidationError) as raised:
        explanation_services.log_predictions(
            records=[
                {
                    "prediction_id": "p-1",
                    "model": "propensity",
                    "model_version": "1",
                    "features": features,
                    "output": output,
                }
            ]
        )

    fields = _message_fields(raised.value)
    assert ("output" if where == "output" else "features") in fields
    if where != "output":
        assert where in " ".join(fields["features"])
    assert written_state() == before


# Time windows ----------------------------------------------------------------------

window_times = st.one_of(
    st.none(),
    future_window_times(),
    aware_times(),  # any aware time, far future and overflowing ones included
    st.datetimes(min_value=datetime(2000, 1, 1)),  # naive
)


def _block_window_problem(starts_at, expires_at, now) -> str | None:
    """Which field the service must refuse, by the contract's rules (None: valid)."""
    for name, value in (("starts_at", starts_at), ("expires_at", expires_at)):
        if value is not None and (value.tzinfo is None or in_utc(value) is None):
            return name
    start = in_utc(starts_at) if starts_at else now
    if expires_at is not None:
        end = in_utc(expires_at)
        if end <= start or end <= now:
            return "expires_at"
    return None


@bounded
@given(starts_at=window_times, expires_at=window_times)
@example(  # ends 40 minutes after it starts, across the New York fall-back hour
    starts_at=datetime(2030, 11, 3, 1, 30, tzinfo=NEW_YORK),
    expires_at=datetime(2030, 11, 3, 1, 10, fold=1, tzinfo=NEW_YORK),
)
@example(  # the same wall clocks the other way: ends 20 minutes before it starts
    starts_at=datetime(2030, 11, 3, 1, 10, fold=1, tzinfo=NEW_YORK),
    expires_at=datetime(2030, 11, 3, 1, 30, tzinfo=NEW_YORK),
)
@example(  # year 9999 in UTC+14 is year 9999 in UTC; its end of year is not
    starts_at=None,
    expires_at=datetime(9999, 12, 31, 23, 0, tzinfo=KIRITIMATI),
)
def test_block_item__time_window__accepted_iff_valid_and_stored_as_the_same_instant(
    agent, starts_at, expires_at
):
    with rolled_back():
        before = written_state()
        now = timezone.now()
        problem = _block_window_problem(starts_at, expires_at, now)
        end = in_utc(expires_at) if expires_at and expires_at.tzinfo else None
        assume(end is None or abs(end - now) > timedelta(seconds=5))  # not racing
        call = {
            "item_id": "sku-1",
            "surface": None,
            "region": None,
            "reason": "Recall",
            "actor": agent,
            "starts_at": starts_at,
            "expires_at": expires_at,
        }

        if problem is None:
            block = services.block_item(**call)
            stored = Block.objects.get(pk=block.pk)
            if starts_at is not None:
                assert stored.starts_at == in_utc(starts_at)
            assert stored.expires_at == (expires_at and in_utc(expires_at))
            assert stored.starts_at.utcoffset() == timedelta(0)
            # The serving rules see the same window as the console.
            rules = RuleSet.from_document(
                {"version": 1, "blocked": [rule_document(stored)]}
            )
            moment = timezone.now()
            blocked = rules.blocking_rule(
                "sku-1", surface="home", region="SG", now=moment.timestamp()
            )
            assert (blocked is not None) == (stored.status_at(moment) == "active")
        else:
            with pytest.raises(ValidationError) as raised:
                services.block_item(**call)
            assert problem in _message_fields(raised.value), raised.value
            assert written_state() == before


@bounded
@given(
    starts_at=future_window_times(),
    duration=st.one_of(
        st.timedeltas(min_value=timedelta(days=89), max_value=timedelta(days=91)),
        st.sampled_from(
            [
                timedelta(days=90),
                timedelta(days=90, microseconds=1),
                timedelta(days=90, hours=1),
                timedelta(days=90, hours=-1),
            ]
        ),
    ),
    end_zone=st.sampled_from(ZONES),
)
@example(  # 90 days by the calendar, 90 days and an hour elapsed (DST ends)
    starts_at=datetime(2030, 10, 1, tzinfo=NEW_YORK),
    duration=timedelta(days=90, hours=1),
    end_zone=NEW_YORK,
)
def test_boost_create__duration__limited_in_elapsed_time_in_any_zone(
    manager, starts_at, duration, end_zone
):
    ends_at = (in_utc(starts_at) + duration).astimezone(end_zone)
    with rolled_back():
        before = written_state()
        call = {
            "item_id": "sku-1",
            "factor": 2.0,
            "surface": None,
            "region": None,
            "reason": "Launch",
            "actor": manager,
            "starts_at": starts_at,
            "ends_at": ends_at,
        }

        if duration <= timedelta(days=django_settings.BOOST_MAX_DAYS):
            boost = services.boost_create(**call)
            stored = Boost.objects.get(pk=boost.pk)
            assert stored.ends_at - stored.starts_at == duration
        else:
            with pytest.raises(ValidationError) as raised:
                services.boost_create(**call)
            assert "at most 90 days" in " ".join(
                _message_fields(raised.value)["ends_at"]
            )
            assert written_state() == before


# CSV rows (bulk blocking) ----------------------------------------------------------

csv_noise = st.text(st.sampled_from('a,"\n\r\t \x00\ufeffé;\\'), max_size=60)


@bounded
@given(
    data=st.one_of(
        st.binary(max_size=400),
        csv_noise.map(lambda text: text.encode()),
        st.tuples(
            st.sampled_from([b"item_id\n", b"\xef\xbb\xbfitem_id,reason\r\n"]),
            st.binary(max_size=200),
        ).map(b"".join),
        st.tuples(st.just(b"item_id,reason\n"), csv_noise.map(str.encode)).map(
            b"".join
        ),
        st.text(max_size=80).map(
            lambda text: ("item_id\n" + text).encode("latin-1", "replace")
        ),
    )
)
@example(data=b"item_id," + b"x" * 200_000 + b"\nsku-1,y\n")  # huge header field
@example(data=b'item_id\n"' + b"x" * 200_000 + b'"\n')  # huge value
@example(data="item_id,reason\nsku-é,Rückruf\n".encode("latin-1"))
def test_rows_from_csv__any_bytes__rows_or_a_validation_error(data):
    try:
        rows = bulk.rows_from_csv(data)
    except ValidationError as error:
        assert error.messages and all(error.messages)
        return

    assert 1 <= len(rows) <= django_settings.BULK_MAX_ROWS
    for row in rows:
        assert isinstance(row.item_id, str)
        assert all(isinstance(message, str) and message for message in row.errors)


reasons = st.text(
    # No bare CR: csv.writer leaves it unquoted with a "\n" terminator, and any
    # reader then sees a line break. (A quoted "\n" is in the alphabet.)
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00\r"),
    min_size=1,
    max_size=60,
).filter(lambda text: text == text.strip() and text)
bulk_rows = st.lists(
    st.fixed_dictionaries(
        {
            "item_id": valid_ids(ITEM_ID_MAX_LENGTH),
            "surface": st.sampled_from(SURFACES),
            "region": st.sampled_from(REGIONS),
            "reason": reasons,
            "expires_at": st.one_of(st.none(), future_window_times()),
        }
    ),
    min_size=1,
    max_size=8,
    unique_by=lambda row: (row["item_id"], row["surface"], row["region"]),
)


def _csv_bytes(rows, *, quoting, line_end, bom, column_order) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=quoting, lineterminator=line_end)
    writer.writerow(column_order)
    for row in rows:
        values = {
            **row,
            "surface": row["surface"] or "",
            "region": row["region"] or "",
            "expires_at": row["expires_at"].isoformat() if row["expires_at"] else "",
        }
        writer.writerow([values[name] for name in column_order])
    return ("\ufeff" if bom else "").encode() + buffer.getvalue().encode()


@bounded
@given(
    rows=bulk_rows,
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]),
    line_end=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
    column_order=st.permutations(
        ["item_id", "surface", "region", "reason", "expires_at"]
    ),
)
def test_bulk_block__valid_csv_rows__round_trip_and_apply_in_one_version_each(
    agent, rows, quoting, line_end, bom, column_order
):
    data = _csv_bytes(
        rows, quoting=quoting, line_end=line_end, bom=bom, column_order=column_order
    )

    parsed = bulk.rows_from_csv(data)

    assert [
        {
            "item_id": row.item_id,
            "surface": row.surface,
            "region": row.region,
            "reason": row.reason,
            "expires_at": row.expires_at and in_utc(row.expires_at),
        }
        for row in parsed
    ] == [
        # In UTC: a time in a DST gap or fold never equals one of another zone.
        {**row, "expires_at": row["expires_at"] and in_utc(row["expires_at"])}
        for row in rows
    ]
    assert all(not row.errors for row in parsed)
    with rolled_back():
        before = written_state()
        result = services.block_items_in_bulk(rows=parsed, actor=agent, dry_run=False)
        after = written_state()
        assert result.applied
        assert after["blocks"] == before["blocks"] + len(rows)
        assert after["version"] == before["version"] + len(rows)
        assert after["changes"] == before["changes"] + len(rows)


@bounded
@given(
    rows=bulk_rows,
    bad=st.one_of(
        st.fixed_dictionaries(
            {
                "item_id": invalid_ids(ITEM_ID_MAX_LENGTH).filter(
                    lambda value: (
                        isinstance(value, str)
                        and value == value.strip()
                        and value
                        and "\n" not in value
                        and "\r" not in value
                    )
                )
            }
        ),
        st.fixed_dictionaries(
            {"surface": st.sampled_from(["nowhere", "HOME", "ho\x00me"])}
        ),
        st.fixed_dictionaries({"region": st.sampled_from(["sg", "ZZ", "S\x00"])}),
        st.fixed_dictionaries({"reason": st.sampled_from([" ", "x" * 1001, "a\x00b"])}),
        st.fixed_dictionaries(
            {
                "expires_at": st.sampled_from(
                    [
                        "2001-01-01T00:00:00Z",
                        "tomorrow",
                        "2026-02-30",
                        "9999-12-31T23:00-05:00",
                    ]
                )
            }
        ),
    ),
    position=st.integers(min_value=0),
    dry_run=st.booleans(),
)
def test_bulk_block__one_bad_row__refused_with_its_line_and_nothing_written(
    agent, rows, bad, position, dry_run
):
    index = position % (len(rows) + 1)
    good = [{**row, "expires_at": None} for row in rows]
    bad_row = {"item_id": "sku-bad", "reason": "Recall", **bad}
    records = [
        {key: value for key, value in row.items() if value is not None} for row in good
    ]
    records.insert(index, bad_row)
    before = written_state()

    parsed = bulk.rows_from_records(records)
    result = services.block_items_in_bulk(rows=parsed, actor=agent, dry_run=dry_run)

    assert not result.applied
    assert not result.is_valid
    flagged = [row.line for row in result.rows if row.errors]
    assert index + 1 in flagged  # JSON lines count from 1
    assert written_state() == before


@bounded
@given(
    extra=st.lists(
        st.text(st.sampled_from("abc,"), min_size=1, max_size=5), min_size=1, max_size=3
    ),
)
def test_rows_from_csv__more_values_than_columns__the_row_says_so(extra):
    data = ("item_id,reason\nsku-1,Recall," + ",".join(extra) + "\n").encode()

    rows = bulk.rows_from_csv(data)

    assert rows[0].errors == ["This row has more values than the header has columns."]


def test_rows_from_csv__missing_columns__defaults_fill_them_and_item_id_is_required():
    rows = bulk.rows_from_csv(b"item_id\nsku-1\n", defaults={"reason": "Recall"})

    assert (rows[0].item_id, rows[0].reason, rows[0].errors) == ("sku-1", "Recall", [])
    with pytest.raises(ValidationError, match="item_id column"):
        bulk.rows_from_csv(b"sku,reason\nsku-1,Recall\n")


# Rule evaluation -------------------------------------------------------------------

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC).timestamp()
OFFSETS = [None, -3600, -1, 0, 1, 3600]  # seconds from NOW; None: open-ended
POOL = ["a", "b", "c", "d", "A", "é"]


def _iso(offset: int | None) -> str | None:
    if offset is None:
        return None
    moment = datetime.fromtimestamp(NOW + offset, UTC)
    return moment.isoformat().replace("+00:00", "Z")


rule_scope = {
    "item_id": st.sampled_from(POOL),
    "surface": st.sampled_from([None, "home", "search"]),
    "region": st.sampled_from([None, "SG", "DE"]),
    "starts_at": st.sampled_from(OFFSETS).map(_iso),
}
block_rules = st.fixed_dictionaries(
    {**rule_scope, "expires_at": st.sampled_from(OFFSETS).map(_iso)}
)
boost_rules = st.fixed_dictionaries(
    {
        **rule_scope,
        "ends_at": st.sampled_from(OFFSETS).map(_iso),
        "factor": st.floats(min_value=1.0, max_value=5.0, exclude_min=True),
    }
)
tied_or_any_scores = st.one_of(
    st.sampled_from([0.0, -0.0, 0.5, 1.0]), st.floats(-1e6, 1e6, allow_nan=False)
)


def _document(blocks: list[dict], boosts: list[dict]) -> dict:
    number = iter(range(1, 1000))
    return {
        "version": 7,
        "blocked": [{"id": next(number), **rule} for rule in blocks],
        "boosts": [{"id": next(number), **rule} for rule in boosts],
    }


def _applies(rule: dict, end_key: str, surface, region) -> bool:
    def seconds(value, default):
        return default if value is None else datetime.fromisoformat(value).timestamp()

    return (
        rule["surface"] in (None, surface)
        and rule["region"] in (None, region)
        and seconds(rule["starts_at"], -math.inf) <= NOW
        and seconds(rule[end_key], math.inf) > NOW
    )


def _reference_rank(document, candidates, surface, region):
    """The contract's rules, written as plainly as possible."""
    kept, removed = [], []
    for candidate in candidates:
        item_id, score = candidate["item_id"], candidate["score"]
        if any(
            rule["item_id"] == item_id and _applies(rule, "expires_at", surface, region)
            for rule in document["blocked"]
        ):
            removed.append(item_id)
            continue
        factors = [
            rule["factor"]
            for rule in document["boosts"]
            if rule["item_id"] == item_id and _applies(rule, "ends_at", surface, region)
        ]
        boosted_score = score * max(factors) if factors else score
        kept.append((item_id, boosted_score, score, bool(factors)))
    kept.sort(key=lambda entry: -entry[1])  # stable: ties keep their input order
    return kept, removed


rank_inputs = st.fixed_dictionaries(
    {
        "blocks": st.lists(block_rules, max_size=6),
        "boosts": st.lists(boost_rules, max_size=8),
        "surface": st.sampled_from([None, "home", "search", "email"]),
        "region": st.sampled_from([None, "SG", "DE", "US"]),
    }
)
rank_candidate = st.fixed_dictionaries(
    {"item_id": st.sampled_from([*POOL, "z", "sku-1"]), "score": tied_or_any_scores}
)


@bounded
@given(
    setup=rank_inputs,
    candidates=st.lists(rank_candidate, min_size=1, max_size=12),
)
def test_rank__any_rules_and_candidates__non_blocked_sorted_ties_in_input_order(
    setup, candidates
):
    document = _document(setup["blocks"], setup["boosts"])
    rules = RuleSet.from_document(document)
    expected_items, expected_removed = _reference_rank(
        document, candidates, setup["surface"], setup["region"]
    )

    result = rules.rank(
        copy.deepcopy(candidates),
        surface=setup["surface"],
        region=setup["region"],
        now=NOW,
    )

    assert result.items == [(entry[0], entry[1]) for entry in expected_items]
    assert [entry["item_id"] for entry in result.removed] == expected_removed
    # A permutation of the candidates: each kept or removed, none invented.
    kept_ids = [item_id for item_id, _ in result.items]
    assert sorted(kept_ids + expected_removed) == sorted(
        candidate["item_id"] for candidate in candidates
    )
    response = result.to_response()
    assert [
        (item["original_score"], item["boosted"]) for item in response["items"]
    ] == [(entry[2], entry[3]) for entry in expected_items]


@bounded
@given(
    setup=rank_inputs,
    candidates=st.lists(
        rank_candidate,
        min_size=1,
        max_size=12,
        unique_by=lambda candidate: candidate["item_id"],
    ),
)
def test_rank_in_place__unique_candidates__same_answer_as_the_reference(
    setup, candidates
):
    document = _document(setup["blocks"], setup["boosts"])
    rules = RuleSet.from_document(document)
    expected_items, expected_removed = _reference_rank(
        document, candidates, setup["surface"], setup["region"]
    )
    given_candidates = copy.deepcopy(candidates)

    items, removed = rules.rank_in_place(
        given_candidates,
        ids=[candidate["item_id"] for candidate in candidates],
        distinct_ids={candidate["item_id"] for candidate in candidates},
        surface=setup["surface"],
        region=setup["region"],
        now=NOW,
    )

    assert [
        (item["item_id"], item["score"], item["original_score"], item["boosted"])
        for item in items
    ] == expected_items
    assert [entry["item_id"] for entry in removed] == expected_removed


@bounded
@given(
    name=st.sampled_from(["item_id", "surface", "region", "reason"]),
    value=st.one_of(
        st.lists(st.text(max_size=3), max_size=2),
        st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
        st.booleans(),
        st.integers(),
        st.floats(),
    ),
)
def test_rows_from_records__json_list_object_or_number__the_row_names_the_field(
    name, value
):
    # Not str(value): ["sku-1"] must not block an item called "['sku-1']".
    [row] = bulk.rows_from_records([{"item_id": "sku-1", "reason": "x", name: value}])

    assert f"Give {name} as text." in row.errors
