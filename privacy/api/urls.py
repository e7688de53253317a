"""REST routes for privacy (contract, Privacy; no trailing slash)."""

from django.urls import path

from . import views

urlpatterns = [
    path("privacy/optouts", views.OptOutView.as_view(), name="privacy-optouts"),
    path(
        "privacy/optouts/withdraw",
        views.OptOutWithdrawView.as_view(),
        name="privacy-optouts-withdraw",
    ),
    path(
        "privacy/optouts/training-export",
        views.TrainingOptOutExportView.as_view(),
        name="privacy-optouts-training-export",
    ),
    path(
        "privacy/deletion-requests",
        views.DeletionRequestCreateView.as_view(),
        name="privacy-deletion-requests",
    ),
    path(
        "privacy/deletion-requests/<uuid:request_id>",
        views.DeletionRequestDetailView.as_view(),
        name="privacy-deletion-request-detail",
    ),
]
