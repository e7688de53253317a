"""Serving endpoints (contract, Serving): API keys with `serving:read` only.

These run on every recommendation request, so the bodies are checked by small
hand-written functions rather than DRF serializers (which cost microseconds per
field on 10,000 candidates); the checks and their messages are the contract's.
"""

import math
from operator import itemgetter

import orjson
from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from opsconsole.auth import ApiKeyAuthentication
from opsconsole.customer_ids import hash_customer_id
from opsconsole.errors import ConsoleError, error_body
from opsconsole.identifiers import FORBIDDEN_CHARACTER
from opsconsole.metrics import record_rank
from opsconsole.parsers import FastJSONRenderer
from overrides import selectors, services, serving
from overrides.models import MAX_VERSION, OptOutKind

from .serializers import ApiErrorSerializer, CustomerIdField, ItemIdField

# Identifier rule (contract): no whitespace, no control or invisible formatting
# characters (FORBIDDEN_CHARACTER, the class validate_item_id applies, so both accept
# the same ids). One search over all ids joined is much faster than one match per id.


def _clean_text(text: str) -> bool:
    """True when `text` holds none of the identifier rule's forbidden characters.

    ASCII text (nearly all ids) is checked by str methods several times faster than
    the search: in ASCII the forbidden characters are the controls, which
    `isprintable()` refuses, and the space.
    """
    if text.isascii():
        return text.isprintable() and " " not in text
    return FORBIDDEN_CHARACTER.search(text) is None


def _all_valid_ids(ids, max_length: int) -> bool:
    """True when every id is a 1..max_length string without forbidden characters."""
    try:
        joined = "".join(ids)  # also a type check: refuses anything but strings
    except TypeError:
        return False
    return (
        bool(ids)
        and all(ids)  # no empty string
        and (len(joined) <= max_length or max(map(len, ids)) <= max_length)
        and _clean_text(joined)
    )


