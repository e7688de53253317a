"""Prometheus metrics, served at GET /metrics (opsconsole.metrics_view).

Counters and histograms are updated in the request path (RequestContextMiddleware,
`record_rank`) and by Celery's task_failure signal; they must stay cheap, so the
label children are looked up once and kept. Values that live in the database (the
override version, the serving instances' lag) are read only when /metrics is
scraped, never on an ordinary request.

Under gunicorn and Celery's prefork pool each process keeps its own values; with
PROMETHEUS_MULTIPROC_DIR set (deploy/run-production sets it and empties it at start)
prometheus_client writes them to files there and /metrics adds them up.
"""

import os
import time

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

# The *_created series double the output and no dashboard here reads them.
disable_created_metrics()

HTTP_REQUESTS = Counter(
    "opsconsole_http_requests",
    "HTTP requests answered, by route name, method and status.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "opsconsole_http_request_duration_seconds",
    "Time from the request reaching Django to the response leaving it, by route.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RANK_CALLS = Counter("opsconsole_rank_calls", "Serving rank calls with valid input.")
RANK_CANDIDATES = Counter(
    "opsconsole_rank_candidates", "Candidates received by serving rank calls."
)
TASK_FAILURES = Counter(
    "opsconsole_celery_task_failures", "Celery tasks that raised, by task.", ["task"]
)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_children: dict[tuple[str, str, int], tuple] = {}


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    """Count one request and its latency (a dict hit after the first of its kind)."""
    if method not in _METHODS:
        method = "OTHER"  # arbitrary methods must not grow the label set
    key = (route, method, status)
    children = _children.get(key)
    if children is None:
        children = (
            HTTP_REQUESTS.labels(route, method, str(status)),
            HTTP_LATENCY.labels(route),
        )
        _children[key] = children
    children[0].inc()
    children[1].observe(seconds)


def record_rank(candidates: int) -> None:
    RANK_CALLS.inc()
    RANK_CANDIDATES.inc(candidates)


def _task_failed(sender=None, **kwargs) -> None:
    TASK_FAILURES.labels(getattr(sender, "name", None) or "unknown").inc()


def connect_celery_signals() -> None:
    from celery import signals

    signals.task_failure.connect(_task_failed, weak=False)


class ServingCollector:
    """Read at scrape time: the override version and each serving instance's lag."""

    def collect(self):
        from django.db import Error as DatabaseError  # Operational, Interface, ...

        # From the database, not the serving memo: a scrape can afford one query.
        # When the database is down, these gauges are left out and the scrape still
        # answers with every process counter, plus opsconsole_database_up 0.
        try:
            families = list(self._from_database())
        except DatabaseError:
            families, up = [], 0
        else:
            up = 1
        yield from families
        yield GaugeMetricFamily(
            "opsconsole_database_up",
            "1 when the scrape could read the database, 0 when it could not.",
            value=up,
        )

    def _from_database(self):
        from overrides import selectors

        version = selectors.current_version()
        yield GaugeMetricFamily(
            "opsconsole_override_version",
            "The committed override version.",
            value=version,
        )
        behind = GaugeMetricFamily(
            "opsconsole_serving_instance_versions_behind",
            "Override versions an instance is behind the current one.",
            labels=["instance"],
        )
        silent = GaugeMetricFamily(
            "opsconsole_serving_instance_heartbeat_age_seconds",
            "Seconds since an instance's last heartbeat.",
            labels=["instance"],
        )
        now = time.time()
        active = 0
        for instance in selectors.active_serving_instances():
            active += 1
            behind.add_metric([instance.name], max(0, version - instance.version))
            silent.add_metric(
                [instance.name], max(0.0, now - instance.last_seen_at.timestamp())
            )
        yield behind
        yield silent
        yield GaugeMetricFamily(
            "opsconsole_serving_instances_active",
            "Instances that reported within SERVING_INSTANCE_ACTIVE_MINUTES.",
            value=active,
        )


def exposition() -> bytes:
    """Every metric in Prometheus' text format, all processes added up."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        process_registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(process_registry)
    else:
        process_registry = REGISTRY
    scrape_registry = CollectorRegistry(auto_describe=False)
    scrape_registry.register(ServingCollector())
    return generate_latest(process_registry) + generate_latest(scrape_registry)
