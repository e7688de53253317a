"""Create the four roles as groups with model permissions (contract, Authentication).

Permissions normally appear after migrations; they are created here first so the
groups can be given them in the same run.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

READ_CONFIGURATION = [
    "overrides.view_surface",
    "overrides.view_region",
    "overrides.view_catalogitem",
]
ROLE_PERMISSIONS = {
    "support_agent": [
        *READ_CONFIGURATION,
        "overrides.view_block",
        "overrides.add_block",
        "overrides.change_block",
        "overrides.view_boost",
    ],
    "account_manager": [
        *READ_CONFIGURATION,
        "overrides.view_boost",
        "overrides.add_boost",
        "overrides.change_boost",
        "overrides.view_block",
    ],
    "privacy_officer": [],
}


def create_roles(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, permissions in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        for permission in permissions:
            app_label, codename = permission.split(".")
            group.permissions.add(
                Permission.objects.get(
                    content_type__app_label=app_label, codename=codename
                )
            )
    admin, _ = Group.objects.get_or_create(name="admin")
    admin.permissions.set(Permission.objects.all())


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(
        name__in=[*ROLE_PERMISSIONS, "admin"]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("admin", "0003_logentry_add_action_flag_choices"),
        ("sessions", "0001_initial"),
        ("overrides", "0003_seed_configuration"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
