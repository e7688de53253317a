"""Project-wide pages: the dashboard and the error pages."""

from django.contrib.auth.mixins import LoginRequiredMixin
from django.shortcuts import render
from django.views.generic import TemplateView

from overrides import selectors as override_selectors


class DashboardView(LoginRequiredMixin, TemplateView):
    """What is in force now, what ends soon and what changed, for the user's role."""

    template_name = "dashboard.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        user = self.request.user
        if user.has_perm("overrides.view_block") or user.has_perm(
            "overrides.view_boost"
        ):
            context["overrides"] = override_selectors.dashboard(
                can_view_audit=user.has_perm("overrides.view_audit_trail")
            )
        return context


def permission_denied(request, exception=None):
    message = str(exception) if exception and str(exception) else ""
    return render(request, "403.html", {"message": message}, status=403)


def page_not_found(request, exception=None):
    return render(request, "404.html", {"path": request.path}, status=404)


def server_error(request):
    return render(request, "500.html", status=500)
