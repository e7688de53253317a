"""Celery app. Without REDIS_URL, tasks run in-process (CELERY_TASK_ALWAYS_EAGER)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsconsole.settings")

app = Celery("opsconsole")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Request ids travel with the tasks a request enqueues; failures are counted.
from opsconsole import logs, metrics  # noqa: E402

logs.connect_celery_signals()
metrics.connect_celery_signals()
