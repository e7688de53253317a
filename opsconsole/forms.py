"""Forms for the project-wide pages: input parsing only, the services hold the rules."""

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from opsconsole.models import ApiKey, ApiKeyScope


class ApiKeyForm(forms.Form):
    """A new API key: its name, what it may do and, optionally, its own rate limit."""

    name = forms.CharField(
        max_length=ApiKey._meta.get_field("name").max_length,
        help_text="Lowercase letters, digits, - and _, e.g. serving-eu-1. "
        "It names the key's service account in the audit trail.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "autofocus": True}),
    )
    scopes = forms.MultipleChoiceField(
        choices=ApiKeyScope.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Give a key only what its caller needs.",
    )
    rate_limit_per_minute = forms.IntegerField(
        required=False,
        min_value=1,
        label="Rate limit per minute",
        widget=forms.NumberInput(attrs={"min": "1", "step": "1"}),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["rate_limit_per_minute"].help_text = (
            f"Empty: the default, {settings.API_KEY_RATE_LIMIT_PER_MINUTE:,} "
            "requests per minute."
        )


def apply_service_errors(form: forms.Form, error: ValidationError) -> None:
    """Show a service's ValidationError beside the fields it names (others on top)."""
    if not hasattr(error, "error_dict"):
        for message in error.messages:
            form.add_error(None, message)
        return
    for field_name, field_messages in error.message_dict.items():
        target = field_name if field_name in form.fields else None
        for message in field_messages:
            form.add_error(target, message)
