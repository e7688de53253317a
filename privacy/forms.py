"""Forms for the privacy pages: input parsing only; privacy.services holds the rules.

Raw customer ids are posted, never put in a URL, so they reach no access log.
"""

from django import forms

from opsconsole.customer_ids import hash_customer_id
from opsconsole.identifiers import CUSTOMER_ID_MAX_LENGTH
from overrides.models import OptOutKind

from .models import Downstream, RequestStatus


def _customer_id_field(**kwargs) -> forms.CharField:
    return forms.CharField(
        label="Customer id",
        max_length=CUSTOMER_ID_MAX_LENGTH,
        strip=True,
        widget=forms.TextInput(attrs={"autocomplete": "off", "class": "mono"}),
        **kwargs,
    )


_SOURCE_WIDGET = forms.TextInput(
    attrs={"autocomplete": "off", "placeholder": "e.g. ZD-48211"}
)


class DeletionRequestForm(forms.Form):
    customer_id = _customer_id_field(
        help_text="As the customer gave it. Only its keyed hash is kept, plus an "
        "encrypted copy until every downstream system has deleted its records."
    )
    source = forms.CharField(
        max_length=200,
        label="Source",
        help_text="Where the request came from, e.g. a ticket id.",
        widget=_SOURCE_WIDGET,
    )
    received_at = forms.DateTimeField(
        required=False,
        label="Received",
        help_text="When the customer asked, in your time zone; empty means now. "
        "The deadline counts from here.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    identity_verified = forms.BooleanField(
        label="I have verified that the request comes from this customer.",
        error_messages={
            "required": "Verify the customer's identity first: a deletion cannot "
            "be undone."
        },
    )


class OptOutForm(forms.Form):
    REGISTER = "register"
    WITHDRAW = "withdraw"

    action = forms.ChoiceField(
        choices=[(REGISTER, "Register"), (WITHDRAW, "Withdraw")],
        initial=REGISTER,
        widget=forms.RadioSelect,
    )
    customer_id = _customer_id_field()
    kinds = forms.MultipleChoiceField(
        choices=OptOutKind.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=list(OptOutKind.values),
        error_messages={"required": "Pick at least one kind."},
    )
    source = forms.CharField(
        max_length=200,
        help_text="Where the request came from, e.g. a ticket id.",
        widget=_SOURCE_WIDGET,
    )

    def __init__(self, *args, may_withdraw: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        if not may_withdraw:
            self.fields["action"].choices = [(self.REGISTER, "Register")]


class CustomerSearchForm(forms.Form):
    """A customer id, hashed on the way in."""

    customer_id = _customer_id_field()

    def clean_customer_id(self) -> str:
        value = self.cleaned_data["customer_id"]
        self.cleaned_data["customer_hash"] = hash_customer_id(value)
        return value


class RequestFilterForm(forms.Form):
    status = forms.ChoiceField(
        required=False, choices=[("", "Any status"), *RequestStatus.choices]
    )
    flagged = forms.BooleanField(required=False, label="Only flagged (over 20 days)")

    def filters(self) -> dict:
        if not self.is_valid():
            return {}
        return {
            "status": self.cleaned_data["status"],
            "flagged": self.cleaned_data["flagged"],
        }


class ExtendForm(forms.Form):
    reason = forms.CharField(
        label="Reason",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why more time is needed. The customer must be told within the "
        "first month (GDPR Art. 12(3)).",
    )


class DownstreamForm(forms.ModelForm):
    url = forms.URLField(
        label="URL",
        max_length=500,
        assume_scheme="https",
        help_text="Where the signed POST goes.",
    )
    secret = forms.CharField(
        required=False,
        min_length=16,
        max_length=200,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="At least 16 characters, shared with the downstream to check the "
        "X-OpsConsole-Signature header.",
    )

    class Meta:
        model = Downstream
        fields = ["name", "url", "secret", "is_active"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["secret"].help_text = "Leave empty to keep the current secret."
        else:
            self.fields["secret"].required = True

    def _post_clean(self):
        """The service validates and saves; the model form only parses."""
