"""REST routes for the prediction log and explanations (contract, no trailing slash)."""

from django.urls import path

from . import views

urlpatterns = [
    path("predictions", views.PredictionLogView.as_view(), name="prediction-log"),
    path(
        "predictions/<str:prediction_id>/explanation",
        views.ExplanationView.as_view(),
        name="prediction-explanation",
    ),
]
