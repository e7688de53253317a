"""Background jobs for explanations. Thin: each calls one service and is idempotent."""

import logging

from celery import shared_task

from . import services
from .models import Prediction

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def explain_predictions(prediction_ids: list[str]) -> int:
    """Precompute explanations of newly logged predictions (EXPLANATION_PRECOMPUTE)."""
    explained = 0
    for prediction_id in prediction_ids:
        try:
            services.explain_prediction(prediction_id=prediction_id)
        except Prediction.DoesNotExist:
            continue  # deleted since (retention or a deletion request)
        except Exception:
            logger.exception("Could not explain prediction %s", prediction_id)
            continue
        explained += 1
    return explained


@shared_task(acks_late=True)
def delete_expired_predictions() -> int:
    """Delete predictions past PREDICTION_RETENTION_DAYS (beat, daily)."""
    return services.delete_expired_predictions()
