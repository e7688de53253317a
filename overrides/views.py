"""Pages for blocks, boosts, items, serving and the audit trail. Thin: parse, call,
render."""

import csv
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpResponseRedirect, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.generic import FormView, ListView, TemplateView

from opsconsole.auth import RoleRequiredMixin
from opsconsole.errors import ConflictError
from opsconsole.forms import apply_service_errors
from opsconsole.times import iso_utc

from . import bulk, selectors, services, serving
from .forms import (
    AuditFilterForm,
    BlockForm,
    BoostForm,
    BulkBlockForm,
    RankPreviewForm,
    RuleFilterForm,
    WithdrawForm,
)
from .models import Block, Boost, OptOutKind

PAGE_SIZE = 25
# The preview's tables stop here; 10,000 rows would bury what the rules changed.
PREVIEW_ROWS = 250


def _with_live_counts(rules: list) -> list:
    """Give each open rule `live` = (instances running its latest change, active
    instances), for the whole list at once; closed rules get None."""
    open_rules = [rule for rule in rules if rule.is_open]
    for rule in rules:
        rule.live = None
    for rule, live in zip(open_rules, selectors.live_counts(open_rules), strict=True):
        rule.live = live
    return rules


class RuleListView(RoleRequiredMixin, ListView):
    """Searchable, filterable, paginated list of blocks or boosts."""

    paginate_by = PAGE_SIZE
    model = None
    list_selector = None

    def get_queryset(self):
        self.filter_form = RuleFilterForm(
            self.request.GET or None, withdrawn_status=self.model.withdrawn_status
        )
        return type(self).list_selector(**self.filter_form.filters())

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        rules = _with_live_counts(list(context["object_list"]))
        query = self.request.GET.copy()
        query.pop("page", None)
        context.update(
            object_list=rules,
            filter_form=self.filter_form,
            query_string=query.urlencode(),
            is_filtered=any(
                value for key, value in self.request.GET.items() if key != "page"
            ),
            now=timezone.now(),
        )
        return context


class BlockListView(RuleListView):
    permission_required = "overrides.view_block"
    model = Block
    list_selector = selectors.block_list
    template_name = "overrides/block_list.html"


class BoostListView(RuleListView):
    permission_required = "overrides.view_boost"
    model = Boost
    list_selector = selectors.boost_list
    template_name = "overrides/boost_list.html"


class RuleCreateView(RoleRequiredMixin, FormView):
    """Create a block or boost through its service; errors go back to the form."""

    service = None  # the one service that creates the rule

    def get_initial(self):
        initial = super().get_initial()
        for name in ("item_id", "surface", "region"):
            if self.request.GET.get(name):
                initial[name] = self.request.GET[name]
        return initial

    def form_valid(self, form):
        data = dict(form.cleaned_data)
        data["surface"] = data["surface"] or None
        data["region"] = data["region"] or None
        try:
            rule = type(self).service(actor=self.request.user, **data)
        except ValidationError as error:
            apply_service_errors(form, error)
            return self.form_invalid(form)
        except ConflictError as error:
            form.add_error(None, error.message)
            return self.form_invalid(form)
        title = selectors.catalog_title(rule.item_id)
        messages.success(self.request, f"{rule} saved.")
        if title is None:
            messages.warning(
                self.request,
                f"{rule.item_id} is not in the catalog; check the id is right.",
            )
        return redirect("overrides:item_detail", item_id=rule.item_id)


class BlockCreateView(RuleCreateView):
    permission_required = "overrides.add_block"
    form_class = BlockForm
    template_name = "overrides/block_form.html"
    service = services.block_item


class BoostCreateView(RuleCreateView):
    permission_required = "overrides.add_boost"
    form_class = BoostForm
    template_name = "overrides/boost_form.html"
    service = services.boost_create


