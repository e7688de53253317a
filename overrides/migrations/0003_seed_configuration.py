"""Seed the configured surfaces and regions, and the override version counter."""

from django.db import migrations

SURFACES = [
    ("home", "Home page"),
    ("search", "Search results"),
    ("email", "E-mail"),
    ("product_page", "Product page"),
]
REGIONS = [
    ("SA", "Saudi Arabia"),
    ("SG", "Singapore"),
    ("AE", "United Arab Emirates"),
    ("GB", "United Kingdom"),
    ("DE", "Germany"),
    ("US", "United States"),
]


def seed(apps, schema_editor):
    Surface = apps.get_model("overrides", "Surface")
    Region = apps.get_model("overrides", "Region")
    OverrideVersion = apps.get_model("overrides", "OverrideVersion")
    for code, name in SURFACES:
        Surface.objects.get_or_create(code=code, defaults={"name": name})
    for code, name in REGIONS:
        Region.objects.get_or_create(code=code, defaults={"name": name})
    OverrideVersion.objects.get_or_create(pk=1, defaults={"value": 0})


class Migration(migrations.Migration):
    dependencies = [("overrides", "0002_no_overlapping_rules")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
