"""REST endpoints for blocks, boosts, bulk blocking and the audit trail.

Each write checks the body's shape with an input serializer, calls one service and
renders the rule as the selectors read it. Services raise ValidationError (400) and
ConflictError (409); opsconsole.errors renders both in the contract's error format.
"""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, ValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import generics, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import BaseParser
from rest_framework.response import Response

from opsconsole.errors import error_body
from opsconsole.parsers import LimitedJSONParser
from overrides import bulk, selectors, services

from .filters import AuditFilterSet, BlockFilterSet, BoostFilterSet
from .serializers import (
    ApiErrorSerializer,
    AuditEntrySerializer,
    BlockCreateSerializer,
    BlockSerializer,
    BoostCreateSerializer,
    BoostSerializer,
    BulkErrorSerializer,
    BulkQuerySerializer,
    BulkReportSerializer,
    BulkRowSerializer,
    WithdrawSerializer,
)

_ERROR_DESCRIPTIONS = {
    400: "Invalid input: `error.fields` names each field and what is wrong.",
    401: "Not signed in.",
    403: "Signed in, but no role that allows this.",
    404: "No such rule.",
    409: "Clashes with an existing rule: `error.existing_id` names it.",
}


def _errors(*status_codes: int) -> dict:
    return {
        code: OpenApiResponse(ApiErrorSerializer, description=_ERROR_DESCRIPTIONS[code])
        for code in status_codes
    }


def _list_errors() -> dict:
    """A list's errors: a page past the last one is a 404 (ConsolePagination)."""
    return {
        **_errors(400, 401, 403),
        404: OpenApiResponse(ApiErrorSerializer, description="No such page."),
    }


