"""Pages for blocks, boosts, items, serving and the audit trail."""

from django.urls import path

from . import views

app_name = "overrides"

urlpatterns = [
    path("blocks/", views.BlockListView.as_view(), name="block_list"),
    path("blocks/new/", views.BlockCreateView.as_view(), name="block_create"),
    path("blocks/bulk/", views.BlockBulkView.as_view(), name="block_bulk"),
    path("blocks/<int:pk>/lift/", views.BlockLiftView.as_view(), name="block_lift"),
    path("boosts/", views.BoostListView.as_view(), name="boost_list"),
    path("boosts/new/", views.BoostCreateView.as_view(), name="boost_create"),
    path("boosts/<int:pk>/end/", views.BoostEndView.as_view(), name="boost_end"),
    path("items/", views.ItemSearchView.as_view(), name="item_search"),
    path("items/lookup.json", views.ItemLookupView.as_view(), name="item_lookup"),
    path("items/<path:item_id>/", views.ItemDetailView.as_view(), name="item_detail"),
    path("serving/", views.ServingStatusView.as_view(), name="serving_status"),
    path(
        "serving/preview/",
        views.ServingPreviewView.as_view(),
        name="serving_preview",
    ),
    path("audit/", views.AuditView.as_view(), name="audit"),
    path("audit/export.csv", views.AuditExportView.as_view(), name="audit_export"),
]
