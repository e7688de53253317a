"""REST API routes (contract): overrides management, audit, and the serving reads.

The contract's paths have no trailing slash; SimpleRouter, not DefaultRouter, so no
browsable root view appears without a permission of its own.
"""

from django.urls import path
from rest_framework.routers import SimpleRouter

from . import serving, views

router = SimpleRouter(trailing_slash=False)
router.register("blocks", views.BlockViewSet, basename="block")
router.register("boosts", views.BoostViewSet, basename="boost")

# The serving reads come first: every request walks the list until it matches, and
# these are the requests that count (each failed pattern costs microseconds).
urlpatterns = [
    path("serving/rank", serving.RankView.as_view(), name="serving-rank"),
    path("serving/snapshot", serving.SnapshotView.as_view(), name="serving-snapshot"),
    path(
        "serving/optouts/check",
        serving.OptOutCheckView.as_view(),
        name="serving-optouts-check",
    ),
    path("serving/changes", serving.ChangesView.as_view(), name="serving-changes"),
    path(
        "serving/heartbeat", serving.HeartbeatView.as_view(), name="serving-heartbeat"
    ),
    *router.urls,
    path("audit", views.AuditTrailView.as_view(), name="audit-trail"),
]
