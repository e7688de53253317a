"""Query parameters of the override list endpoints and the audit trail.

The FilterSets validate and document the parameters; what each one means (`all`
scopes, statuses by time window, search by catalog title) belongs to the selectors,
so `filter_queryset` hands the cleaned values to one selector call.
"""

from collections.abc import Callable

import django_filters
from django.db.models import QuerySet

from overrides import selectors
from overrides.models import RuleStatus

BLOCK_STATUSES = [
    (status.value, status.label)
    for status in (
        RuleStatus.ACTIVE,
        RuleStatus.SCHEDULED,
        RuleStatus.EXPIRED,
        RuleStatus.LIFTED,
    )
]
BOOST_STATUSES = [
    (status.value, status.label)
    for status in (
        RuleStatus.ACTIVE,
        RuleStatus.SCHEDULED,
        RuleStatus.EXPIRED,
        RuleStatus.ENDED,
    )
]


class StrictFilterSet(django_filters.FilterSet):
    """A parameter given twice, or a typed one given empty (`?until=`), is a 400.

    django-filter reads both as HTML forms do (the last value; empty means no
    filter), which would silently answer another question than the one asked.
    """

    _TYPED = (
        django_filters.ChoiceFilter,
        django_filters.MultipleChoiceFilter,
        django_filters.IsoDateTimeFilter,
    )

    def is_valid(self) -> bool:
        valid = super().is_valid()
        for name, filter_ in self.filters.items():
            values = self.data.getlist(name) if name in self.data else []
            multiple = isinstance(filter_, django_filters.MultipleChoiceFilter)
            if len(values) > 1 and not multiple:
                self.form.add_error(name, "Give this parameter once.")
                valid = False
            elif isinstance(filter_, self._TYPED) and "" in values:
                self.form.add_error(name, "Give a value, or leave the parameter out.")
                valid = False
        return valid


class RuleFilterSet(StrictFilterSet):
    """Filters shared by blocks and boosts; subclasses name their selector."""

    item_id = django_filters.CharFilter(help_text="Exact item id (case-sensitive).")
    surface = django_filters.CharFilter(
        help_text=f"A surface code, or `{selectors.ALL_SCOPES}` for the rules that "
        "apply to every surface."
    )
    region = django_filters.CharFilter(
        help_text=f"A region code, or `{selectors.ALL_SCOPES}` for the rules that "
        "apply to every region."
    )
    search = django_filters.CharFilter(
        help_text="Part of the item id or of the item's catalog title."
    )

    list_rules: Callable[..., QuerySet]

    def filter_queryset(self, queryset):
        return self.list_rules(**self.form.cleaned_data)


class BlockFilterSet(RuleFilterSet):
    status = django_filters.ChoiceFilter(
        choices=BLOCK_STATUSES, help_text="The block's status now."
    )

    list_rules = staticmethod(selectors.block_list)


class BoostFilterSet(RuleFilterSet):
    status = django_filters.ChoiceFilter(
        choices=BOOST_STATUSES, help_text="The boost's status now."
    )

    list_rules = staticmethod(selectors.boost_list)


class AuditFilterSet(StrictFilterSet):
    kind = django_filters.MultipleChoiceFilter(
        choices=[(kind, kind) for kind in selectors.AUDITED_KINDS],
        help_text="What changed; repeat the parameter for several kinds.",
    )
    actor = django_filters.CharFilter(help_text="Username of who made the change.")
    item_id = django_filters.CharFilter(
        help_text="Changes to this item's rules and catalog entry."
    )
    since = django_filters.IsoDateTimeFilter(
        help_text="Changes at or after this ISO 8601 time."
    )
    until = django_filters.IsoDateTimeFilter(
        help_text="Changes before this ISO 8601 time."
    )

    def filter_queryset(self, queryset):
        data = self.form.cleaned_data
        return selectors.audit_log(
            kinds=data["kind"] or None,
            actor=data["actor"],
            item_id=data["item_id"],
            since=data["since"],
            until=data["until"],
        )