class ServingError(ConsoleError):
    """A 400 with the field it is about."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}", fields={field: [message]})


def _scope_value(data: dict, name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise ServingError(name, "A string or null.")
    return value or None


def _valid_id(value: object, max_length: int) -> bool:
    return _all_valid_ids((value,), max_length)


_NUMBER_TYPES = {int, float}
_item_id = itemgetter("item_id")
_score = itemgetter("score")


def _all_finite(scores: list[float]) -> bool:
    """True when every score is finite: a finite sum says so in one C pass (an
    infinity or NaN makes the sum non-finite); otherwise (that, or finite scores
    whose sum overflows) each score is asked."""
    try:
        if math.isfinite(sum(scores)):
            return True
    except OverflowError:
        pass
    return all(map(math.isfinite, scores))


def candidate_columns(value: object) -> tuple[list[str], list[float], set[str]]:
    """(ids, scores, the set of ids) of 1 to SERVING_MAX_CANDIDATES
    {"item_id", "score"}: unique ids, finite scores.

    Valid input (the common case) is checked in a few C-level passes; only invalid
    input walks the list item by item to say exactly what is wrong.
    """
    limit = settings.SERVING_MAX_CANDIDATES
    if not isinstance(value, list) or not value:
        raise ServingError("candidates", f"A list of 1 to {limit} candidates.")
    if len(value) > limit:
        raise ServingError(
            "candidates", f"At most {limit} candidates (got {len(value)})."
        )
    try:
        ids = list(map(_item_id, value))
        scores = list(map(_score, value))
    except (TypeError, KeyError):
        ids = scores = []
    if (
        _all_valid_ids(ids, 128)
        and set(map(type, scores)) <= _NUMBER_TYPES
        and _all_finite(scores)
    ):
        distinct = set(ids)
        if len(distinct) == len(ids):
            return ids, scores, distinct
    _explain_bad_candidates(value)
    raise ServingError("candidates", "Invalid candidates.")  # not reached


def parse_candidates(value: object) -> list[dict]:
    """The candidates, checked as `candidate_columns` does (for the preview form)."""
    candidate_columns(value)
    return value


def _explain_bad_candidates(value: list) -> None:
    """Raise the error for the first bad candidate."""
    seen = set()
    for index, candidate in enumerate(value):
        if not isinstance(candidate, dict):
            raise ServingError("candidates", f"Item {index} is not an object.")
        item_id = candidate.get("item_id")
        score = candidate.get("score")
        if not _valid_id(item_id, 128):
            raise ServingError(
                "candidates",
                f"Item {index}: item_id must be 1-128 characters without whitespace "
                "or control characters.",
            )
        if type(score) not in _NUMBER_TYPES or not math.isfinite(score):
            raise ServingError(
                "candidates", f"Item {index}: score must be a finite number."
            )
        if item_id in seen:
            raise ServingError(
                "candidates", f"Item {index}: duplicate item_id {item_id!r}."
            )
        seen.add(item_id)


def _body(request) -> dict:
    if not isinstance(request.data, dict):
        raise ConsoleError("The body must be a JSON object.")
    return request.data


class ServingView(APIView):
    """API keys only (never a staff session), scope serving:read."""

    authentication_classes = [ApiKeyAuthentication]
    renderer_classes = [FastJSONRenderer]
    api_key_scope = "serving:read"


# Schema-only serializers: they describe the contract's shapes in /api/schema/.
class _SnapshotBlockSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    item_id = serializers.CharField()
    surface = serializers.CharField(allow_null=True)
    region = serializers.CharField(allow_null=True)
    starts_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)


class _SnapshotBoostSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    item_id = serializers.CharField()
    factor = serializers.FloatField()
    surface = serializers.CharField(allow_null=True)
    region = serializers.CharField(allow_null=True)
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()


class SnapshotSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    generated_at = serializers.DateTimeField()
    blocked = _SnapshotBlockSerializer(many=True)
    boosts = _SnapshotBoostSerializer(many=True)


@extend_schema_field({"type": "number", "description": "Any finite number."})
class _ScoreField(serializers.FloatField):
    """A JSON number: no float `format`, since any finite JSON number is taken."""


class _CandidateSerializer(serializers.Serializer):
    item_id = ItemIdField()
    score = _ScoreField()


class RankRequestSerializer(serializers.Serializer):
    customer_id = CustomerIdField(
        required=False, allow_null=True, help_text="Null or left out: anonymous."
    )
    surface = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    region = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    candidates = serializers.ListField(
        child=_CandidateSerializer(),
        min_length=1,
        max_length=settings.SERVING_MAX_CANDIDATES,
        help_text="Unique item_ids.",
    )


class _RankedItemSerializer(serializers.Serializer):
    item_id = serializers.CharField()
    score = serializers.FloatField()
    original_score = serializers.FloatField()
    boosted = serializers.BooleanField()
    rule_id = serializers.IntegerField(required=False, help_text="The boost applied.")


class _RemovedItemSerializer(serializers.Serializer):
    item_id = serializers.CharField()
    reason = serializers.CharField()
    rule_id = serializers.IntegerField(help_text="The block that removed it.")


class RankResponseSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    personalized = serializers.BooleanField()
    items = _RankedItemSerializer(many=True)
    removed = _RemovedItemSerializer(many=True)


class OptOutCheckRequestSerializer(serializers.Serializer):
    customer_ids = serializers.ListField(
        child=CustomerIdField(),
        min_length=1,
        max_length=settings.SERVING_MAX_CANDIDATES,
    )


class OptOutCheckResponseSerializer(serializers.Serializer):
    personalization = serializers.ListField(child=serializers.CharField())
    training = serializers.ListField(child=serializers.CharField())


class _ChangeSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    action = serializers.ChoiceField(choices=["block", "unblock", "boost", "unboost"])
    rule = serializers.DictField()


class ChangesResponseSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    changes = _ChangeSerializer(many=True)
    has_more = serializers.BooleanField(help_text="Ask again from the last version.")


class HeartbeatRequestSerializer(serializers.Serializer):
    instance = ItemIdField(help_text="The instance's name; the item id rule applies.")
    version = serializers.IntegerField(min_value=0, max_value=MAX_VERSION)


class HeartbeatResponseSerializer(serializers.Serializer):
    version = serializers.IntegerField(help_text="The console's current version.")


_ERRORS = {
    400: OpenApiResponse(ApiErrorSerializer, description="Invalid input."),
    401: OpenApiResponse(ApiErrorSerializer, description="No, bad or revoked API key."),
    403: OpenApiResponse(ApiErrorSerializer, description="The key lacks serving:read."),
    429: OpenApiResponse(
        ApiErrorSerializer, description="Rate limit; see Retry-After."
    ),
}


def _json_response(data: dict) -> HttpResponse:
    """What FastJSONRenderer would answer, without DRF's rendering machinery (it
    shows up at a thousand items)."""
    return HttpResponse(orjson.dumps(data), content_type="application/json")


def _etag_matches(header: str, version: int) -> bool:
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return f'"{version}"' in tags or "*" in tags


class SnapshotView(ServingView):
    """Every rule that can apply to a scope, scheduled ones included; ETag/304."""

    @extend_schema(
        tags=["serving"],
        summary="Snapshot of the rules for a scope",
        parameters=[
            OpenApiParameter("surface", str, description="Any surface; omitted: all."),
            OpenApiParameter("region", str, description="Any region; omitted: all."),
        ],
        responses={
            200: SnapshotSerializer,
            304: OpenApiResponse(description="Not modified: If-None-Match matched."),
            **_ERRORS,
        },
    )
    def get(self, request):
        surface = request.query_params.get("surface") or None
        region = request.query_params.get("region") or None
        if_none_match = request.headers.get("If-None-Match")
        if if_none_match:
            version = serving.current_version()
            if _etag_matches(if_none_match, version):
                response = HttpResponse(status=304)
                response["ETag"] = f'"{version}"'
                return response
        version, body = serving.snapshot_json(surface=surface, region=region)
        response = HttpResponse(body, content_type="application/json")
        response["ETag"] = f'"{version}"'
        response["Cache-Control"] = "no-cache"
        return response


def _opt_out_check(data: dict) -> selectors.OptOutCheck | None:
    """The personalisation opt-out check of the body's customer (None: anonymous)."""
    customer_id = data.get("customer_id")
    if customer_id is None:
        return None
    try:
        customer_hash = hash_customer_id(customer_id)
    except Exception as error:
        raise ServingError(
            "customer_id", "1-256 characters without whitespace or control characters."
        ) from error
    return selectors.OptOutCheck(customer_hash, OptOutKind.PERSONALIZATION)


