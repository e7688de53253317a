"""Privacy endpoints (contract, Privacy). Thin: validate the shape, call a service.

Services raise ValidationError (400) and ConflictError (409), rendered in the
contract's error format by opsconsole.errors.
"""

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from opsconsole.models import ApiKey
from overrides.api.serializers import ApiErrorSerializer
from overrides.services import optout_register, optout_withdraw
from privacy import selectors, services
from privacy.models import DeletionRequest

from .serializers import (
    DeletionRequestAcceptedSerializer,
    DeletionRequestCreateSerializer,
    DeletionRequestDetailSerializer,
    OptOutRequestSerializer,
    OptOutResultSerializer,
)


def _errors(descriptions: dict[int, str]) -> dict:
    return {
        code: OpenApiResponse(ApiErrorSerializer, description=text)
        for code, text in descriptions.items()
    }


_WRITE_ERRORS = {
    400: "Empty or invalid customer id, unknown kind, missing source.",
    401: "No or bad credentials.",
    403: "Not allowed, or the key lacks privacy:write.",
    413: "The body is too large.",
}


def _api_key(request) -> ApiKey | None:
    return request.auth if isinstance(request.auth, ApiKey) else None


class OptOutView(APIView):
    """Register opt-outs; effective for serving at once. Repeats change nothing."""

    api_key_scope = "privacy:write"
    required_permissions = {"POST": "overrides.add_optout"}
    service = staticmethod(optout_register)

    @extend_schema(
        tags=["privacy"],
        summary="Register opt-outs",
        request=OptOutRequestSerializer,
        responses={200: OptOutResultSerializer, **_errors(_WRITE_ERRORS)},
    )
    def post(self, request):
        serializer = OptOutRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        changed = type(self).service(
            customer_id=data["customer_id"],
            kinds=data["kinds"],
            source=data["source"],
            actor=request.user,
        )
        active = selectors.active_optout_kinds(data["customer_id"])
        return Response(
            {"changed": sorted(optout.kind for optout in changed), "active": active}
        )


class OptOutWithdrawView(OptOutView):
    """Withdraw opt-outs; the records stay, marked withdrawn."""

    required_permissions = {"POST": "overrides.change_optout"}
    service = staticmethod(optout_withdraw)

    @extend_schema(
        tags=["privacy"],
        summary="Withdraw opt-outs",
        request=OptOutRequestSerializer,
        responses={200: OptOutResultSerializer, **_errors(_WRITE_ERRORS)},
    )
    def post(self, request):
        return super().post(request)


class TrainingOptOutExportView(APIView):
    """The hashed ids opted out of training, one per line, for the training pipeline.

    A pipeline holding raw ids checks them with POST /api/v1/serving/optouts/check.
    """

    api_key_scope = "privacy:write"
    required_permissions = {
        method: "overrides.view_optout" for method in ("GET", "HEAD", "OPTIONS")
    }

    @extend_schema(
        tags=["privacy"],
        summary="Export training opt-outs",
        responses={
            (200, "text/plain"): OpenApiResponse(
                OpenApiTypes.STR, description="One HMAC-SHA256 hex hash per line."
            ),
            **_errors({401: "No or bad credentials.", 403: "Not allowed."}),
        },
    )
    def get(self, request):
        lines = (
            f"{customer_hash}\n" for customer_hash in selectors.training_optout_hashes()
        )
        response = StreamingHttpResponse(
            lines, content_type="text/plain; charset=utf-8"
        )
        response["Content-Disposition"] = 'attachment; filename="training-optouts.txt"'
        response["Cache-Control"] = "no-store"
        return response


class DeletionRequestCreateView(APIView):
    """Accept a deletion request: opted out of everything at once, deleted later."""

    api_key_scope = "privacy:write"
    required_permissions = {"POST": "privacy.add_deletionrequest"}

    @extend_schema(
        tags=["privacy"],
        summary="File a deletion request",
        request=DeletionRequestCreateSerializer,
        responses={
            202: DeletionRequestAcceptedSerializer,
            **_errors(
                {
                    **_WRITE_ERRORS,
                    409: "The customer has an open request; the error names it.",
                }
            ),
        },
    )
    def post(self, request):
        serializer = DeletionRequestCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        deletion = services.deletion_request_create(
            **serializer.validated_data, actor=request.user, api_key=_api_key(request)
        )
        return Response(
            DeletionRequestAcceptedSerializer(deletion).data,
            status=status.HTTP_202_ACCEPTED,
        )


class DeletionRequestDetailView(APIView):
    """Status per downstream and the evidence of one request."""

    api_key_scope = "privacy:write"
    required_permissions = {
        method: "privacy.view_deletionrequest" for method in ("GET", "HEAD", "OPTIONS")
    }

    @extend_schema(
        tags=["privacy"],
        summary="A deletion request's status and evidence",
        responses={
            200: DeletionRequestDetailSerializer,
            **_errors(
                {
                    401: "No or bad credentials.",
                    403: "Not allowed.",
                    404: "No such request.",
                }
            ),
        },
    )
    def get(self, request, request_id):
        try:
            deletion = selectors.deletion_request_detail(request_id)
        except DeletionRequest.DoesNotExist as error:
            raise NotFound(f"No deletion request {request_id}.") from error
        document = selectors.evidence_document(deletion)
        document["days_left"] = selectors.days_left(deletion)
        document["progress_percent"] = selectors.progress_percent(deletion)
        response = Response(DeletionRequestDetailSerializer(document).data)
        response["Cache-Control"] = "no-store"
        return response
