"""Pages for opt-outs, deletion requests and downstreams."""

from django.urls import path

from . import views

app_name = "privacy"

urlpatterns = [
    path("privacy/", views.RequestListView.as_view(), name="home"),
    path(
        "privacy/requests/new/",
        views.RequestCreateView.as_view(),
        name="request_create",
    ),
    path(
        "privacy/requests/<uuid:request_id>/",
        views.RequestDetailView.as_view(),
        name="request_detail",
    ),
    path(
        "privacy/requests/<uuid:request_id>/extend/",
        views.RequestExtendView.as_view(),
        name="request_extend",
    ),
    path(
        "privacy/requests/<uuid:request_id>/retry/",
        views.RequestRetryView.as_view(),
        name="request_retry",
    ),
    path(
        "privacy/requests/<uuid:request_id>/evidence.<str:extension>",
        views.RequestEvidenceView.as_view(),
        name="request_evidence",
    ),
    path("privacy/optouts/", views.OptOutView.as_view(), name="optouts"),
    path(
        "privacy/downstreams/",
        views.DownstreamListView.as_view(),
        name="downstream_list",
    ),
    path(
        "privacy/downstreams/new/",
        views.DownstreamFormView.as_view(),
        name="downstream_create",
    ),
    path(
        "privacy/downstreams/<int:downstream_id>/",
        views.DownstreamFormView.as_view(),
        name="downstream_edit",
    ),
]