class RuleWithdrawView(RoleRequiredMixin, FormView):
    """Confirmation page for lifting a block or ending a boost, with a reason."""

    form_class = WithdrawForm
    template_name = "overrides/rule_withdraw.html"
    model = None
    verb = ""
    service = None  # lift_block or end_boost
    id_argument = ""

    def dispatch(self, request, *args, **kwargs):
        self.rule = get_object_or_404(
            self.model.objects.select_related("created_by"), pk=kwargs["pk"]
        )
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update(
            rule=self.rule,
            noun=self.model._meta.verbose_name,
            verb=self.verb,
            item_title=selectors.catalog_title(self.rule.item_id),
        )
        return context

    def form_valid(self, form):
        try:
            type(self).service(
                **{self.id_argument: self.rule.pk},
                reason=form.cleaned_data["reason"],
                actor=self.request.user,
            )
        except ValidationError as error:
            apply_service_errors(form, error)
            return self.form_invalid(form)
        except ConflictError as error:
            messages.error(self.request, error.message)
            return redirect("overrides:item_detail", item_id=self.rule.item_id)
        messages.success(self.request, f"{self.rule}: {self.past_tense}.")
        return redirect("overrides:item_detail", item_id=self.rule.item_id)


class BlockLiftView(RuleWithdrawView):
    permission_required = "overrides.change_block"
    model = Block
    verb = "Lift"
    past_tense = "lifted"
    service = services.lift_block
    id_argument = "block_id"


class BoostEndView(RuleWithdrawView):
    permission_required = "overrides.change_boost"
    model = Boost
    verb = "End"
    past_tense = "ended early"
    service = services.end_boost
    id_argument = "boost_id"


class BlockBulkView(RoleRequiredMixin, FormView):
    """Paste ids or upload a CSV, preview per-row problems, then apply all or none."""

    permission_required = "overrides.add_block"
    form_class = BulkBlockForm
    template_name = "overrides/block_bulk.html"

    def _rows(self, form):
        defaults = form.defaults()
        upload = form.cleaned_data.get("csv_file")
        if upload is not None:
            return bulk.rows_from_csv(upload.read(), defaults=defaults)
        if form.cleaned_data.get("csv_text"):
            return bulk.rows_from_csv(
                form.cleaned_data["csv_text"].encode(), defaults=defaults
            )
        return bulk.rows_from_pasted_ids(
            form.cleaned_data["item_ids"], defaults=defaults
        )

    def form_valid(self, form):
        apply = self.request.POST.get("action") == "apply"
        try:
            rows = self._rows(form)
            result = services.block_items_in_bulk(
                rows=rows, actor=self.request.user, dry_run=not apply
            )
        except ValidationError as error:
            for message in error.messages:
                form.add_error(None, message)
            return self.form_invalid(form)
        if result.applied:
            messages.success(self.request, f"{len(result.blocks)} items blocked.")
            return redirect("overrides:block_list")
        upload = form.cleaned_data.get("csv_file")
        if upload is not None:
            # Keep the file's text so "Apply" re-validates exactly what was previewed.
            upload.seek(0)
            form.data = form.data.copy()
            form.data["csv_text"] = upload.read().decode("utf-8-sig")
        return self.render_to_response(
            self.get_context_data(form=form, result=result, previewed=True)
        )


class RuleReaderMixin(RoleRequiredMixin):
    """Item and serving pages need either side of the rules: blocks or boosts."""

    def has_permission(self) -> bool:
        user = self.request.user
        return user.has_perm("overrides.view_block") or user.has_perm(
            "overrides.view_boost"
        )

    def get_permission_required(self):
        return ("overrides.view_block",)


class ItemDetailView(RuleReaderMixin, TemplateView):
    """Everything about one item: title, rules per scope, and the history."""

    template_name = "overrides/item_detail.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        user = self.request.user
        overview = selectors.item_overview(
            kwargs["item_id"],
            include_blocks=user.has_perm("overrides.view_block"),
            include_boosts=user.has_perm("overrides.view_boost"),
        )
        _with_live_counts(overview.open_blocks + overview.open_boosts)
        context["overview"] = overview
        context["now"] = timezone.now()
        return context


class ItemSearchView(RuleReaderMixin, TemplateView):
    """Find an item by id or title; an exact id goes straight to its page."""

    template_name = "overrides/item_search.html"

    def get(self, request, *args, **kwargs):
        query = request.GET.get("q", "").strip()
        if query and request.GET.get("go") and not any(c.isspace() for c in query):
            return HttpResponseRedirect(reverse("overrides:item_detail", args=[query]))
        return super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        query = self.request.GET.get("q", "").strip()
        context.update(query=query, results=selectors.search_catalog(query, limit=50))
        return context


