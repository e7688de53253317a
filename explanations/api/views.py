"""Prediction log and explanation endpoints (contract, Predictions and explanations).

Thin: the body goes to one service; its ValidationError (400) and ConflictError (409)
are rendered in the contract's error format by opsconsole.errors.
"""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from explanations import selectors, services
from explanations.explainers import ArtifactError
from explanations.models import Prediction
from opsconsole.errors import error_body
from opsconsole.models import ApiKey
from opsconsole.parsers import FastJSONRenderer
from overrides.api.serializers import ApiErrorSerializer

from .serializers import (
    ExplanationSerializer,
    PredictionLoggedSerializer,
    PredictionLogSerializer,
)


def _errors(descriptions: dict[int, str]) -> dict:
    return {
        code: OpenApiResponse(ApiErrorSerializer, description=text)
        for code, text in descriptions.items()
    }


class PredictionLogView(APIView):
    """Log one prediction or a batch (all or nothing); repeats are idempotent."""

    api_key_scope = "predictions:write"
    renderer_classes = [FastJSONRenderer]
    required_permissions = {"POST": "explanations.add_prediction"}

    @extend_schema(
        tags=["predictions"],
        summary="Log predictions",
        description="One object or a list of up to 1,000. Same id and same body "
        "again: 200 with created=false; same id, other body: 409.",
        request=PredictionLogSerializer,
        responses={
            201: PredictionLoggedSerializer,
            200: OpenApiResponse(
                PredictionLoggedSerializer, description="Already logged."
            ),
            **_errors(
                {
                    400: "Unknown model or feature, missing feature, not a number.",
                    401: "No or bad credentials.",
                    403: "The key lacks predictions:write.",
                    409: "The id was logged with a different body.",
                    413: "The body is too large.",
                }
            ),
        },
    )
    def post(self, request):
        data = request.data
        records = data if isinstance(data, list) else [data]
        results = services.log_predictions(records=records)
        body = [
            {"prediction_id": result.prediction_id, "created": result.created}
            for result in results
        ]
        created = any(result.created for result in results)
        return Response(
            body if isinstance(data, list) else body[0],
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class ExplanationView(APIView):
    """SHAP contributions of one prediction; views by people are recorded.

    The answer is built as plain data and rendered with orjson: a cached
    explanation is one query, and a serializer would cost more than the rest.
    """

    api_key_scope = "explanations:read"
    renderer_classes = [FastJSONRenderer]
    required_permissions = {
        method: "explanations.view_explanation" for method in ("GET", "HEAD", "OPTIONS")
    }

    @extend_schema(
        tags=["predictions"],
        summary="Explanation of a prediction",
        responses={
            200: ExplanationSerializer,
            **_errors(
                {
                    401: "No or bad credentials.",
                    403: "Not allowed to read explanations.",
                    404: "No such prediction.",
                    503: "The model's artifact is missing or changed.",
                }
            ),
        },
    )
    def get(self, request, prediction_id: str):
        try:
            explanation = services.explain_prediction(prediction_id=prediction_id)
        except Prediction.DoesNotExist as error:
            raise NotFound(f"No prediction {prediction_id}.") from error
        except ArtifactError as error:
            return Response(
                error_body("unavailable", str(error)),
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
            )
        if not isinstance(request.auth, ApiKey):
            services.record_prediction_view(
                prediction=explanation.prediction, user=request.user
            )
        return Response(selectors.explanation_document(explanation))
