"""Create the four roles as groups with model permissions (contract, Authentication).

Permissions normally appear after migrations; they are created here first so the
groups can be given them in the same run.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from opsconsole.auth import ROLES, sync_roles


def create_roles(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    sync_roles(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"))


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("admin", "0003_logentry_add_action_flag_choices"),
        ("sessions", "0001_initial"),
        ("overrides", "0003_seed_configuration"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
