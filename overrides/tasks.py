"""Periodic jobs for overrides. Thin: each calls one service and is idempotent."""

from celery import shared_task

from . import services


@shared_task(acks_late=True)
def record_expired_rules() -> int:
    """Mark rules whose window passed (beat, every minute); reads never depend on it."""
    return services.record_expired_rules()


@shared_task(acks_late=True)
def prune_change_log() -> int:
    """Drop change-feed entries past retention (beat, hourly)."""
    return services.prune_change_log()
