"""python manage.py create_api_key NAME --scopes serving:read,predictions:write"""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from opsconsole import services
from opsconsole.errors import ConflictError
from opsconsole.models import ApiKeyScope


class Command(BaseCommand):
    help = "Create an API key and print it once; only its hash is stored."

    def add_arguments(self, parser):
        parser.add_argument("name", help="A short name, e.g. serving-eu-1.")
        parser.add_argument(
            "--scopes",
            required=True,
            help=f"Comma-separated: {', '.join(ApiKeyScope.values)}.",
        )
        parser.add_argument(
            "--rate-limit",
            type=int,
            default=None,
            help="Requests per minute for this key.",
        )

    def handle(self, *args, name: str, scopes: str, rate_limit: int | None, **options):
        wanted = [scope.strip() for scope in scopes.split(",") if scope.strip()]
        try:
            key, raw_key = services.api_key_create(
                name=name, scopes=wanted, rate_limit_per_minute=rate_limit
            )
        except ValidationError as error:
            details = "; ".join(
                f"{field}: {' '.join(messages)}"
                for field, messages in error.message_dict.items()
            )
            raise CommandError(details) from error
        except ConflictError as error:
            raise CommandError(error.message) from error
        self.stderr.write(
            f"API key {key.name!r} with scopes {', '.join(key.scopes)}. "
            "Store it now: it is not shown again."
        )
        self.stdout.write(raw_key)
