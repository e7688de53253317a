"""Seed the configured surfaces and regions, and the override version counter."""

from django.db import migrations

from overrides.defaults import seed_configuration


def seed(apps, schema_editor):
    seed_configuration(
        apps.get_model("overrides", "Surface"),
        apps.get_model("overrides", "Region"),
        apps.get_model("overrides", "OverrideVersion"),
    )


class Migration(migrations.Migration):
    dependencies = [("overrides", "0002_no_overlapping_rules")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
