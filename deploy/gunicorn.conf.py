"""gunicorn settings for deploy/run-production (read from the environment it sets).

Access lines come from the console itself (opsconsole.middleware, JSON with the
request id and route), so gunicorn writes none; its own lines are JSON too.
"""

import os

bind = os.environ.get("BIND", "127.0.0.1:8443")
workers = int(os.environ.get("WEB_WORKERS", "2"))
worker_class = "sync"
timeout = int(os.environ.get("WEB_TIMEOUT", "30"))
graceful_timeout = 10
certfile = os.environ.get("TLS_CERT_FILE") or None
keyfile = os.environ.get("TLS_KEY_FILE") or None
accesslog = None
errorlog = "-"
wsgi_app = "opsconsole.wsgi:application"
proc_name = "opsconsole-web"

logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "opsconsole.logs.ConsoleJsonFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        }
    },
    "loggers": {
        "gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False}
    },
}


def child_exit(server, worker):
    """A dead worker's live gauges must not be added up any more (multiprocess)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
