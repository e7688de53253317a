"""Periodic jobs for overrides. Thin: each calls one service and is idempotent."""

from celery import shared_task

from . import optout_mirror, services


@shared_task(acks_late=True)
def record_expired_rules() -> int:
    """Mark rules whose window passed (beat, every minute); reads never depend on it."""
    return services.record_expired_rules()


@shared_task(acks_late=True)
def prune_change_log() -> int:
    """Drop change-feed entries past retention (beat, hourly)."""
    return services.prune_change_log()


@shared_task(acks_late=True)
def ensure_optout_mirror() -> int:
    """Rebuild the Redis copy of opt-outs when it is missing (beat, every minute)."""
    if optout_mirror.enabled() and not optout_mirror.is_ready():
        return optout_mirror.rebuild()
    return 0


@shared_task(acks_late=True)
def rebuild_optout_mirror() -> int:
    """Reconcile the Redis copy of opt-outs with the database (beat, daily)."""
    return optout_mirror.rebuild()