class RankView(ServingView):
    """Apply the rules in force now to one request's candidates."""

    opt_out_check: selectors.OptOutCheck | None = None
    redis_questions: tuple = ()  # sent with the rate limit's count

    def check_throttles(self, request):
        """Reads the body first, so the opt-out question goes to Redis with the
        rate limit's count: one round trip per request, as on every endpoint."""
        try:
            self.opt_out_check = _opt_out_check(_body(request))
        except Exception:  # a bad body: still a 429 first when over the limit
            super().check_throttles(request)
            raise
        if self.opt_out_check is not None and self.opt_out_check.question:
            self.redis_questions = (self.opt_out_check.question,)
        super().check_throttles(request)

    @extend_schema(
        tags=["serving"],
        summary="Rank candidates under the rules in force now",
        request=RankRequestSerializer,
        responses={200: RankResponseSerializer, 413: ApiErrorSerializer, **_ERRORS},
    )
    def post(self, request):
        data = _body(request)
        surface = _scope_value(data, "surface")
        region = _scope_value(data, "region")
        candidates = data.get("candidates")
        ids, scores, distinct_ids = candidate_columns(candidates)
        record_rank(len(ids))  # valid calls only
        # Each has item_id and score, so this says whether any has more keys, which
        # are not for the answer.
        if sum(map(len, candidates)) != 2 * len(ids):
            candidates = [
                {"item_id": item_id, "score": score}
                for item_id, score in zip(ids, scores, strict=True)
            ]
        rules = serving.ruleset()
        items, removed = rules.rank_in_place(
            candidates,
            ids=ids,
            distinct_ids=distinct_ids,
            surface=surface,
            region=region,
        )
        check = self.opt_out_check
        return _json_response(
            {
                "version": rules.version,
                "personalized": check is None or not check.opted_out(),
                "items": items,
                "removed": removed,
            }
        )


class OptOutCheckView(ServingView):
    """Which of these customers opted out of personalisation or training."""

    @extend_schema(
        tags=["serving"],
        summary="Check customers against the opt-out register",
        request=OptOutCheckRequestSerializer,
        responses={200: OptOutCheckResponseSerializer, **_ERRORS},
    )
    def post(self, request):
        raw_ids = _body(request).get("customer_ids")
        limit = settings.SERVING_MAX_CANDIDATES
        if not isinstance(raw_ids, list) or not 1 <= len(raw_ids) <= limit:
            raise ServingError("customer_ids", f"A list of 1 to {limit} customer ids.")
        if not _all_valid_ids(raw_ids, 256):
            raise ServingError(
                "customer_ids",
                "Each id: 1-256 characters without whitespace or control characters.",
            )
        return _json_response(selectors.opted_out_among(raw_ids))


class ChangesView(ServingView):
    """Rule changes after a version; 410 when that is older than the history kept."""

    @extend_schema(
        tags=["serving"],
        summary="Changes since a version",
        parameters=[
            OpenApiParameter("since", {"type": "integer", "minimum": 0}, required=True)
        ],
        responses={
            200: ChangesResponseSerializer,
            410: OpenApiResponse(ApiErrorSerializer, description="Take a snapshot."),
            **_ERRORS,
        },
    )
    def get(self, request):
        raw = request.query_params.get("since", "")
        if not raw.isdigit():
            raise ServingError("since", "A version number (a whole number, 0 or more).")
        try:
            version, changes, has_more = selectors.changes_since(
                int(raw), limit=settings.SERVING_CHANGES_PAGE
            )
        except selectors.ChangesGone as gone:
            return Response(error_body("gone", str(gone)), status=410)
        return Response({"version": version, "changes": changes, "has_more": has_more})


class HeartbeatView(ServingView):
    """A serving instance says which version it runs, for the live status page."""

    @extend_schema(
        tags=["serving"],
        summary="Report the version an instance runs",
        request=HeartbeatRequestSerializer,
        responses={200: HeartbeatResponseSerializer, **_ERRORS},
    )
    def post(self, request):
        data = _body(request)
        services.record_heartbeat(
            instance=data.get("instance"),
            version=data.get("version"),
            api_key=request.auth,
        )
        return Response({"version": serving.current_version()})
