"""Pages for blocks, boosts, items and the audit trail. Thin: parse, call, render."""

import csv

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpResponseRedirect, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils import timezone
from django.views.generic import FormView, ListView, TemplateView

from opsconsole.auth import RoleRequiredMixin
from opsconsole.errors import ConflictError
from opsconsole.times import iso_utc

from . import bulk, selectors, services
from .forms import (
    AuditFilterForm,
    BlockForm,
    BoostForm,
    BulkBlockForm,
    RuleFilterForm,
    WithdrawForm,
)
from .models import Block, Boost

PAGE_SIZE = 25


def _apply_service_errors(form, error: ValidationError) -> None:
    """Show a service's ValidationError beside the fields it names."""
    for field_name, field_messages in error.message_dict.items():
        target = field_name if field_name in form.fields else None
        for message in field_messages:
            form.add_error(target, message)


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
        query = self.request.GET.copy()
        query.pop("page", None)
        context.update(
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
            _apply_service_errors(form, error)
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
            _apply_service_errors(form, error)
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


class ItemAccessMixin(RoleRequiredMixin):
    """Item pages need either side of the rules: blocks or boosts."""

    def has_permission(self) -> bool:
        user = self.request.user
        return user.has_perm("overrides.view_block") or user.has_perm(
            "overrides.view_boost"
        )

    def get_permission_required(self):
        return ("overrides.view_block",)


class ItemDetailView(ItemAccessMixin, TemplateView):
    """Everything about one item: title, rules per scope, and the history."""

    template_name = "overrides/item_detail.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        user = self.request.user
        context["overview"] = selectors.item_overview(
            kwargs["item_id"],
            include_blocks=user.has_perm("overrides.view_block"),
            include_boosts=user.has_perm("overrides.view_boost"),
        )
        context["now"] = timezone.now()
        return context


class ItemSearchView(ItemAccessMixin, TemplateView):
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


class ItemLookupView(ItemAccessMixin, TemplateView):
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
