"""Forms for the override pages: input parsing only, the services hold the rules."""

import csv
import re
from datetime import timedelta

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from opsconsole.customer_ids import hash_customer_id
from opsconsole.identifiers import CUSTOMER_ID_MAX_LENGTH, ITEM_ID_MAX_LENGTH

from . import selectors
from .api.serving import ServingError, parse_candidates
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
        + [
            (kind, kind.replace("_", " ").capitalize())
            for kind in selectors.AUDITED_KINDS
        ],
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


# Serving preview -------------------------------------------------------------------

OTHER_SCOPE = "__other__"
# 10,000 lines of a 128-character id and a score fit well within this.
CANDIDATE_FILE_MAX_BYTES = 4 * 1024 * 1024
_CANDIDATE_HEADER = ["item_id", "score"]
_SERVING_ITEM_MESSAGE = re.compile(r"^Item (\d+): ")


class RankPreviewForm(forms.Form):
    """One rank request typed by a person: scope, customer and candidates.

    Parses the pasted lines or the CSV into the rank endpoint's candidate list and
    checks it with the endpoint's own `parse_candidates`, so both refuse the same
    input. The raw customer id stays in the submitted data (to echo it back); only
    its hash leaves the form.
    """

    surface = forms.ChoiceField(required=False, label="Surface")
    surface_other = forms.CharField(
        required=False, max_length=64, label="Other surface"
    )
    region = forms.ChoiceField(required=False, label="Region")
    region_other = forms.CharField(required=False, max_length=64, label="Other region")
    customer_id = forms.CharField(
        required=False,
        max_length=CUSTOMER_ID_MAX_LENGTH,
        label="Customer id",
        help_text="Optional: checks the opt-out register. Not stored or logged.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    candidates = forms.CharField(
        required=False,
        label="Candidates",
        help_text="One per line: item_id,score or item_id score, as the model "
        "scored them.",
        widget=forms.Textarea(
            attrs={
                "rows": 10,
                "class": "mono",
                "spellcheck": "false",
                "placeholder": "sku-10042,0.93\nsku-20077,0.81\nsku-30015 0.40",
            }
        ),
    )
    candidates_file = forms.FileField(
        required=False,
        label="…or a CSV file",
        help_text="Header item_id,score; replaces the pasted lines.",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,.txt,text/csv"}),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, label, queryset in (
            ("surface", "surface", selectors.active_surfaces()),
            ("region", "region", selectors.active_regions()),
        ):
            self.fields[name].choices = [
                ("", f"None given (only rules for all {label}s)"),
                *[(item.code, f"{item.code} — {item.name}") for item in queryset],
                (OTHER_SCOPE, f"Another {label}…"),
            ]
        self.candidates_text = ""

    def clean_customer_id(self) -> str:
        raw = self.cleaned_data["customer_id"]
        if raw:
            try:
                self.cleaned_data["customer_hash"] = hash_customer_id(raw)
            except ValidationError as error:
                raise forms.ValidationError(error.messages) from error
        return raw

    def clean(self):
        cleaned = super().clean()
        for name in ("surface", "region"):
            cleaned[f"{name}_value"] = self._scope_value(name)
        upload = cleaned.get("candidates_file")
        source = "candidates_file" if upload else "candidates"
        try:
            text = self._read_upload(upload) if upload else cleaned.get("candidates")
            cleaned["candidate_list"] = parse_candidate_text(text or "")
        except forms.ValidationError as error:
            self.add_error(source, error)
        else:
            self.candidates_text = text
        return cleaned

    def _scope_value(self, name: str) -> str | None:
        choice = self.cleaned_data.get(name)
        if choice != OTHER_SCOPE:
            return choice or None
        typed = self.cleaned_data.get(f"{name}_other", "").strip()
        if not typed:
            self.add_error(f"{name}_other", f"Type the {name}, or pick one above.")
        return typed or None

    @staticmethod
    def _read_upload(upload) -> str:
        if upload.size > CANDIDATE_FILE_MAX_BYTES:
            raise forms.ValidationError(
                f"The file is too large ({upload.size:,} bytes; at most "
                f"{CANDIDATE_FILE_MAX_BYTES:,})."
            )
        try:
            return upload.read().decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise forms.ValidationError(
                "The file is not UTF-8 text: save it as CSV UTF-8 and try again."
            ) from error


def parse_candidate_text(text: str) -> list[dict]:
    """Lines of `item_id,score` (or `item_id score`) into the rank endpoint's list.

    Only the reading lives here; `parse_candidates` (the endpoint's own check) then
    rules on ids, scores, duplicates and the count, and its message names the line.
    """
    limit = settings.SERVING_MAX_CANDIDATES
    numbered = [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]
    if numbered and [f.lower() for f in _fields(numbered[0][1])] == _CANDIDATE_HEADER:
        numbered = numbered[1:]
    if not numbered:
        raise forms.ValidationError(
            "No candidates: paste one per line as item_id,score, or choose a CSV file."
        )
    if len(numbered) > limit:
        raise forms.ValidationError(
            f"At most {limit:,} candidates, as the rank endpoint accepts "
            f"(got {len(numbered):,} lines)."
        )
    candidates = []
    for number, line in numbered:
        fields = _fields(line)
        if len(fields) != 2:
            raise forms.ValidationError(
                f"Line {number}: expected item_id,score (got {line[:80]!r})."
            )
        item_id, score = fields
        try:
            candidates.append({"item_id": item_id, "score": float(score)})
        except ValueError:
            raise forms.ValidationError(
                f"Line {number}: the score {score[:40]!r} is not a number."
            ) from None
    try:
        return parse_candidates(candidates)
    except ServingError as error:
        message = " ".join(error.fields.get("candidates") or [error.message])
        # The endpoint counts items from 0; a person counts lines from 1.
        match = _SERVING_ITEM_MESSAGE.match(message)
        if match and int(match.group(1)) < len(numbered):
            line_number = numbered[int(match.group(1))][0]
            message = f"Line {line_number}: {message[match.end() :]}"
        raise forms.ValidationError(message) from None


def _fields(line: str) -> list[str]:
    """A CSV line (quotes allowed) or, without a comma, whitespace-separated words."""
    if "," in line:
        return [field.strip() for field in next(csv.reader([line]))]
    return line.split()
