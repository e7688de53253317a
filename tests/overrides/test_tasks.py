"""Periodic override jobs, in-process and through a real Celery worker."""

from datetime import timedelta

import pytest
from django.utils import timezone

from overrides import tasks
from overrides.models import Block, OverrideChange
from tests.conftest import wait_until
from tests.factories import make_block, make_boost


def _expire_now(rule):
    """Move a rule's window into the past, as time passing would."""
    past = timezone.now() - timedelta(minutes=1)
    type(rule).objects.filter(pk=rule.pk).update(
        starts_at=past - timedelta(hours=1), **{rule.window_end_field: past}
    )


def test_record_expired_rules_task__in_process__marks_and_feeds_the_change(
    agent, manager
):
    block = make_block(agent, expires_at=timezone.now() + timedelta(hours=1))
    boost = make_boost(manager)
    make_block(agent, item_id="sku-still-active")
    _expire_now(block)
    _expire_now(boost)

    assert tasks.record_expired_rules() == 2
    assert tasks.record_expired_rules() == 0
    actions = list(
        OverrideChange.objects.order_by("-version").values_list("action", flat=True)[:2]
    )
    assert sorted(actions) == ["unblock", "unboost"]


def test_prune_change_log_task__keeps_recent_entries(agent, settings):
    make_block(agent)
    OverrideChange.objects.update(created_at=timezone.now() - timedelta(days=30))
    make_block(agent, item_id="sku-new")
    assert tasks.prune_change_log() == 1
    assert OverrideChange.objects.count() == 1


@pytest.mark.services
def test_record_expired_rules_task__real_worker__marks_expired_block(
    celery_worker, agent
):
    block = make_block(agent, expires_at=timezone.now() + timedelta(hours=1))
    _expire_now(block)

    tasks.record_expired_rules.apply_async(queue=celery_worker)

    wait_until(lambda: Block.objects.get(pk=block.pk).expiry_recorded_at is not None)
    assert OverrideChange.objects.filter(action="unblock", rule__id=block.pk).exists()
