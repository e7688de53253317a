"""REST API routes for blocks, boosts and the audit trail (contract, Overrides).

The contract's paths have no trailing slash; SimpleRouter, not DefaultRouter, so no
browsable root view appears without a permission of its own.
"""

from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=False)
router.register("blocks", views.BlockViewSet, basename="block")
router.register("boosts", views.BoostViewSet, basename="boost")

urlpatterns = [
    *router.urls,
    path("audit", views.AuditTrailView.as_view(), name="audit-trail"),
]
