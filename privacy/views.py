"""Pages for opt-outs, deletion requests, their evidence and the downstreams.

Thin: parse a form, call one service or selector, render. Pages that show personal
data are never cached.
"""

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.generic import FormView, TemplateView

from opsconsole.auth import RoleRequiredMixin
from opsconsole.errors import ConflictError
from opsconsole.forms import apply_service_errors
from overrides.services import optout_register, optout_withdraw

from . import selectors, services
from .forms import (
    CustomerSearchForm,
    DeletionRequestForm,
    DownstreamForm,
    ExtendForm,
    OptOutForm,
    RequestFilterForm,
)
from .models import DeletionRequest, Downstream

PAGE_SIZE = 25


def _request_or_404(request_id) -> DeletionRequest:
    try:
        return selectors.deletion_request_detail(request_id)
    except DeletionRequest.DoesNotExist as error:
        raise Http404("No such deletion request.") from error


def _annotate(deletion: DeletionRequest, now) -> DeletionRequest:
    """What the templates show beside a request: deadline, progress, flag."""
    deletion.days_left = selectors.days_left(deletion, now)
    deletion.days_overdue = -deletion.days_left
    deletion.progress = selectors.progress_percent(deletion)
    deletion.flagged = selectors.is_flagged(deletion, now)
    return deletion


@method_decorator(never_cache, name="dispatch")
class RequestListView(RoleRequiredMixin, TemplateView):
    """Deletion requests with status, progress and days left; search by customer.

    People who may only file requests (support agents) are sent to the intake form.
    """

    permission_required = "privacy.view_deletionrequest"
    template_name = "privacy/request_list.html"

    def dispatch(self, request, *args, **kwargs):
        user = request.user
        if (
            user.is_authenticated
            and not user.has_perm(self.permission_required)
            and user.has_perm("privacy.add_deletionrequest")
        ):
            return redirect("privacy:request_create")
        return super().dispatch(request, *args, **kwargs)

    def _render(self, *, search_form, customer_hash=""):
        filter_form = RequestFilterForm(self.request.GET or None)
        requests = selectors.deletion_request_list(
            **filter_form.filters(), customer_hash=customer_hash
        )
        page = Paginator(requests, PAGE_SIZE).get_page(self.request.GET.get("page"))
        now = timezone.now()
        for deletion in page.object_list:
            _annotate(deletion, now)
        query = self.request.GET.copy()
        query.pop("page", None)
        return self.render_to_response(
            self.get_context_data(
                page_obj=page,
                filter_form=filter_form,
                search_form=search_form,
                searched=bool(customer_hash),
                query_string=query.urlencode(),
                counts=selectors.privacy_dashboard(now),
                flag_days=settings.DELETION_FLAG_AFTER_DAYS,
            )
        )

    def get(self, request, *args, **kwargs):
        return self._render(search_form=CustomerSearchForm())

    def post(self, request, *args, **kwargs):
        """A search by customer id: posted so the raw id stays out of URLs."""
        form = CustomerSearchForm(request.POST)
        if not form.is_valid():
            return self._render(search_form=form)
        return self._render(
            search_form=form, customer_hash=form.cleaned_data["customer_hash"]
        )


@method_decorator(never_cache, name="dispatch")
class RequestCreateView(RoleRequiredMixin, FormView):
    """File a deletion request: the customer is opted out of everything at once."""

    permission_required = "privacy.add_deletionrequest"
    template_name = "privacy/request_form.html"
    form_class = DeletionRequestForm

    def form_valid(self, form):
        data = form.cleaned_data
        try:
            deletion = services.deletion_request_create(
                customer_id=data["customer_id"],
                source=data["source"],
                received_at=data["received_at"],
                actor=self.request.user,
            )
        except ValidationError as error:
            apply_service_errors(form, error)
            return self.form_invalid(form)
        except ConflictError as error:
            form.add_error("customer_id", error.message)
            return self.form_invalid(form)
        if self.request.user.has_perm("privacy.view_deletionrequest"):
            messages.success(
                self.request,
                "Request received: the customer is opted out of everything now; "
                "deletion runs in the background.",
            )
            return HttpResponseRedirect(
                reverse("privacy:request_detail", args=[deletion.pk])
            )
        return self.render_to_response(
            self.get_context_data(form=self.form_class(), received=deletion)
        )


