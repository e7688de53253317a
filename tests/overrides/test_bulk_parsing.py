"""Reading bulk block uploads into rows; a row's own problems stay on the row."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from overrides import bulk

SINGAPORE = ZoneInfo("Asia/Singapore")


def _fields(row) -> dict:
    return {
        "line": row.line,
        "item_id": row.item_id,
        "surface": row.surface,
        "region": row.region,
        "reason": row.reason,
        "starts_at": row.starts_at,
        "expires_at": row.expires_at,
        "errors": row.errors,
        "warnings": row.warnings,
    }


# rows_from_csv --------------------------------------------------------------------


def test_rows_from_csv__all_columns__rows_with_parsed_values():
    data = (
        b"item_id,surface,region,reason,starts_at,expires_at\n"
        b"sku-1,home,SG,Recall,2026-12-01T00:00:00Z,2026-12-31T12:30:00+00:00\n"
        b"sku-2,,,Counterfeit,,\n"
    )

    rows = bulk.rows_from_csv(data)

    assert [_fields(row) for row in rows] == [
        {
            "line": 2,
            "item_id": "sku-1",
            "surface": "home",
            "region": "SG",
            "reason": "Recall",
            "starts_at": datetime(2026, 12, 1, tzinfo=UTC),
            "expires_at": datetime(2026, 12, 31, 12, 30, tzinfo=UTC),
            "errors": [],
            "warnings": [],
        },
        {
            "line": 3,
            "item_id": "sku-2",
            "surface": None,
            "region": None,
            "reason": "Counterfeit",
            "starts_at": None,
            "expires_at": None,
            "errors": [],
            "warnings": [],
        },
    ]


def test_rows_from_csv__utf8_with_bom__first_header_is_item_id():
    data = "item_id,reason\nürün-1,Rückruf\n".encode("utf-8-sig")
    assert data.startswith(b"\xef\xbb\xbf")

    rows = bulk.rows_from_csv(data)

    assert [(row.item_id, row.reason, row.errors) for row in rows] == [
        ("ürün-1", "Rückruf", [])
    ]


def test_rows_from_csv__windows_line_endings_and_padded_header__parsed():
    data = b" item_id , reason \r\n sku-1 , Recall \r\n"

    rows = bulk.rows_from_csv(data)

    assert [(row.item_id, row.reason, row.errors) for row in rows] == [
        ("sku-1", "Recall", [])
    ]


def test_rows_from_csv__latin1_bytes__validation_error_not_utf8():
    data = "item_id,reason\nsku-1,Déjà vu\n".encode("latin-1")

    with pytest.raises(ValidationError) as caught:
        bulk.rows_from_csv(data)

    assert caught.value.messages == [
        "The file is not UTF-8 text (byte 22 cannot be read). "
        "Save it as CSV UTF-8 and upload it again."
    ]


def test_rows_from_csv__no_item_id_header__validation_error_lists_columns():
    with pytest.raises(ValidationError) as caught:
        bulk.rows_from_csv(b"sku,reason\nsku-1,Recall\n")

    assert caught.value.messages == [
        "The CSV needs a header row with an item_id column "
        "(optional: surface, region, reason, starts_at, expires_at)."
    ]


def test_rows_from_csv__empty_file__validation_error_needs_header():
    with pytest.raises(ValidationError) as caught:
        bulk.rows_from_csv(b"")

    assert caught.value.messages[0].startswith(
        "The CSV needs a header row with an item_id column"
    )


def test_rows_from_csv__header_only__validation_error_no_rows():
    with pytest.raises(ValidationError) as caught:
        bulk.rows_from_csv(b"item_id,reason\n")

    assert caught.value.messages == ["The upload has no rows."]


def test_rows_from_csv__too_many_rows__validation_error_with_count(settings):
    settings.BULK_MAX_ROWS = 2

    with pytest.raises(ValidationError) as caught:
        bulk.rows_from_csv(b"item_id\nsku-1\nsku-2\nsku-3\n")

    assert caught.value.messages == ["At most 2 rows at once (the upload has 3)."]


def test_rows_from_csv__row_with_extra_values__error_on_that_row_only():
    data = b"item_id,reason\nsku-1,Recall,surplus\nsku-2,Recall\n"

    rows = bulk.rows_from_csv(data)

    assert [row.errors for row in rows] == [
        ["This row has more values than the header has columns."],
        [],
    ]
    assert rows[0].item_id == "sku-1"


def test_rows_from_csv__unknown_column__error_names_it_on_each_row():
    data = b"item_id,colour,reason\nsku-1,red,Recall\nsku-2,blue,Recall\n"

    rows = bulk.rows_from_csv(data)

    assert [row.errors for row in rows] == [
        ["Unknown column(s): colour."],
        ["Unknown column(s): colour."],
    ]


def test_rows_from_csv__bad_date__error_on_row_not_exception():
    data = b"item_id,reason,expires_at\nsku-1,Recall,next tuesday\nsku-2,Recall,\n"

    rows = bulk.rows_from_csv(data)

    assert rows[0].errors == [
        "expires_at: 'next tuesday' is not an ISO 8601 date or date-time."
    ]
    assert rows[0].expires_at is None
    assert rows[1].errors == []


def test_rows_from_csv__impossible_calendar_date__error_on_row_not_exception():
    rows = bulk.rows_from_csv(b"item_id,starts_at\nsku-1,2026-02-30\n")

    assert len(rows[0].errors) == 1
    assert rows[0].errors[0].startswith("starts_at: ")
    assert rows[0].starts_at is None


def test_rows_from_csv__naive_datetime__made_aware_in_current_zone():
    data = b"item_id,starts_at,expires_at\nsku-1,2026-03-01T09:00,2026-03-02\n"

    with timezone.override(SINGAPORE):
        rows = bulk.rows_from_csv(data)

    row = rows[0]
    assert row.errors == []
    assert row.starts_at == datetime(2026, 3, 1, 1, 0, tzinfo=UTC)
    assert row.starts_at.utcoffset() == timedelta(hours=8)
    assert row.expires_at == datetime(2026, 3, 1, 16, 0, tzinfo=UTC)


def test_rows_from_csv__explicit_offset__kept_whatever_the_current_zone():
    data = b"item_id,starts_at\nsku-1,2026-03-01T09:00:00+02:00\n"

    with timezone.override(SINGAPORE):
        rows = bulk.rows_from_csv(data)

    assert rows[0].starts_at == datetime(2026, 3, 1, 7, 0, tzinfo=UTC)


def test_rows_from_csv__blank_cells__defaults_fill_them():
    defaults = {"surface": "home", "region": "SG", "reason": "Supplier recall"}
    data = b"item_id,surface,reason\nsku-1,,\nsku-2,search,Own reason\n"

    rows = bulk.rows_from_csv(data, defaults=defaults)

    assert [(row.item_id, row.surface, row.region, row.reason) for row in rows] == [
        ("sku-1", "home", "SG", "Supplier recall"),
        ("sku-2", "search", "SG", "Own reason"),
    ]


def test_rows_from_csv__quoted_comma_in_reason__one_value():
    rows = bulk.rows_from_csv(b'item_id,reason\nsku-1,"Recall, batch 7"\n')

    assert (rows[0].reason, rows[0].errors) == ("Recall, batch 7", [])


def test_rows_from_csv__blank_line_between_rows__line_numbers_match_file():
    data = b"item_id,reason\nsku-1,Recall\n\nsku-2,Recall\n"

    rows = bulk.rows_from_csv(data)

    assert [(row.item_id, row.line) for row in rows] == [("sku-1", 2), ("sku-2", 4)]


# rows_from_records ----------------------------------------------------------------


def test_rows_from_records__list_of_objects__rows_numbered_from_one():
    expires = datetime(2027, 1, 1, tzinfo=UTC)
    records = [
        {"item_id": "sku-1", "surface": "email", "reason": "Recall"},
        {"item_id": "sku-2", "reason": " Padded ", "expires_at": expires},
        {"item_id": "sku-3", "reason": "Recall", "starts_at": "2026-12-01T08:00Z"},
    ]

    rows = bulk.rows_from_records(records)

    assert [
        (row.line, row.item_id, row.surface, row.reason, row.expires_at) for row in rows
    ] == [
        (1, "sku-1", "email", "Recall", None),
        (2, "sku-2", None, "Padded", expires),
        (3, "sku-3", None, "Recall", None),
    ]
    assert rows[2].starts_at == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert [row.errors for row in rows] == [[], [], []]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        pytest.param({"item_id": 42, "reason": "R"}, "Give item_id as text.", id="int"),
        pytest.param(
            {"item_id": "sku-1", "reason": 1.5}, "Give reason as text.", id="float"
        ),
        pytest.param(
            {"item_id": 7, "reason": 0}, "Give item_id, reason as text.", id="both"
        ),
    ],
)
def test_rows_from_records__json_number__row_error_give_as_text(record, message):
    # As the API (StrictCharField): a number is a client bug, not an id or a reason.
    [row] = bulk.rows_from_records([record])

    assert row.errors == [message]


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"item_id": "sku-1"}, id="object"),
        pytest.param(["sku-1"], id="list-of-strings"),
        pytest.param([{"item_id": "sku-1"}, None], id="list-with-null"),
        pytest.param("sku-1", id="string"),
    ],
)
def test_rows_from_records__not_a_list_of_objects__validation_error(payload):
    with pytest.raises(ValidationError) as caught:
        bulk.rows_from_records(payload)

    assert caught.value.messages == ["Send a JSON list of objects, one per block."]


def test_rows_from_records__empty_list__validation_error_no_rows():
    with pytest.raises(ValidationError) as caught:
        bulk.rows_from_records([])

    assert caught.value.messages == ["The upload has no rows."]


def test_rows_from_records__unknown_key_and_bad_date__errors_on_row():
    rows = bulk.rows_from_records(
        [{"item_id": "sku-1", "reason": "R", "until": "x", "starts_at": "soon"}]
    )

    assert rows[0].errors == [
        "starts_at: 'soon' is not an ISO 8601 date or date-time.",
        "Unknown column(s): until.",
    ]


def test_rows_from_records__missing_values__defaults_applied():
    defaults = {"reason": "Supplier recall", "region": "AE"}

    rows = bulk.rows_from_records(
        [{"item_id": "sku-1", "reason": ""}], defaults=defaults
    )

    assert (rows[0].reason, rows[0].region, rows[0].surface) == (
        "Supplier recall",
        "AE",
        None,
    )


# rows_from_pasted_ids -------------------------------------------------------------


def test_rows_from_pasted_ids__blank_lines__skipped_keeping_line_numbers():
    text = "sku-1\n\n   \n  sku-2  \r\nsku-3"
    defaults = {"surface": "home", "region": None, "reason": "Recall"}

    rows = bulk.rows_from_pasted_ids(text, defaults=defaults)

    assert [_fields(row) for row in rows] == [
        {
            "line": line,
            "item_id": item_id,
            "surface": "home",
            "region": None,
            "reason": "Recall",
            "starts_at": None,
            "expires_at": None,
            "errors": [],
            "warnings": [],
        }
        for line, item_id in ((1, "sku-1"), (4, "sku-2"), (5, "sku-3"))
    ]


def test_rows_from_pasted_ids__date_defaults__parsed_for_every_row():
    expires = datetime(2027, 1, 1, tzinfo=UTC)

    rows = bulk.rows_from_pasted_ids(
        "sku-1\nsku-2",
        defaults={
            "reason": "R",
            "starts_at": "2026-12-24T00:00:00Z",
            "expires_at": expires,
        },
    )

    assert [(row.starts_at, row.expires_at) for row in rows] == [
        (datetime(2026, 12, 24, tzinfo=UTC), expires)
    ] * 2


def test_rows_from_pasted_ids__only_blank_lines__validation_error_no_rows():
    with pytest.raises(ValidationError) as caught:
        bulk.rows_from_pasted_ids("\n  \n\t\n", defaults={"reason": "R"})

    assert caught.value.messages == ["The upload has no rows."]


def test_rows_from_pasted_ids__too_many_lines__validation_error(settings):
    settings.BULK_MAX_ROWS = 2

    with pytest.raises(ValidationError) as caught:
        bulk.rows_from_pasted_ids("a\nb\n\nc", defaults={"reason": "R"})

    assert caught.value.messages == ["At most 2 rows at once (the upload has 3)."]


def test_parse_moment__date_only__midnight_in_current_zone():
    with timezone.override(SINGAPORE):
        moment = bulk.parse_moment(" 2026-05-01 ")

    assert moment == datetime(2026, 5, 1, tzinfo=SINGAPORE)
    assert timezone.is_aware(moment)
