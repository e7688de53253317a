"""Project-wide pages: the dashboard and the error pages."""

from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import JsonResponse
from django.shortcuts import render
from django.views.generic import TemplateView

from opsconsole.errors import error_body
from overrides import selectors as override_selectors


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
        return context


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
