"""Forms for the explanation pages: input parsing only."""

from django import forms

from opsconsole.customer_ids import hash_customer_id
from opsconsole.identifiers import CUSTOMER_ID_MAX_LENGTH

from .models import PREDICTION_ID_MAX_LENGTH


class LookupForm(forms.Form):
    """A prediction id or a customer id; a customer id leaves only as its hash.

    Posted, not sent in the query string, so the raw customer id never reaches an
    access log.
    """

    PREDICTION = "prediction"
    CUSTOMER = "customer"

    by = forms.ChoiceField(
        choices=[(PREDICTION, "Prediction id"), (CUSTOMER, "Customer id")],
        initial=PREDICTION,
        widget=forms.RadioSelect,
        label="Search by",
    )
    query = forms.CharField(
        max_length=max(PREDICTION_ID_MAX_LENGTH, CUSTOMER_ID_MAX_LENGTH),
        label="Id",
        strip=True,
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("by") == self.CUSTOMER and cleaned.get("query"):
            try:
                cleaned["customer_hash"] = hash_customer_id(cleaned["query"])
            except forms.ValidationError as error:
                self.add_error("query", error)
        return cleaned
