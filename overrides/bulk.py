"""Reading bulk block uploads (CSV, a JSON list, or pasted ids) into rows.

Only parsing lives here; `services.block_items_in_bulk` validates and writes. A row
that cannot be parsed keeps its problem in `row.errors`, so the preview lists it
beside the others instead of stopping at the first.
"""

import csv
import io
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from .services import BulkBlockRow

CSV_COLUMNS = ("item_id", "surface", "region", "reason", "starts_at", "expires_at")


def parse_moment(text: str) -> datetime:
    """An ISO 8601 date or date-time; without an offset it is in the current zone."""
    text = text.strip()
    moment = parse_datetime(text)
    if moment is None:
        day = parse_date(text)
        if day is None:
            raise ValueError(f"{text!r} is not an ISO 8601 date or date-time.")
        moment = datetime(day.year, day.month, day.day)
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def _row_from_record(line: int, record: dict, defaults: dict) -> BulkBlockRow:
    not_text = []

    def text(name: str) -> str:
        value = record.get(name)
        if value is None or value == "":
            value = defaults.get(name, "")
        if not isinstance(value, str):
            # A JSON list or object would become its Python repr, e.g. "['sku-1']",
            # and a number is a client bug (as the API's StrictCharField says):
            # 1e3 or 007 would not be the id that was meant.
            if value is not None:
                not_text.append(name)
            return ""
        return str(value).strip()

    row = BulkBlockRow(
        line=line,
        item_id=text("item_id"),
        surface=text("surface") or None,
        region=text("region") or None,
        reason=text("reason"),
    )
    for name in ("starts_at", "expires_at"):
        value = record.get(name) or defaults.get(name)
        if isinstance(value, datetime):
            setattr(row, name, value)
        elif value:
            try:
                setattr(row, name, parse_moment(str(value)))
            except ValueError as error:
                row.errors.append(f"{name}: {error}")
    if not_text:
        row.errors.append(f"Give {', '.join(not_text)} as text.")
    if None in record:
        row.errors.append("This row has more values than the header has columns.")
    unknown = sorted(set(record) - set(CSV_COLUMNS) - {None})
    if unknown:
        row.errors.append(f"Unknown column(s): {', '.join(unknown)}.")
    return row


def _check_row_count(count: int) -> None:
    if count == 0:
        raise ValidationError("The upload has no rows.")
    if count > settings.BULK_MAX_ROWS:
        raise ValidationError(
            f"At most {settings.BULK_MAX_ROWS} rows at once (the upload has {count})."
        )


def rows_from_csv(data: bytes, *, defaults: dict | None = None) -> list[BulkBlockRow]:
    """Rows from a UTF-8 CSV with a header; `item_id` is required, other columns not."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValidationError(
            f"The file is not UTF-8 text (byte {error.start} cannot be read). "
            "Save it as CSV UTF-8 and upload it again."
        ) from error
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in reader.fieldnames or []]
    except csv.Error as error:  # e.g. a header field over csv's size limit
        raise ValidationError(f"The CSV header cannot be read: {error}.") from error
    if "item_id" not in header:
        raise ValidationError(
            "The CSV needs a header row with an item_id column "
            f"(optional: {', '.join(CSV_COLUMNS[1:])})."
        )
    reader.fieldnames = header
    try:
        # line_num is the file line a record ends on, so blank lines and quoted
        # line breaks keep the numbers the user sees in their editor.
        records = [(reader.line_num, record) for record in reader]
    except csv.Error as error:
        raise ValidationError(f"The CSV cannot be read: {error}.") from error
    _check_row_count(len(records))
    return [_row_from_record(line, record, defaults or {}) for line, record in records]


def rows_from_records(
    records: object, *, defaults: dict | None = None
) -> list[BulkBlockRow]:
    """Rows from a JSON list of objects with the CSV's column names."""
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValidationError("Send a JSON list of objects, one per block.")
    _check_row_count(len(records))
    return [
        _row_from_record(line, record, defaults or {})
        for line, record in enumerate(records, start=1)
    ]


def rows_from_pasted_ids(text: str, *, defaults: dict) -> list[BulkBlockRow]:
    """One item id per line (blank lines skipped), all with one scope and reason."""
    lines = [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]
    _check_row_count(len(lines))
    return [
        _row_from_record(number, {"item_id": item_id}, defaults)
        for number, item_id in lines
    ]
