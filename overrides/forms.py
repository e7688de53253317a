"""Forms for the override pages: input parsing only, the services hold the rules."""

from datetime import timedelta

from django import forms
from django.conf import settings
from django.utils import timezone

from opsconsole.identifiers import ITEM_ID_MAX_LENGTH

from . import selectors
from .models import REASON_MAX_LENGTH, RuleStatus

DATETIME_WIDGET = forms.DateTimeInput(
    attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"
)


def _scope_choices(queryset, everything_label: str) -> list[tuple[str, str]]:
    return [("", everything_label)] + [
        (item.code, f"{item.code} — {item.name}") for item in queryset
    ]


class ScopeFieldsMixin(forms.Form):
    """Surface and region selects, built from the configured, active values."""

    surface = forms.ChoiceField(required=False, label="Surface")
    region = forms.ChoiceField(required=False, label="Region")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["surface"].choices = _scope_choices(
            selectors.active_surfaces(), "All surfaces"
        )
        self.fields["region"].choices = _scope_choices(
            selectors.active_regions(), "All regions"
        )


class ItemIdField(forms.CharField):
    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", ITEM_ID_MAX_LENGTH)
        kwargs.setdefault("strip", False)
        kwargs.setdefault(
            "widget",
            forms.TextInput(
                attrs={
                    "autocomplete": "off",
                    "list": "item-suggestions",
                    "data-item-lookup": "",
                    "placeholder": "e.g. sku-10042, or type a title",
                    "autofocus": True,
                }
            ),
        )
        super().__init__(**kwargs)


class ReasonField(forms.CharField):
    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", REASON_MAX_LENGTH)
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 3}))
        super().__init__(**kwargs)


class BlockForm(ScopeFieldsMixin):
    item_id = ItemIdField(label="Item id")
    reason = ReasonField(help_text="Why it must not be shown; kept in the audit trail.")
    starts_at = forms.DateTimeField(
        required=False, widget=DATETIME_WIDGET, help_text="Empty: now."
    )
    expires_at = forms.DateTimeField(
        required=False, widget=DATETIME_WIDGET, help_text="Empty: permanent."
    )
    field_order = ["item_id", "surface", "region", "reason", "starts_at", "expires_at"]


class BoostForm(ScopeFieldsMixin):
    item_id = ItemIdField(label="Item id")
    factor = forms.FloatField(
        initial=2.0,
        widget=forms.NumberInput(attrs={"step": "0.1", "min": "1.1"}),
    )
    reason = ReasonField(help_text="Why it needs traffic; kept in the audit trail.")
    starts_at = forms.DateTimeField(
        required=False, widget=DATETIME_WIDGET, help_text="Empty: now."
    )
    ends_at = forms.DateTimeField(widget=DATETIME_WIDGET)
    field_order = [
        "item_id",
        "factor",
        "surface",
        "region",
        "reason",
        "starts_at",
        "ends_at",
    ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["factor"].widget.attrs["max"] = f"{settings.BOOST_MAX_FACTOR:g}"
        self.fields[
            "factor"
        ].help_text = f"More than 1, at most {settings.BOOST_MAX_FACTOR:g}."
        self.fields["ends_at"].help_text = (
            f"Default: {settings.BOOST_DEFAULT_DAYS} days from now; "
            f"at most {settings.BOOST_MAX_DAYS} days after the start."
        )
        if not self.is_bound:
            self.initial.setdefault(
                "ends_at",
                timezone.localtime() + timedelta(days=settings.BOOST_DEFAULT_DAYS),
            )


class WithdrawForm(forms.Form):
    """The reason for lifting a block or ending a boost early."""

    reason = ReasonField(help_text="Kept in the audit trail.")


class BulkBlockForm(ScopeFieldsMixin):
    item_ids = forms.CharField(
        required=False,
        label="Item ids",
        widget=forms.Textarea(attrs={"rows": 8, "placeholder": "One item id per line"}),
    )
    csv_file = forms.FileField(
        required=False,
        label="…or a CSV file",
        help_text="Header: item_id, and optionally surface, region, reason, starts_at, "
        "expires_at. Empty cells take the values below.",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}),
    )
    csv_text = forms.CharField(required=False, widget=forms.HiddenInput)
    reason = ReasonField(
        required=False, help_text="For every row without its own reason."
    )
    expires_at = forms.DateTimeField(
        required=False, widget=DATETIME_WIDGET, help_text="Empty: permanent."
    )
    field_order = ["item_ids", "csv_file", "surface", "region", "reason", "expires_at"]

    def clean(self):
        cleaned = super().clean()
        if not (
            cleaned.get("item_ids", "").strip()
            or cleaned.get("csv_file")
            or cleaned.get("csv_text")
        ):
            raise forms.ValidationError("Paste item ids or choose a CSV file.")
        return cleaned

    def defaults(self) -> dict:
        return {
            "surface": self.cleaned_data.get("surface") or None,
            "region": self.cleaned_data.get("region") or None,
            "reason": self.cleaned_data.get("reason", ""),
            "expires_at": self.cleaned_data.get("expires_at"),
        }


class RuleFilterForm(ScopeFieldsMixin):
    """The list filters; `all` picks rules that apply to every surface/region."""

    q = forms.CharField(
        required=False,
        label="Search",
        widget=forms.SearchInput(attrs={"placeholder": "Item id or title"}),
    )
    status = forms.ChoiceField(required=False)

    def __init__(self, *args, withdrawn_status: str, **kwargs):
        super().__init__(*args, **kwargs)
        for name, noun in (("surface", "surfaces"), ("region", "regions")):
            choices = self.fields[name].choices
            self.fields[name].choices = [
                ("", "Any"),
                (selectors.ALL_SCOPES, f"All {noun} only"),
                *choices[1:],
            ]
        statuses = [
            RuleStatus.ACTIVE,
            RuleStatus.SCHEDULED,
            RuleStatus.EXPIRED,
            withdrawn_status,
        ]
        self.fields["status"].choices = [("", "Any status")] + [
            (status, RuleStatus(status).label) for status in statuses
        ]

    def filters(self) -> dict:
        if not self.is_valid():
            return {}
        return {
            "search": self.cleaned_data["q"].strip(),
            "surface": self.cleaned_data["surface"],
            "region": self.cleaned_data["region"],
            "status": self.cleaned_data["status"],
        }


class AuditFilterForm(forms.Form):
    kind = forms.ChoiceField(
        required=False,
        choices=[("", "Everything")]
        + [(kind, kind.capitalize()) for kind in selectors.AUDITED_MODELS],
    )
    actor = forms.CharField(
        required=False,
        label="Who",
        widget=forms.TextInput(attrs={"placeholder": "username"}),
    )
    item_id = forms.CharField(required=False, label="Item id")
    since = forms.DateTimeField(required=False, label="From", widget=DATETIME_WIDGET)
    until = forms.DateTimeField(required=False, label="Until", widget=DATETIME_WIDGET)

    def filters(self) -> dict:
        if not self.is_valid():
            return {}
        data = self.cleaned_data
        return {
            "kinds": [data["kind"]] if data["kind"] else None,
            "actor": data["actor"].strip(),
            "item_id": data["item_id"].strip(),
            "since": data["since"],
            "until": data["until"],
        }
