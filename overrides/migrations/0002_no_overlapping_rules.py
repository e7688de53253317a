"""Database-level guard: no two open rules of one kind overlap for an item and scope.

PostgreSQL gets exclusion constraints over time ranges (btree_gist); SQLite gets
triggers with the same condition. The services check first to give a clear 409; this
makes sure nothing that bypasses them (a shell, a bug) can break the rule.

On SQLite, a later migration that rebuilds overrides_block or overrides_boost (most
AlterField/AddField operations do) drops these triggers: such a migration must run
`add_overlap_guards` again. tests/overrides/test_constraints.py fails if it does not.
"""

from django.db import migrations

RULES = (("overrides_block", "expires_at"), ("overrides_boost", "ends_at"))


def _sqlite_overlap_condition(table: str, end: str, exclude_self: bool) -> str:
    same_row = " AND other.id != NEW.id" if exclude_self else ""
    return (
        f"NEW.withdrawn_at IS NULL AND EXISTS (SELECT 1 FROM {table} AS other "
        f"WHERE other.withdrawn_at IS NULL AND other.item_id = NEW.item_id "
        f"AND other.surface IS NEW.surface AND other.region IS NEW.region "
        f"AND (other.{end} IS NULL OR other.{end} > NEW.starts_at) "
        f"AND (NEW.{end} IS NULL OR NEW.{end} > other.starts_at){same_row})"
    )


def add_overlap_guards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for table, end in RULES:
        kind = table.removeprefix("overrides_")
        if vendor == "postgresql":
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
            schema_editor.execute(
                f"ALTER TABLE {table} ADD CONSTRAINT {kind}_no_overlap EXCLUDE USING gist ("
                f"item_id WITH =, (COALESCE(surface, '')) WITH =, "
                f"(COALESCE(region, '')) WITH =, tstzrange(starts_at, {end}) WITH &&) "
                f"WHERE (withdrawn_at IS NULL)"
            )
        elif vendor == "sqlite":
            message = f"overlapping {kind} for the same item and scope"
            for event, exclude_self in (("INSERT", False), ("UPDATE", True)):
                schema_editor.execute(
                    f"CREATE TRIGGER {kind}_no_overlap_{event.lower()} BEFORE {event} "
                    f"ON {table} WHEN {_sqlite_overlap_condition(table, end, exclude_self)} "
                    f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
                )


def remove_overlap_guards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for table, _end in RULES:
        kind = table.removeprefix("overrides_")
        if vendor == "postgresql":
            schema_editor.execute(
                f"ALTER TABLE {table} DROP CONSTRAINT {kind}_no_overlap"
            )
        elif vendor == "sqlite":
            for event in ("insert", "update"):
                schema_editor.execute(f"DROP TRIGGER {kind}_no_overlap_{event}")


class Migration(migrations.Migration):
    dependencies = [("overrides", "0001_initial")]

    operations = [migrations.RunPython(add_overlap_guards, remove_overlap_guards)]
