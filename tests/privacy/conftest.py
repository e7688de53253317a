"""Privacy fixtures: a real local HTTP downstream, eager tasks, a private Redis."""

import json
import shutil
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from benchmarks.faults import PrivateRedis
from opsconsole.celery import app as celery_app


class Downstream:
    """A downstream system on a local port: records every call, fails on request.

    `fail_first` calls per idempotency key answer 500; later ones 200. A key is
    "processed" once, on its first successful call, as a real idempotent receiver
    would; repeats are answered 200 without processing again.
    """

    def __init__(self, *, fail_first: int = 0, delay: float = 0.0):
        self.fail_first = fail_first
        self.delay = delay
        self.calls: list[dict] = []
        self.processed: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        downstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                key = self.headers.get("Idempotency-Key", "")
                with downstream._lock:
                    earlier = sum(1 for call in downstream.calls if call["key"] == key)
                    downstream.calls.append(
                        {
                            "path": self.path,
                            "key": key,
                            "body": body,
                            "headers": dict(self.headers),
                        }
                    )
                if downstream.delay:
                    time.sleep(downstream.delay)
                if earlier < downstream.fail_first:
                    self.send_response(500)
                    self.end_headers()
                    return
                with downstream._lock:
                    if not downstream.processed[key]:
                        downstream.processed[key] = 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps({"deleted": True}).encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/delete") -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def bodies_by_key(self) -> dict[str, set[bytes]]:
        found: dict[str, set[bytes]] = defaultdict(set)
        for call in self.calls:
            found[call["key"]].add(call["body"])
        return found

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def downstream_server():
    """`downstream_server(fail_first=2, delay=0)`: start a local downstream."""
    servers = []

    def _start(**options) -> Downstream:
        server = Downstream(**options)
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.close()


@pytest.fixture
def eager_tasks():
    """Run Celery tasks in-process, as the demo does, even when Redis is set."""
    conf = celery_app.conf
    saved = conf.task_always_eager, conf.task_eager_propagates
    conf.task_always_eager, conf.task_eager_propagates = True, True
    yield
    conf.task_always_eager, conf.task_eager_propagates = saved


@pytest.fixture
def private_broker(tmp_path):
    """Point this process's Celery at a private Redis (restartable) for one test."""
    if not shutil.which("redis-server"):
        pytest.fail("This test restarts a Redis of its own: install redis-server.")
    redis = PrivateRedis(tmp_path)
    redis.start()
    conf = celery_app.conf
    saved = conf.broker_url
    conf.broker_url = redis.url
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    yield redis
    conf.broker_url = saved
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    redis.stop()


from tests.explanations.conftest import (  # noqa: E402, F401  (shared fixtures)
    artifact_dir,
    model_files,
    register,
)