@method_decorator(never_cache, name="dispatch")
class RequestDetailView(RoleRequiredMixin, TemplateView):
    """One request: deadline, progress, each downstream and the whole timeline."""

    permission_required = "privacy.view_deletionrequest"
    template_name = "privacy/request_detail.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        deletion = _annotate(_request_or_404(kwargs["request_id"]), timezone.now())
        context.update(
            deletion=deletion,
            flag_days=settings.DELETION_FLAG_AFTER_DAYS,
            deliveries=selectors.deliveries_of(deletion),
            events=selectors.timeline(deletion),
            extend_form=kwargs.get("extend_form") or ExtendForm(),
        )
        return context


class RequestExtendView(RoleRequiredMixin, View):
    """Extend the deadline by two months, once, with a reason."""

    permission_required = "privacy.change_deletionrequest"

    def post(self, request, request_id):
        deletion = _request_or_404(request_id)
        form = ExtendForm(request.POST)
        if form.is_valid():
            try:
                services.deletion_request_extend(
                    request_id=deletion.pk,
                    reason=form.cleaned_data["reason"],
                    actor=request.user,
                )
            except ValidationError as error:
                apply_service_errors(form, error)
            else:
                messages.success(request, "Deadline extended.")
                return redirect("privacy:request_detail", request_id=deletion.pk)
        view = RequestDetailView.as_view()
        response = view(request, request_id=request_id, extend_form=form)
        response.status_code = 400
        return response

    def get(self, request, request_id):
        return redirect("privacy:request_detail", request_id=request_id)


class RequestRetryView(RoleRequiredMixin, View):
    """Call every waiting downstream again now instead of at its next retry."""

    permission_required = "privacy.change_deletionrequest"

    def post(self, request, request_id):
        from .tasks import deliver_to_downstream

        deletion = _request_or_404(request_id)
        waiting = services.retry_now(request_id=deletion.pk, actor=request.user)
        for delivery_id in waiting:
            deliver_to_downstream.delay(delivery_id)
        messages.info(
            request,
            f"Retrying {len(waiting)} downstream(s)."
            if waiting
            else "No downstream is waiting.",
        )
        return redirect("privacy:request_detail", request_id=deletion.pk)

    def get(self, request, request_id):
        return redirect("privacy:request_detail", request_id=request_id)


class RequestEvidenceView(RoleRequiredMixin, View):
    """The evidence of a request as a JSON or CSV download (hash only, no raw id)."""

    permission_required = "privacy.view_deletionrequest"

    def get(self, request, request_id, extension):
        if extension not in ("json", "csv"):
            raise Http404("Evidence comes as .json or .csv.")
        deletion = _request_or_404(request_id)
        filename = f"deletion-request-{deletion.pk}.{extension}"
        if extension == "json":
            response = JsonResponse(
                selectors.evidence_document(deletion), json_dumps_params={"indent": 2}
            )
        else:
            response = HttpResponse(
                selectors.evidence_csv(deletion), content_type="text/csv; charset=utf-8"
            )
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        response["Cache-Control"] = "no-store"
        return response


