"""Project middleware."""

from datetime import UTC

from django.utils import timezone


class ApiTimezoneMiddleware:
    """The API speaks UTC (contract: ISO 8601 with a Z); pages use TIME_ZONE."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/"):
            timezone.activate(UTC)
        else:
            timezone.deactivate()
        return self.get_response(request)
