"""The configuration a new console starts with: surfaces, regions, the version row."""

DEFAULT_SURFACES = [
    ("home", "Home page"),
    ("search", "Search results"),
    ("email", "E-mail"),
    ("product_page", "Product page"),
]
DEFAULT_REGIONS = [
    ("SA", "Saudi Arabia"),
    ("SG", "Singapore"),
    ("AE", "United Arab Emirates"),
    ("GB", "United Kingdom"),
    ("DE", "Germany"),
    ("US", "United States"),
]


def seed_configuration(surface_model, region_model, version_model) -> None:
    """Create the version counter, and default surfaces and regions when none exist.

    Takes the models as arguments so the data migration can pass its historical ones.
    Admins' later edits are kept: defaults are only added to an empty table.
    """
    version_model.objects.get_or_create(pk=1, defaults={"value": 0})
    if not surface_model.objects.exists():
        surface_model.objects.bulk_create(
            surface_model(code=code, name=name) for code, name in DEFAULT_SURFACES
        )
    if not region_model.objects.exists():
        region_model.objects.bulk_create(
            region_model(code=code, name=name) for code, name in DEFAULT_REGIONS
        )