class ItemLookupView(RuleReaderMixin, TemplateView):
    """JSON suggestions for the item id fields (id prefix or title)."""

    def get(self, request, *args, **kwargs):
        items = selectors.search_catalog(request.GET.get("q", ""), limit=10)
        return JsonResponse(
            {
                "items": [
                    {
                        "item_id": item.item_id,
                        "title": item.title,
                        "category": item.category,
                    }
                    for item in items
                ]
            }
        )


# Serving -----------------------------------------------------------------------------


def _ago(seconds: float) -> str:
    """A short relative time for heartbeats: "12 s ago", "3 min ago", "2 d ago"."""
    seconds = int(seconds)
    if seconds < 1:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


@dataclass
class InstanceStatus:
    name: str
    version: int
    last_seen_at: datetime
    last_seen: str
    behind: int  # versions behind the console's; negative when ahead
    stale: bool


class ServingStatusView(RuleReaderMixin, TemplateView):
    """Which serving instances run which override version, and which went quiet."""

    template_name = "overrides/serving_status.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        now = timezone.now()
        version = serving.current_version()
        active = {
            instance.pk for instance in selectors.active_serving_instances(now=now)
        }
        instances = [
            InstanceStatus(
                name=instance.name,
                version=instance.version,
                last_seen_at=instance.last_seen_at,
                last_seen=_ago((now - instance.last_seen_at).total_seconds()),
                behind=version - instance.version,
                stale=instance.pk not in active,
            )
            for instance in selectors.serving_instances()
        ]
        context.update(
            version=version,
            instances=instances,
            up_to_date=sum(1 for i in instances if not i.stale and i.behind <= 0),
            behind=sum(1 for i in instances if not i.stale and i.behind > 0),
            stale=sum(1 for i in instances if i.stale),
            active_minutes=settings.SERVING_INSTANCE_ACTIVE_MINUTES,
        )
        return context


@dataclass
class PreviewRow:
    position: int
    item_id: str
    score: float
    original_score: float
    outcome: str = ""  # "removed", "boosted" or ""
    factor: float | None = None
    moved: int = 0  # places up (positive) or down from the original ranking

    @property
    def score_text(self) -> str:
        return f"{self.score:.6g}"

    @property
    def original_score_text(self) -> str:
        return f"{self.original_score:.6g}"

    @property
    def moved_by(self) -> int:
        return abs(self.moved)


@dataclass
class PreviewEffect:
    """What one rule did to one candidate, with the rule for its reason and scope."""

    item_id: str
    outcome: str
    rule_id: int
    rule: Block | Boost | None
    before: int
    after: int | None


@dataclass
class Preview:
    version: int
    surface: str | None
    region: str | None
    personalized: bool
    customer_given: bool
    before: list[PreviewRow]
    after: list[PreviewRow]
    effects: list[PreviewEffect]
    candidate_count: int
    ranked_count: int
    removed_count: int
    boosted_count: int
    row_limit: int


def _preview(*, candidates, result, rules, surface, region, personalized, customer):
    """Shape a RankResult for the page: both rankings and what each rule did."""
    original = sorted(candidates, key=lambda c: c["score"], reverse=True)
    before_position = {c["item_id"]: i for i, c in enumerate(original, start=1)}
    removed_by = {entry["item_id"]: entry["rule_id"] for entry in result.removed}
    boosted_by = {item_id: rule_id for item_id, (_, rule_id) in result.boosted.items()}
    ranked = result.item_dicts()
    blocks = selectors.block_list().in_bulk(set(removed_by.values()))
    boosts = selectors.boost_list().in_bulk(set(boosted_by.values()))

    def factor(item_id: str) -> float | None:
        rule_id = boosted_by.get(item_id)
        return None if rule_id is None else rules.boosts[rule_id]["factor"]

    after = [
        PreviewRow(
            position=position,
            item_id=item["item_id"],
            score=item["score"],
            original_score=item["original_score"],
            outcome="boosted" if item["boosted"] else "",
            factor=factor(item["item_id"]),
            moved=before_position[item["item_id"]] - position,
        )
        for position, item in enumerate(ranked, start=1)
    ]
    after_position = {row.item_id: row.position for row in after}
    before = [
        PreviewRow(
            position=position,
            item_id=candidate["item_id"],
            score=candidate["score"],
            original_score=candidate["score"],
            outcome="removed"
            if candidate["item_id"] in removed_by
            else "boosted"
            if candidate["item_id"] in boosted_by
            else "",
            factor=factor(candidate["item_id"]),
        )
        for position, candidate in enumerate(original, start=1)
    ]
    effects = []
    for row in before:
        if row.outcome == "removed":
            rule_id = removed_by[row.item_id]
            rule = blocks.get(rule_id)
        elif row.outcome == "boosted":
            rule_id = boosted_by[row.item_id]
            rule = boosts.get(rule_id)
        else:
            continue
        effects.append(
            PreviewEffect(
                item_id=row.item_id,
                outcome=row.outcome,
                rule_id=rule_id,
                rule=rule,
                before=row.position,
                after=after_position.get(row.item_id),
            )
        )
    return Preview(
        version=rules.version,
        surface=surface,
        region=region,
        personalized=personalized,
        customer_given=customer,
        before=before[:PREVIEW_ROWS],
        after=after[:PREVIEW_ROWS],
        effects=effects[:PREVIEW_ROWS],
        candidate_count=len(candidates),
        ranked_count=len(result.items),
        removed_count=len(removed_by),
        boosted_count=len(boosted_by),
        row_limit=PREVIEW_ROWS,
    )


