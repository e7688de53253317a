"""python manage.py load_demo: demo users (one per role) and each app's demo data."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from explanations import demo as explanations_demo
from opsconsole.auth import ROLES
from overrides import demo as overrides_demo
from privacy import demo as privacy_demo

DEMO_USERNAMES = {
    "support_agent": "agent",
    "account_manager": "manager",
    "privacy_officer": "privacy",
    "admin": "admin",
}


class Command(BaseCommand):
    help = "Create one demo user per role (new passwords, printed) and load demo data."

    @transaction.atomic
    def handle(self, *args, **options):
        users = {role: self._demo_user(role) for role in ROLES}
        for line in overrides_demo.load(
            agent=users["support_agent"][0], manager=users["account_manager"][0]
        ):
            self.stdout.write(f"  {line}")
        for line in explanations_demo.load(admin=users["admin"][0]):
            self.stdout.write(f"  {line}")
        for line in privacy_demo.load(
            officer=users["privacy_officer"][0], agent=users["support_agent"][0]
        ):
            self.stdout.write(f"  {line}")
        lines = [
            f"  {user.username:<8} {password:<16} role: {role}"
            for role, (user, password) in users.items()
        ]
        credentials = settings.VAR_DIR / "demo-credentials.txt"
        credentials.write_text("\n".join(lines) + "\n")
        credentials.chmod(0o600)
        self.stdout.write(
            self.style.SUCCESS("Demo users (passwords are new on every run):")
        )
        self.stdout.write("\n".join(lines))
        self.stdout.write(f"(also in {credentials})")
        self.stdout.write(self.style.SUCCESS("Open http://127.0.0.1:8000 and sign in."))

    def _demo_user(self, role: str):
        user, _ = get_user_model().objects.get_or_create(username=DEMO_USERNAMES[role])
        password = secrets.token_urlsafe(9)
        user.set_password(password)
        user.is_staff = role == "admin"
        user.save()
        user.groups.set([Group.objects.get(name=role)])
        return user, password
