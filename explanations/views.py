"""Pages for looking up predictions, reading their explanations and the access log.

Thin: parse, call one service or selector, render.
"""

from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.generic import FormView, TemplateView

from opsconsole.auth import RoleRequiredMixin
from opsconsole.errors import ConsoleError

from . import selectors, services
from .explainers import ArtifactError
from .forms import LookupForm
from .models import Prediction

PAGE_SIZE = 25


class ExplanationReaderMixin(RoleRequiredMixin):
    permission_required = "explanations.view_explanation"


@method_decorator(never_cache, name="dispatch")
class LookupView(ExplanationReaderMixin, FormView):
    """Find a prediction by its id, or a customer's recent ones by customer id."""

    template_name = "explanations/prediction_lookup.html"
    form_class = LookupForm

    def form_valid(self, form):
        query = form.cleaned_data["query"]
        if form.cleaned_data["by"] == LookupForm.PREDICTION:
            if Prediction.objects.filter(prediction_id=query).exists():
                return HttpResponseRedirect(
                    reverse("explanations:prediction_detail", args=[query])
                )
            return self.render_to_response(
                self.get_context_data(form=form, searched=True, groups=[])
            )
        groups = selectors.customer_predictions_by_model(
            form.cleaned_data["customer_hash"]
        )
        return self.render_to_response(
            self.get_context_data(form=form, searched=True, groups=groups)
        )


class PredictionDetailView(ExplanationReaderMixin, TemplateView):
    """One prediction, its SHAP force plot, every feature and the reasons in words.

    Each view is kept in the access log.
    """

    template_name = "explanations/prediction_detail.html"

    def get(self, request, *args, **kwargs):
        try:
            prediction = selectors.prediction_by_id(kwargs["prediction_id"])
        except Prediction.DoesNotExist as error:
            raise Http404("No such prediction.") from error
        context = self.get_context_data(prediction=prediction, **kwargs)
        try:
            explanation = services.explain_prediction(
                prediction_id=prediction.prediction_id
            )
        except (ArtifactError, ConsoleError) as error:
            context["explanation_error"] = str(error)
        else:
            context.update(
                explanation=explanation,
                probability=selectors.probability(explanation),
                feature_rows=selectors.feature_rows(explanation),
                force_plot=selectors.force_plot_data(explanation),
                reasons=selectors.plain_reasons(explanation),
                customer_reasons=selectors.plain_reasons(
                    explanation, customer_safe=True
                ),
            )
        services.record_prediction_view(prediction=prediction, user=request.user)
        return self.render_to_response(context)


class ForcePlotImageView(ExplanationReaderMixin, View):
    """The force plot as a PNG, for tickets and browsers without JavaScript."""

    def get(self, request, prediction_id: str):
        try:
            explanation = services.explain_prediction(prediction_id=prediction_id)
        except Prediction.DoesNotExist as error:
            raise Http404("No such prediction.") from error
        except (ArtifactError, ConsoleError) as error:
            return HttpResponse(str(error), status=503, content_type="text/plain")
        response = HttpResponse(
            selectors.force_plot_png(explanation), content_type="image/png"
        )
        # A customer's feature values: never kept in a browser or proxy cache.
        response["Cache-Control"] = "private, no-store"
        return response


class PredictionViewLogView(RoleRequiredMixin, TemplateView):
    """Who looked at which prediction's explanation, and when."""

    permission_required = "explanations.view_predictionview"
    template_name = "explanations/predictionview_list.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["page_obj"] = Paginator(
            selectors.prediction_view_list(), PAGE_SIZE
        ).get_page(self.request.GET.get("page"))
        return context