@method_decorator(never_cache, name="dispatch")
class OptOutView(RoleRequiredMixin, TemplateView):
    """Register or withdraw opt-outs, and look up a customer's opt-outs.

    Support agents may register (intake) but neither withdraw nor look anyone up.
    """

    permission_required = "overrides.add_optout"
    template_name = "privacy/optouts.html"

    def _may(self, permission: str) -> bool:
        return self.request.user.has_perm(permission)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        may_view = self._may("overrides.view_optout")
        context.setdefault(
            "form", OptOutForm(may_withdraw=self._may("overrides.change_optout"))
        )
        context.setdefault("search_form", CustomerSearchForm(prefix="search"))
        context["may_view"] = may_view
        if may_view:
            context["page_obj"] = Paginator(
                selectors.recent_optouts(), PAGE_SIZE
            ).get_page(self.request.GET.get("page"))
        return context

    def post(self, request, *args, **kwargs):
        if "search-customer_id" in request.POST:
            return self._search()
        may_withdraw = self._may("overrides.change_optout")
        # Asked before the form is validated: the form offers no withdrawal to
        # those who may not withdraw, and a refusal is 403, not an invalid form.
        if request.POST.get("action") == OptOutForm.WITHDRAW and not may_withdraw:
            raise PermissionDenied("Only privacy officers may withdraw opt-outs.")
        form = OptOutForm(request.POST, may_withdraw=may_withdraw)
        if not form.is_valid():
            return self.render_to_response(self.get_context_data(form=form), status=400)
        data = form.cleaned_data
        withdraw = data["action"] == OptOutForm.WITHDRAW
        service = optout_withdraw if withdraw else optout_register
        try:
            changed = service(
                customer_id=data["customer_id"],
                kinds=data["kinds"],
                source=data["source"],
                actor=request.user,
            )
        except ValidationError as error:
            apply_service_errors(form, error)
            return self.render_to_response(self.get_context_data(form=form), status=400)
        kinds = ", ".join(sorted(optout.kind for optout in changed)) or "nothing"
        if withdraw:
            messages.success(request, f"Withdrawn: {kinds}.")
        else:
            messages.success(
                request,
                f"Registered: {kinds}. Serving stops personalising for this customer "
                "on its next request."
                if changed
                else "Already registered: nothing changed.",
            )
        return redirect("privacy:optouts")

    def _search(self):
        if not self._may("overrides.view_optout"):
            raise PermissionDenied("Only privacy officers may look customers up.")
        search_form = CustomerSearchForm(self.request.POST, prefix="search")
        found = None
        if search_form.is_valid():
            found = list(
                selectors.optouts_of_customer(search_form.cleaned_data["customer_hash"])
            )
        return self.render_to_response(
            self.get_context_data(search_form=search_form, found=found)
        )


class DownstreamListView(RoleRequiredMixin, TemplateView):
    """The systems told about every deletion request."""

    permission_required = "privacy.view_downstream"
    template_name = "privacy/downstream_list.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["downstreams"] = selectors.downstream_list()
        return context


@method_decorator(never_cache, name="dispatch")
class DownstreamFormView(RoleRequiredMixin, FormView):
    """Add a downstream, or change one (an empty secret keeps the current one)."""

    template_name = "privacy/downstream_form.html"
    form_class = DownstreamForm

    def get_permission_required(self):
        if "downstream_id" in self.kwargs:
            return ["privacy.change_downstream"]
        return ["privacy.add_downstream"]

    def get_form_kwargs(self):
        kwargs = super().get_form_kwargs()
        if "downstream_id" in self.kwargs:
            kwargs["instance"] = get_object_or_404(
                Downstream, pk=self.kwargs["downstream_id"]
            )
        return kwargs

    def form_valid(self, form):
        data = form.cleaned_data
        try:
            if form.instance.pk:
                services.downstream_update(
                    downstream_id=form.instance.pk,
                    name=data["name"],
                    url=data["url"],
                    secret=data["secret"],
                    is_active=data["is_active"],
                    actor=self.request.user,
                )
            else:
                services.downstream_create(
                    name=data["name"],
                    url=data["url"],
                    secret=data["secret"],
                    is_active=data["is_active"],
                    actor=self.request.user,
                )
        except ValidationError as error:
            apply_service_errors(form, error)
            return self.form_invalid(form)
        except ConflictError as error:
            form.add_error("name", error.message)
            return self.form_invalid(form)
        messages.success(self.request, f"Downstream {data['name']} saved.")
        return redirect("privacy:downstream_list")
