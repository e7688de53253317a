"""Pages for prediction explanations and their access log."""

from django.urls import path

from . import views

app_name = "explanations"

# Prediction ids may hold "/"; the image route comes first so it is not swallowed.
urlpatterns = [
    path("explanations/", views.LookupView.as_view(), name="lookup"),
    path(
        "explanations/predictions/<path:prediction_id>/force.png",
        views.ForcePlotImageView.as_view(),
        name="force_plot_image",
    ),
    path(
        "explanations/predictions/<path:prediction_id>/",
        views.PredictionDetailView.as_view(),
        name="prediction_detail",
    ),
    path("explanations/views/", views.PredictionViewLogView.as_view(), name="views"),
]