def _validated(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class CsvParser(BaseParser):
    """Raw bytes of a text/csv body: bulk.rows_from_csv owns decoding and its errors.

    DRF hands this parser the unread request stream, which bypasses Django's body size
    check, so the same limit is applied here.
    """

    media_type = "text/csv"

    def parse(self, stream, media_type=None, parser_context=None) -> bytes:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is None:
            return stream.read()
        data = stream.read(limit + 1)
        if len(data) > limit:
            raise RequestDataTooBig("The CSV is larger than the upload limit.")
        return data


def _bulk_rows(request) -> list[services.BulkBlockRow]:
    """CSV bytes or a JSON list of objects, as the Content-Type says."""
    data = request.data
    if request.stream is None:
        raise ValidationError(
            "The upload is empty: send a CSV with a header row (text/csv) "
            "or a JSON list of objects."
        )
    if isinstance(data, bytes):
        return bulk.rows_from_csv(data)
    return bulk.rows_from_records(data)


@extend_schema_view(
    list=extend_schema(
        summary="List blocks",
        responses={200: BlockSerializer(many=True), **_list_errors()},
    ),
    retrieve=extend_schema(
        summary="One block", responses={200: BlockSerializer, **_errors(401, 403, 404)}
    ),
)
@extend_schema(tags=["blocks"])
class BlockViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Items that must not be shown in a scope; lifted, never edited or deleted."""

    serializer_class = BlockSerializer
    filterset_class = BlockFilterSet
    api_key_scope = "overrides:write"
    required_permissions = {
        "lift": "overrides.change_block",
        "bulk": "overrides.add_block",
    }

    def get_queryset(self):
        return selectors.block_list()

    def _render(self, block) -> dict:
        # Read back through the selector so the response carries item_title.
        return self.get_serializer(self.get_queryset().get(pk=block.pk)).data

    @extend_schema(
        summary="Block an item",
        request=BlockCreateSerializer,
        responses={201: BlockSerializer, **_errors(400, 401, 403, 409)},
    )
    def create(self, request):
        data = _validated(BlockCreateSerializer, request.data)
        block = services.block_item(actor=request.user, **data)
        return Response(self._render(block), status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Lift a block",
        request=WithdrawSerializer,
        responses={200: BlockSerializer, **_errors(400, 401, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def lift(self, request, pk=None):
        block = self.get_object()
        data = _validated(WithdrawSerializer, request.data)
        services.lift_block(
            block_id=block.pk, reason=data["reason"], actor=request.user
        )
        return Response(self._render(block))

    @extend_schema(
        summary="Block many items at once",
        description="All rows are applied in one transaction, or none. Columns (CSV "
        "header or JSON keys): item_id (required), surface, region, reason, "
        "starts_at, expires_at. An empty surface or region means every one.",
        parameters=[BulkQuerySerializer],
        request={
            "text/csv": OpenApiTypes.BINARY,
            "application/json": BulkRowSerializer(many=True),
        },
        examples=[
            OpenApiExample(
                "CSV",
                media_type="text/csv",
                request_only=True,
                value="item_id,surface,region,reason\nsku-1,home,SG,Recall\n",
            )
        ],
        responses={
            201: OpenApiResponse(BulkReportSerializer, description="Applied."),
            200: OpenApiResponse(
                BulkReportSerializer, description="Dry run: every row is valid."
            ),
            400: OpenApiResponse(
                BulkErrorSerializer,
                description="A row is invalid (nothing written; see `rows`), or the "
                "upload cannot be read.",
            ),
            **_errors(401, 403),
        },
    )
    @action(
        detail=False, methods=["post"], parser_classes=[CsvParser, LimitedJSONParser]
    )
    def bulk(self, request):
        dry_run = _validated(BulkQuerySerializer, request.query_params)["dry_run"]
        result = services.block_items_in_bulk(
            rows=_bulk_rows(request), actor=request.user, dry_run=dry_run
        )
        report = BulkReportSerializer(result, context={"dry_run": dry_run}).data
        if not result.is_valid:
            problems = [
                f"Line {row.line}: {message}"
                for row in result.rows
                for message in row.errors
            ]
            message = (
                f"{result.error_count} of {len(result.rows)} rows have errors; "
                "nothing was blocked."
            )
            body = error_body("invalid", message, {"rows": problems})
            return Response({**body, **report}, status=status.HTTP_400_BAD_REQUEST)
        code = status.HTTP_201_CREATED if result.applied else status.HTTP_200_OK
        return Response(report, status=code)


@extend_schema_view(
    list=extend_schema(
        summary="List boosts",
        responses={200: BoostSerializer(many=True), **_list_errors()},
    ),
    retrieve=extend_schema(
        summary="One boost", responses={200: BoostSerializer, **_errors(401, 403, 404)}
    ),
)
@extend_schema(tags=["boosts"])
class BoostViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Temporary score multipliers; ended early, never edited or deleted."""

    serializer_class = BoostSerializer
    filterset_class = BoostFilterSet
    api_key_scope = "overrides:write"
    required_permissions = {"end": "overrides.change_boost"}

    def get_queryset(self):
        return selectors.boost_list()

    def _render(self, boost) -> dict:
        return self.get_serializer(self.get_queryset().get(pk=boost.pk)).data

    @extend_schema(
        summary="Boost an item",
        request=BoostCreateSerializer,
        responses={201: BoostSerializer, **_errors(400, 401, 403, 409)},
    )
    def create(self, request):
        data = _validated(BoostCreateSerializer, request.data)
        boost = services.boost_create(actor=request.user, **data)
        return Response(self._render(boost), status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="End a boost early",
        request=WithdrawSerializer,
        responses={200: BoostSerializer, **_errors(400, 401, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def end(self, request, pk=None):
        boost = self.get_object()
        data = _validated(WithdrawSerializer, request.data)
        services.end_boost(boost_id=boost.pk, reason=data["reason"], actor=request.user)
        return Response(self._render(boost))


@extend_schema(
    tags=["audit"],
    summary="Audit trail",
    responses={200: AuditEntrySerializer(many=True), **_list_errors()},
)
class AuditTrailView(generics.ListAPIView):
    """Who changed which rule or setting, when, why, before and after (admins)."""

    serializer_class = AuditEntrySerializer
    filterset_class = AuditFilterSet
    required_permissions = {
        method: "overrides.view_audit_trail" for method in ("GET", "HEAD", "OPTIONS")
    }

    def get_queryset(self):
        return selectors.audit_log()

    def list(self, request, *args, **kwargs):
        # audit_log() is a UNION of plain rows: page it first, then load one page.
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        entries = selectors.audit_entries_for_page(page)
        return self.get_paginated_response(self.get_serializer(entries, many=True).data)
