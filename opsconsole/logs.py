"""Structured logs: one JSON object per line, each carrying the request id.

The request id lives in a context variable set by RequestContextMiddleware for the
duration of a request, and by the Celery signals below for a task enqueued by a
request (it travels as a message header, not as a task argument). A logging filter
copies it onto every record, so any logger anywhere in the request (Django's, DRF's,
the project's) writes it without being passed anything.
"""

import contextvars
import logging
import re
import time

import orjson

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar(
    "request_id", default=""
)

# An incoming X-Request-ID is echoed only when it is short and plain (a proxy's or
# a client's id); anything else could inject text into logs and is replaced.
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
REQUEST_ID_HEADER = "opsconsole_request_id"  # the Celery message header


class RequestIdFilter(logging.Filter):
    """Puts the current request id (or "") on every record as `request_id`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


# The `extra=` fields that may reach a line. An allow-list, not "everything": a
# library's extra can carry personal data or secrets in its repr. django.request
# passes the `request`, whose repr has the full query string (a refused
# `?api_key=opc_...`, a `?customer_id=...` lookup); it is written as its method and
# path (no query string) instead. Paths of the console carry no customer ids.
LOGGED_EXTRA_FIELDS = (
    "method",
    "path",
    "route",
    "status",
    "status_code",
    "duration_ms",
)


class ConsoleJsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601 with ms), level, logger,
    message, request_id, then the allowed `extra=` fields (LOGGED_EXTRA_FIELDS),
    then the traceback if any.

    orjson, not a generic JSON logging library: this runs for the access line of
    every request, serving included, and is about a third cheaper.
    """

    def format(self, record: logging.LogRecord) -> str:
        created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        data = {
            "time": f"{created}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "") or request_id_var.get(),
        }
        extra = record.__dict__
        for name in LOGGED_EXTRA_FIELDS:
            if name in extra:
                data[name] = extra[name]
        request = extra.get("request")
        if request is not None:
            data.setdefault("method", getattr(request, "method", None))
            data.setdefault("path", getattr(request, "path", None))
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(data, default=str).decode()


# Celery: the id of the request that enqueued a task goes with the message -------


def _add_request_id_header(headers=None, **kwargs) -> None:
    request_id = request_id_var.get()
    if request_id and headers is not None:
        headers.setdefault(REQUEST_ID_HEADER, request_id)


_task_tokens: dict[str, contextvars.Token] = {}


def _enter_task(task_id=None, task=None, **kwargs) -> None:
    request_id = getattr(task.request, REQUEST_ID_HEADER, None) if task else None
    if request_id is None and task is not None:
        headers = getattr(task.request, "headers", None) or {}
        request_id = headers.get(REQUEST_ID_HEADER)
    if request_id and task_id:
        _task_tokens[task_id] = request_id_var.set(str(request_id))


def _leave_task(task_id=None, **kwargs) -> None:
    token = _task_tokens.pop(task_id, None) if task_id else None
    if token is not None:
        request_id_var.reset(token)


def connect_celery_signals() -> None:
    """Called once by opsconsole.celery; eager tasks already share the context."""
    from celery import signals

    signals.before_task_publish.connect(_add_request_id_header, weak=False)
    signals.task_prerun.connect(_enter_task, weak=False)
    signals.task_postrun.connect(_leave_task, weak=False)
