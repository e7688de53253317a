"""`manage.py register_model NAME VERSION ARTIFACT [--features] [--background]
[--activate]` (contract): the admin's way to add a model to the registry."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from explanations import services
from opsconsole.errors import ConsoleError, summarize_fields, validation_messages


class Command(BaseCommand):
    help = "Register a fitted scikit-learn, LightGBM or XGBoost model (joblib file)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Model name, e.g. churn.")
        parser.add_argument("version", help="Version, e.g. 3.")
        parser.add_argument("artifact", help="The joblib file of a fitted estimator.")
        parser.add_argument(
            "--features", help="FEATURES.json: label, description, unit per feature."
        )
        parser.add_argument(
            "--background", help="CSV of typical rows (needed for non-tree models)."
        )
        parser.add_argument(
            "--activate", action="store_true", help="Make it the active version."
        )

    def handle(self, *args, **options):
        try:
            model_version = services.register_model(
                name=options["name"],
                version=options["version"],
                artifact_path=options["artifact"],
                features_path=options["features"],
                background_path=options["background"],
                activate=options["activate"],
            )
        except ValidationError as error:
            raise CommandError(summarize_fields(validation_messages(error))) from error
        except ConsoleError as error:
            raise CommandError(error.message) from error
        state = "active" if model_version.is_active else "inactive"
        self.stdout.write(
            self.style.SUCCESS(
                f"Registered {model_version} ({model_version.framework}, "
                f"{len(model_version.features)} features, output "
                f"{model_version.output_space}, {state})."
            )
        )
