"""The floor the REST `rank` endpoint is measured against.

Same authentication, permission, throttle, parser and renderer as the serving views,
in the same gunicorn workers, so the only difference is the work done: this view
filters the candidates against an in-memory set of 100 ids and returns the rest.
"""

from rest_framework.response import Response

from overrides.api.serving import ServingView

BLOCKED_IDS = frozenset(f"bench-{number}" for number in range(100))


class BaselineView(ServingView):
    """POST the `rank` body; get back the candidates whose ids are not blocked."""

    schema = None

    def post(self, request):
        candidates = request.data.get("candidates", [])
        return Response(
            {
                "items": [
                    candidate
                    for candidate in candidates
                    if candidate["item_id"] not in BLOCKED_IDS
                ]
            }
        )
