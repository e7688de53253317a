"""python manage.py import_catalog FILE: load item titles and categories from CSV."""

import csv
import io

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from overrides import services
from overrides.bulk import parse_moment

COLUMNS = ("item_id", "title", "category", "created")


class Command(BaseCommand):
    help = (
        "Insert or update catalog items from a UTF-8 CSV with the header "
        "item_id,title[,category][,created]. Any bad row writes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "file", help="Path to the CSV file, or - for standard input."
        )

    def handle(self, *args, file: str, **options):
        raw = self.stdin.buffer.read() if file == "-" else self._read(file)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise CommandError(f"{file} is not UTF-8 (byte {error.start}).") from error
        reader = csv.DictReader(io.StringIO(text, newline=""))
        missing = {"item_id", "title"} - set(reader.fieldnames or [])
        if missing:
            raise CommandError(
                "The header must have item_id and title "
                f"(missing: {', '.join(sorted(missing))})."
            )
        rows = []
        for line, record in enumerate(reader, start=2):
            created = (record.get("created") or "").strip()
            try:
                record["created"] = parse_moment(created) if created else None
            except ValueError as error:
                raise CommandError(f"line {line}: created: {error}") from error
            rows.append(record)
        try:
            result = services.import_catalog(rows=rows)
        except ValidationError as error:
            details = "\n".join(
                f"  {where}: {' '.join(messages)}"
                for where, messages in error.message_dict.items()
            )
            raise CommandError(f"Nothing was imported:\n{details}") from error
        self.stdout.write(
            self.style.SUCCESS(
                f"Catalog: {result.created} created, {result.updated} updated."
            )
        )

    def _read(self, path: str) -> bytes:
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except OSError as error:
            raise CommandError(f"Cannot read {path}: {error.strerror}.") from error
