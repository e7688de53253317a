"""Project-wide pages: the dashboard, API keys and the error pages."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.generic import FormView, ListView, TemplateView

from opsconsole import services
from opsconsole.auth import API_KEY_CACHE_SECONDS, RoleRequiredMixin
from opsconsole.errors import ConflictError, error_body
from opsconsole.forms import ApiKeyForm, apply_service_errors
from opsconsole.models import ApiKey, ApiKeyScope
from overrides import selectors as override_selectors

PAGE_SIZE = 25


class DashboardView(LoginRequiredMixin, TemplateView):
    """What is in force now, what ends soon and what changed, for the user's role."""

    template_name = "dashboard.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        user = self.request.user
        kinds = [
            kind
            for kind in ("block", "boost")
            if user.has_perm(f"overrides.view_{kind}")
        ]
        if kinds:
            context["overrides"] = override_selectors.dashboard(kinds=kinds)
        if user.has_perm("privacy.view_deletionrequest"):
            from privacy import selectors as privacy_selectors

            context["privacy"] = {
                **privacy_selectors.privacy_dashboard(),
                "flagged_requests": privacy_selectors.flagged_requests()[:10],
                "flag_days": settings.DELETION_FLAG_AFTER_DAYS,
            }
        return context


# API keys ---------------------------------------------------------------------------

_SCOPE_LABELS = dict(ApiKeyScope.choices)


def _scope_items(scopes: list[str]) -> list[tuple[str, str]]:
    """(scope, label) pairs; a scope this version does not know keeps its name."""
    return [(scope, _SCOPE_LABELS.get(scope, scope)) for scope in scopes]


class ApiKeyListView(RoleRequiredMixin, ListView):
    """Every key, newest first: what it may do, who made it, whether it still works."""

    permission_required = "opsconsole.view_apikey"
    template_name = "opsconsole/apikey_list.html"
    context_object_name = "keys"
    paginate_by = PAGE_SIZE
    queryset = ApiKey.objects.select_related("created_by", "revoked_by")

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        keys = list(context["keys"])
        for key in keys:
            key.scope_items = _scope_items(key.scopes)
        context.update(keys=keys, object_list=keys)
        return context


class ApiKeyCreateView(RoleRequiredMixin, FormView):
    """Create a key and show it once, in the POST's own uncacheable response.

    There is no page to come back to: the raw key is never stored, so a redirect to
    a GET page would have nothing to show (or would have to keep the key somewhere).
    """

    permission_required = "opsconsole.add_apikey"
    form_class = ApiKeyForm
    template_name = "opsconsole/apikey_form.html"

    def form_valid(self, form):
        try:
            key, raw_key = services.api_key_create(
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                rate_limit_per_minute=form.cleaned_data["rate_limit_per_minute"],
                actor=self.request.user,
            )
        except ValidationError as error:
            apply_service_errors(form, error)
            return self.form_invalid(form)
        except ConflictError as error:
            form.add_error("name", error.message)
            return self.form_invalid(form)
        response = render(
            self.request,
            "opsconsole/apikey_created.html",
            {
                "key": key,
                "raw_key": raw_key,
                "scope_items": _scope_items(key.scopes),
                "default_rate_limit": f"{settings.API_KEY_RATE_LIMIT_PER_MINUTE:,}",
                "snapshot_url": self.request.build_absolute_uri(
                    reverse("serving-snapshot")
                ),
            },
        )
        add_never_cache_headers(response)
        return response


class ApiKeyRevokeView(RoleRequiredMixin, TemplateView):
    """Confirmation page; the POST revokes the key for good."""

    permission_required = "opsconsole.change_apikey"
    template_name = "opsconsole/apikey_revoke.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        key = get_object_or_404(
            ApiKey.objects.select_related("created_by", "revoked_by"), pk=kwargs["pk"]
        )
        context.update(
            key=key,
            scope_items=_scope_items(key.scopes),
            # Revoking the key a serving instance reports with stops that instance.
            instances=[
                instance
                for instance in override_selectors.serving_instances()
                if instance.api_key_id == key.pk
            ],
        )
        return context

    def post(self, request, *args, **kwargs):
        key = get_object_or_404(ApiKey, pk=kwargs["pk"])
        try:
            services.api_key_revoke(key_id=key.pk, actor=request.user)
        except ConflictError as error:
            messages.error(request, error.message)
        else:
            messages.success(
                request,
                f"API key {key.name} revoked: requests with it are refused "
                f"(within {API_KEY_CACHE_SECONDS:g} s on every server).",
            )
        return redirect("apikey_list")


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def permission_denied(request, exception=None):
    message = str(exception) if exception and str(exception) else ""
    if _is_api(request):
        body = error_body(
            "forbidden", message or "You do not have permission to do this."
        )
        return JsonResponse(body, status=403)
    return render(request, "403.html", {"message": message}, status=403)


def page_not_found(request, exception=None):
    if _is_api(request):
        return JsonResponse(
            error_body("not_found", "No such endpoint or record."), status=404
        )
    return render(request, "404.html", {"path": request.path}, status=404)


def server_error(request):
    if _is_api(request):
        body = error_body(
            "server_error", "Something went wrong; nothing was half-saved."
        )
        return JsonResponse(body, status=500)
    return render(request, "500.html", status=500)
