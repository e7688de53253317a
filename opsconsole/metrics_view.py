"""GET /metrics: Prometheus' scrape endpoint, for API keys with `metrics:read`.

Kept apart from opsconsole.metrics, which Celery imports before Django is set up.
"""

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from prometheus_client import CONTENT_TYPE_LATEST
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.views import APIView

from opsconsole.auth import ApiKeyAuthentication
from opsconsole.metrics import exposition


class _FirstRenderer(BaseContentNegotiation):
    """Prometheus asks for text formats; the body is text whatever Accept says."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


@extend_schema(exclude=True)
class MetricsView(APIView):
    """Prometheus scrape endpoint: API keys with `metrics:read` only, never anonymous.

    Errors (401 no key, 403 wrong scope) are JSON in the contract's format.
    """

    authentication_classes = [ApiKeyAuthentication]
    content_negotiation_class = _FirstRenderer
    # Keys only: no session or user is ever authenticated here, so RolePermission
    # decides by the scope alone (no required_permissions to declare).
    api_key_scope = "metrics:read"

    def get(self, request):
        return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