@method_decorator(sensitive_post_parameters("customer_id"), name="dispatch")
@method_decorator(never_cache, name="dispatch")
class ServingPreviewView(RuleReaderMixin, FormView):
    """Run candidates through the rank endpoint's own evaluation, and show the
    ranking before and after the rules, with the rule behind every change."""

    form_class = RankPreviewForm
    template_name = "overrides/serving_preview.html"

    def form_valid(self, form):
        data = form.cleaned_data
        customer_hash = data.get("customer_hash")
        # As the rank endpoint: personalised unless the customer opted out.
        personalized = customer_hash is None or not selectors.is_opted_out(
            customer_hash, OptOutKind.PERSONALIZATION
        )
        rules = serving.ruleset()
        result = rules.rank(
            data["candidate_list"],
            surface=data["surface_value"],
            region=data["region_value"],
        )
        preview = _preview(
            candidates=data["candidate_list"],
            result=result,
            rules=rules,
            surface=data["surface_value"],
            region=data["region_value"],
            personalized=personalized,
            customer=customer_hash is not None,
        )
        if data.get("candidates_file"):
            # Keep the file's lines in the text box, so the next preview reuses them.
            form.data = form.data.copy()
            form.data["candidates"] = form.candidates_text
        return self.render_to_response(
            self.get_context_data(form=form, preview=preview)
        )


class AuditView(RoleRequiredMixin, TemplateView):
    """Who changed what, when, why, with before and after; filterable, exportable."""

    permission_required = "overrides.view_audit_trail"
    template_name = "overrides/audit_list.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        form = AuditFilterForm(self.request.GET or None)
        page = Paginator(selectors.audit_log(**form.filters()), PAGE_SIZE).get_page(
            self.request.GET.get("page")
        )
        query = self.request.GET.copy()
        query.pop("page", None)
        context.update(
            filter_form=form,
            page_obj=page,
            entries=selectors.audit_entries_for_page(page.object_list),
            query_string=query.urlencode(),
            export_url=f"{reverse('overrides:audit_export')}?{query.urlencode()}",
        )
        return context


class _Echo:
    def write(self, value):
        return value


class AuditExportView(RoleRequiredMixin, TemplateView):
    """The filtered audit trail as CSV, streamed a page at a time."""

    permission_required = "overrides.view_audit_trail"
    batch_size = 500

    def get(self, request, *args, **kwargs):
        form = AuditFilterForm(request.GET or None)
        log = selectors.audit_log(**form.filters())
        writer = csv.writer(_Echo())

        def rows():
            yield writer.writerow(
                [
                    "when",
                    "actor",
                    "kind",
                    "object_id",
                    "item_id",
                    "action",
                    "reason",
                    "changes",
                ]
            )
            paginator = Paginator(log, self.batch_size)
            for number in paginator.page_range:
                for entry in selectors.audit_entries_for_page(
                    paginator.page(number).object_list
                ):
                    yield writer.writerow(
                        [
                            iso_utc(entry.when),
                            entry.actor,
                            entry.kind,
                            entry.object_id,
                            entry.item_id or "",
                            entry.action,
                            entry.reason,
                            entry.summary,
                        ]
                    )

        stamp = timezone.now().strftime("%Y%m%d-%H%M")
        response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.csv"'
        return response
