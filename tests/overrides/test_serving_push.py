"""With Redis configured, every committed rule change is published for clients."""

import json

import pytest
import redis
from django.conf import settings

from overrides import serving
from tests.factories import make_block

pytestmark = pytest.mark.services


def test_committed_change__published_on_the_channel_and_version_shared(
    agent, django_capture_on_commit_callbacks
):
    subscriber = redis.Redis.from_url(settings.REDIS_URL).pubsub()
    subscriber.subscribe(settings.OVERRIDES_CHANNEL)
    subscriber.get_message(timeout=1)  # the subscribe confirmation

    with django_capture_on_commit_callbacks(execute=True):
        make_block(agent, item_id="sku-pushed")

    message = subscriber.get_message(timeout=2)
    assert message is not None and message["type"] == "message"
    assert json.loads(message["data"]) == {"version": 1}
    assert serving.current_version() == 1
    subscriber.close()


def test_rolled_back_change__nothing_published(
    agent, django_capture_on_commit_callbacks
):
    from opsconsole.errors import ConflictError

    make_block(agent, item_id="sku-1")
    subscriber = redis.Redis.from_url(settings.REDIS_URL).pubsub()
    subscriber.subscribe(settings.OVERRIDES_CHANNEL)
    subscriber.get_message(timeout=1)

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ConflictError):
        make_block(agent, item_id="sku-1")

    assert subscriber.get_message(timeout=0.5) is None
    subscriber.close()
