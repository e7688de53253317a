"""Fault injection: a crash of any one part loses nothing.

`.venv/bin/python -m benchmarks.faults` (about 4 minutes; `--requests 100` for a
short try-out). Everything runs on loopback in parts of this run's own, so they can
be killed without disturbing anyone: a PostgreSQL cluster (initdb into a temporary
directory, free port), a redis-server (free port, no persistence), the console
under gunicorn (2 workers), two Celery workers and beat, and three local HTTP
downstreams that verify each webhook's signature and record what they processed.

While 1,000 deletion requests are filed over the privacy API and carried out, a
steady `rank` load runs over HTTP, blocks are written through the API (each 2xx is
an accepted change), and an `opsconsole_client.OverridesClient` is asked to rank,
check blocks and check opt-outs every few milliseconds. Meanwhile, in turn: a Celery
worker is SIGKILLed (and started again), Redis is killed and restarted (every queued
task is lost), PostgreSQL is stopped as in a crash and restarted, the console is
stopped for a while and started again, and the other worker is SIGKILLed.

Afterwards it checks: every deletion request completed, every downstream delivery
acknowledged with exactly one acknowledgement in the evidence per idempotency key
and processed by its downstream (with valid signatures and the same body on every
attempt); every accepted block in the database, in the change feed and in the
client; and the client answered every call from its last rules (blocked items never
shown, opted-out customers never personalised; customers the console could not be
asked about counted as failing closed). It prints the counts (requests, kills,
restarts, lost) and writes benchmarks/results/faults-<timestamp>.json.

Exit code 0 when nothing was lost and the client never failed, 1 otherwise, 2 when
the run itself could not be carried out. Everything started is stopped on the way
out, on failure and on Ctrl-C too.
"""

from __future__ import annotations

import abc
import argparse
import hashlib
import hmac
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from benchmarks import serving as common

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


# Private services ---------------------------------------------------------------


def wait_for_port(port: int, *, timeout: float, process=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise common.BenchmarkError(f"process on port {port} exited")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise common.BenchmarkError(f"nothing answered on port {port} in {timeout:.0f} s")


class PrivateRedis:
    """A redis-server of this run's own (free port, no persistence): restarting it
    loses every queued message, as a crash of an unpersisted Redis does."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = common.free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        if shutil.which("redis-server") is None:
            raise common.BenchmarkError("redis-server is not installed")
        self.process = subprocess.Popen(  # noqa: S603
            [
                shutil.which("redis-server"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, timeout=10, process=self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        """SIGKILL and start again on the same port: everything in it is gone."""
        self.stop()
        self.start()


class PrivatePostgres:
    """A PostgreSQL cluster of this run's own: initdb into a temporary directory, a
    free port, trust authentication on loopback. As root, the server runs as the
    `postgres` user (PostgreSQL refuses to run as root)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.data = directory / "pgdata"
        self.log_path = directory / "postgres.log"
        self.port = common.free_port()

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _run(self, program: str, *arguments: str) -> None:
        command = [str(PG_BIN / program), *arguments]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        completed = subprocess.run(  # noqa: S603
            command, capture_output=True, text=True, timeout=120, check=False
        )
        if completed.returncode != 0:
            raise common.BenchmarkError(
                f"{program} failed: {completed.stdout}{completed.stderr}"
            )

    def init(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise common.BenchmarkError(f"no initdb in {PG_BIN} (set PG_BIN)")
        if os.geteuid() == 0:
            shutil.chown(self.directory, user="postgres", group="postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-w", "-t",
            "60", "-o", options, "start",
        )  # fmt: skip
        wait_for_port(self.port, timeout=30)

    def stop(self, mode: str = "fast") -> None:
        if self.pid is not None:
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """Stop as a crash does (immediate: no checkpoint, every connection cut),
        then start again: crash recovery runs on the way up."""
        self.stop("immediate")
        self.start()

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")


def start_celery(
    kind: str, log_path: Path, env: dict, *, queue: str
) -> subprocess.Popen:
    """A Celery worker (solo pool: one process, one task at a time) or beat (its
    schedule file beside its log); a worker is returned once it says it is ready."""
    command = [sys.executable, "-m", "celery", "-A", "opsconsole", kind]
    if kind == "worker":
        command += [
            "--pool=solo",
            "-Q",
            queue,
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ]
    else:
        command += ["--schedule", str(log_path.with_name("beat-schedule"))]
    command += ["--loglevel=INFO"]
    before = log_path.read_text().count(" ready.") if log_path.exists() else 0
    with open(log_path, "a") as log_file:
        process = subprocess.Popen(  # noqa: S603
            command,
            cwd=common.ROOT,
            env={**os.environ, **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    if kind == "worker":
        deadline = time.monotonic() + 60
        while log_path.read_text().count(" ready.") <= before:
            if process.poll() is not None or time.monotonic() > deadline:
                common.stop_server(process)
                raise common.BenchmarkError(f"Celery {kind} did not start: {log_path}")
            time.sleep(0.2)
    return process


def rss_kib(pid: int) -> int | None:
    """Resident memory of one process (VmRSS, KiB); None when it has exited."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


# The downstreams ------------------------------------------------------------------


class _QuietServer(ThreadingHTTPServer):
    """A worker SIGKILLed mid-call resets its connection: expected here, not news."""

    def handle_error(self, request, client_address):
        pass


class RecordingDownstream:
    """A downstream system on a local port, run in this process so it outlives every
    fault: checks the signature, processes each idempotency key once (a repeat is
    acknowledged without processing again, as an idempotent receiver does), and
    records every call."""

    def __init__(self, secret: str, *, delay: float = 0.0):
        from privacy.services import signature  # the console's own signing

        self.secret = secret
        self.delay = delay  # seconds per call: a slower downstream (tests)
        self.calls: Counter[str] = Counter()
        self.processed: Counter[str] = Counter()
        self.bodies: dict[str, set[str]] = defaultdict(set)
        self.bad_signatures = 0
        lock = threading.Lock()
        downstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                key = self.headers.get("Idempotency-Key", "")
                timestamp = self.headers.get("X-OpsConsole-Timestamp", "")
                expected = signature(downstream.secret, timestamp, body)
                signed = hmac.compare_digest(
                    expected, self.headers.get("X-OpsConsole-Signature", "")
                )
                with lock:
                    downstream.calls[key] += 1
                    downstream.bodies[key].add(hashlib.sha256(body).hexdigest())
                    if not signed:
                        downstream.bad_signatures += 1
                    elif key not in downstream.processed:
                        downstream.processed[key] += 1
                if downstream.delay:
                    time.sleep(downstream.delay)
                self.send_response(200 if signed else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/delete"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# The load: threads that each record what they saw ---------------------------------


class Activity(threading.Thread, abc.ABC):
    """A loop run every `interval` seconds until stopped; counts what happened."""

    interval = 0.05

    def __init__(self, name: str):
        super().__init__(daemon=True, name=f"faults-{name}")
        self.stop_event = threading.Event()
        self.counts: Counter[str] = Counter()
        self.failures: list[str] = []  # the first 50, for the report
        self.unavailable_at: list[float] = []

    def note_unavailable(self, what: str) -> None:
        """An answer lost to a fault: counted, and when (for the outage windows)."""
        self.counts[what] += 1
        self.unavailable_at.append(time.monotonic())

    def outage_windows(self, since: float) -> list[list[float]]:
        """[first, last] seconds after `since` of each run of lost answers (gaps
        under 2 s merged), to compare with the faults' times."""
        windows: list[list[float]] = []
        for moment in self.unavailable_at:
            at = round(moment - since, 1)
            if windows and at - windows[-1][1] < 2.0:
                windows[-1][1] = at
            else:
                windows.append([at, at])
        return windows

    def note_failure(self, text: str) -> None:
        self.counts["failures"] += 1
        if len(self.failures) < 50:
            self.failures.append(f"{time.strftime('%H:%M:%S')} {text}")

    def report(self, **figures) -> dict:
        """The counts (every failure counted) and the first failures, for the JSON."""
        return {**self.counts, **figures, "failure_samples": self.failures}

    @abc.abstractmethod
    def step(self) -> bool:
        """One unit of work; False when there is nothing left to do."""

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            if not self.step():
                return
            next_at = max(next_at + self.interval, time.monotonic() - 1.0)
            self.stop_event.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=30)


class Intake(Activity):
    """Files the deletion requests over the privacy API at a steady pace; a request
    whose answer was lost (console down, 5xx) is sent again until it is answered.
    A 409 on a repeat names the open request: the first attempt was accepted."""

    def __init__(self, base_url: str, api_key: str, customers: list[str], seconds):
        super().__init__("intake")
        self.url = f"{base_url}/api/v1/privacy/deletion-requests"
        self.session = common.api_session(api_key)
        self.pending = list(reversed(customers))
        self.interval = seconds / max(1, len(customers))
        self.retried: set[str] = set()

    def step(self) -> bool:
        if not self.pending:
            return False
        customer = self.pending[-1]
        try:
            response = self.session.post(
                self.url, json={"customer_id": customer, "source": "faults"}, timeout=10
            )
            status = response.status_code
        except Exception as error:  # the console is down: try again
            status = type(error).__name__
        if status == 202 or (status == 409 and customer in self.retried):
            self.counts["accepted" if status == 202 else "accepted_on_retry"] += 1
            self.pending.pop()
        else:
            self.note_unavailable(f"answer {status}")
            self.retried.add(customer)
            time.sleep(0.2)
        return True


class RankLoad(Activity):
    """A steady REST `rank` load; every answer checked (the blocked items gone)."""

    interval = 0.05  # 20 req/s

    def __init__(self, base_url: str, api_key: str, body: dict, blocked: set[str]):
        super().__init__("rank")
        self.url = f"{base_url}{common.RANK_PATH}"
        self.session = common.api_session(api_key)
        self.body, self.blocked = body, blocked

    def step(self) -> bool:
        self.counts["requests"] += 1
        try:
            response = self.session.post(self.url, json=self.body, timeout=10)
        except Exception as error:
            self.note_unavailable(f"error {type(error).__name__}")
            return True
        if response.status_code != 200:
            self.note_unavailable(f"answer {response.status_code}")
            return True
        shown = {entry["item_id"] for entry in response.json()["items"]}
        if shown & self.blocked:
            self.note_failure(
                f"rank showed blocked items {sorted(shown & self.blocked)}"
            )
        self.counts["ok"] += 1
        return True


class OverrideWriter(Activity):
    """Blocks written through the API, one every `interval`; each 2xx is accepted."""

    interval = 0.25

    def __init__(self, base_url: str, api_key: str, prefix: str):
        super().__init__("writer")
        self.url = f"{base_url}/api/v1/blocks"
        self.session = common.api_session(api_key)
        self.prefix = prefix
        self.accepted: list[str] = []
        self.unanswered: list[str] = []  # sent, no answer: may or may not exist

    def step(self) -> bool:
        item_id = f"{self.prefix}-{self.counts['sent']}"
        self.counts["sent"] += 1
        body = {
            "item_id": item_id,
            "surface": SURFACE,
            "region": REGION,
            "reason": "Fault injection: a block written during faults",
        }
        try:
            response = self.session.post(self.url, json=body, timeout=10)
        except Exception as error:
            self.note_unavailable(f"error {type(error).__name__}")
            self.unanswered.append(item_id)
            return True
        if 200 <= response.status_code < 300:
            self.accepted.append(item_id)
            self.counts["accepted"] += 1
        else:
            self.note_unavailable(f"answer {response.status_code}")
            if response.status_code >= 500:
                self.unanswered.append(item_id)
        return True


class ClientAnswers(Activity):
    """The serving layer: the Python client asked every few milliseconds.

    Each round ranks the candidates for an opted-out customer and for one who never
    opted out, and asks `is_blocked` about a blocked item. The client must answer
    every call (from its last rules when the console is away), never show a blocked
    item and never personalise for the opted-out customer; the other customer's
    unpersonalised answers are the opt-out check failing closed.
    """

    interval = 0.02

    def __init__(self, client, candidates, blocked: set[str], opted_out, other):
        super().__init__("client")
        self.client, self.candidates, self.blocked = client, candidates, blocked
        self.opted_out, self.other = opted_out, other
        self.blocked_item = sorted(blocked)[0]
        self.versions: set[int] = set()

    def step(self) -> bool:
        # Every fifth round a customer never asked about: not cached by the client,
        # so the console must answer, or the check fails closed.
        self.counts["rounds"] += 1
        other = self.other
        if self.counts["rounds"] % 5 == 0:
            other = f"{self.other}-{self.counts['rounds']}"
        for customer in (self.opted_out, other):
            self.counts["answers"] += 1
            try:
                result = self.client.rank(self.candidates, customer_id=customer)
            except Exception as error:
                self.counts["errors"] += 1
                self.note_failure(f"client.rank raised {error!r}")
                continue
            self.versions.add(result.version)
            shown = {item_id for item_id, _score in result.items}
            if shown & self.blocked:
                self.note_failure(
                    f"client showed blocked {sorted(shown & self.blocked)}"
                )
            if customer == self.opted_out and result.personalized:
                self.note_failure("client personalised for an opted-out customer")
            if customer == other and not result.personalized:
                self.counts["opt-out check failed closed"] += 1
        self.counts["answers"] += 1
        try:
            if not self.client.is_blocked(self.blocked_item):
                self.note_failure(f"is_blocked({self.blocked_item}) answered False")
        except Exception as error:
            self.counts["errors"] += 1
            self.note_failure(f"client.is_blocked raised {error!r}")
        return True


# The run --------------------------------------------------------------------------

QUEUE = "opsconsole-faults"
SURFACE, REGION = common.SCOPE_SURFACE, common.SCOPE_REGION
SEED_BLOCKS = 50
DOWNSTREAMS = 3
WORKERS = 2
CONSOLE_DOWN_SECONDS = 10.0
COMPLETION_TIMEOUT_SECONDS = 300.0
# Fast retries and sweeps, so recovery from each fault takes seconds, not hours.
FAULT_ENV = {
    "CELERY_TASK_ALWAYS_EAGER": "0",
    "CELERY_QUEUE": QUEUE,
    "CACHE_KEY_PREFIX": "opsconsole-faults",
    "OVERRIDES_CHANNEL": "opsconsole-faults:overrides",
    "DOWNSTREAM_RETRY_BASE_SECONDS": "0.5",
    "DOWNSTREAM_RETRY_MAX_SECONDS": "3",
    "DOWNSTREAM_TIMEOUT_SECONDS": "3",
    "DELETION_SWEEP_SECONDS": "5",
    "DELETION_SWEEP_GRACE_SECONDS": "10",
}


@dataclass
class Stack:
    """Every process this run started, and how to start each again."""

    directory: Path
    postgres: PrivatePostgres
    redis: PrivateRedis
    env: dict
    port: int = 0
    console: subprocess.Popen | None = None
    workers: list = field(default_factory=list)
    beat: subprocess.Popen | None = None
    console_starts: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_console(self) -> None:
        self.console_starts += 1
        log_path = self.directory / f"gunicorn-{self.console_starts}.log"
        self.console = common.start_server(self.port, log_path)

    def stop_console(self) -> None:
        if self.console is not None:
            common.stop_server(self.console)
            self.console = None

    def start_worker(self, number: int) -> None:
        log_path = self.directory / f"worker-{number}.log"
        process = start_celery("worker", log_path, self.env, queue=QUEUE)
        if number < len(self.workers):
            self.workers[number] = process
        else:
            self.workers.append(process)

    def kill_worker(self, number: int) -> None:
        os.kill(self.workers[number].pid, signal.SIGKILL)
        self.workers[number].wait()

    def start_beat(self) -> None:
        self.beat = start_celery(
            "beat", self.directory / "beat.log", self.env, queue=QUEUE
        )

    def stop_all(self) -> None:
        for process in [*self.workers, self.beat]:
            if process is not None:
                common.stop_server(process)
        self.stop_console()
        self.redis.stop()
        self.postgres.stop("fast")


def fault_schedule(stack: Stack, scale: float) -> list[tuple[float, str, object]]:
    """(seconds after the load started, what, how): one fault at a time, each with
    time to recover before the next. `scale` shortens the gaps for try-outs."""

    def kill_and_restart(number: int):
        def inject():
            stack.kill_worker(number)
            time.sleep(2)
            stack.start_worker(number)

        return inject

    def console_down():
        stack.stop_console()
        time.sleep(CONSOLE_DOWN_SECONDS)
        stack.start_console()

    return [
        (10 * scale, "SIGKILL Celery worker 0, start it again", kill_and_restart(0)),
        (25 * scale, "restart Redis (SIGKILL: queued tasks lost)", stack.redis.restart),
        (40 * scale, "restart PostgreSQL (immediate stop)", stack.postgres.restart),
        (55 * scale, f"stop the console {CONSOLE_DOWN_SECONDS:.0f} s", console_down),
        (75 * scale, "SIGKILL Celery worker 1, start it again", kill_and_restart(1)),
    ]


FAULT_KINDS = {
    "worker": "Celery worker",
    "redis": "Redis",
    "postgres": "PostgreSQL",
    "console": "console",
}
KILLS = {
    "SIGKILL Celery worker 0, start it again",
    "SIGKILL Celery worker 1, start it again",
}


def configure(postgres: PrivatePostgres, redis: PrivateRedis) -> dict:
    common.DATABASE_NAME = "opsconsole"
    common.REDIS_URL = redis.url
    common.BENCH_ENV.update(
        {
            **FAULT_ENV,
            "DATABASE_URL": postgres.url("opsconsole"),
            "REDIS_URL": redis.url,
            "CELERY_BROKER_URL": redis.url,
        }
    )
    common.configure_django()
    return dict(common.BENCH_ENV)


def prepare(count: int, downstreams: list[RecordingDownstream]) -> dict:
    """Schema, downstreams, keys, seed blocks; one customer opted out beforehand."""
    from django.core.management import call_command

    from opsconsole.services import api_key_create
    from overrides.services import optout_register
    from privacy import services as privacy_services

    call_command("migrate", interactive=False, verbosity=0)
    for number, downstream in enumerate(downstreams):
        privacy_services.downstream_create(
            name=f"downstream-{number}", url=downstream.url, secret=downstream.secret
        )
    actor = common.bench_user()
    # serving.py's helper blocks in its scope, which is this script's too.
    block_change = common.block_change(actor, prefix="seed-blocked")
    for number in range(SEED_BLOCKS):
        block_change(number)
    blocked = {f"seed-blocked-{number}" for number in range(SEED_BLOCKS)}
    optout_register(
        customer_id="opted-out-customer",
        kinds=["personalization"],
        source="faults",
        actor=actor,
    )

    def key(name: str, *scopes: str) -> str:
        return api_key_create(name=f"faults-{name}", scopes=list(scopes))[1]

    candidates = [{"item_id": item, "score": 0.5} for item in sorted(blocked)]
    candidates += [{"item_id": f"item-{n}", "score": 1 / (n + 1)} for n in range(150)]
    return {
        "keys": {
            "privacy": key("privacy", "privacy:write"),
            "serving": key("serving", "serving:read"),
            "client": key("client", "serving:read"),
            "overrides": key("overrides", "overrides:write"),
        },
        "blocked": blocked,
        "candidates": candidates,
        "customers": [f"faults-customer-{number:05d}" for number in range(count)],
    }


def verify_deletions(customers, downstreams) -> dict:
    """Every request completed; every delivery acknowledged once and processed."""
    from django.db.models import Count

    from opsconsole.customer_ids import hash_customer_id
    from privacy.models import (
        DeletionRequest,
        DeliveryStatus,
        DownstreamDelivery,
        EventKind,
        EvidenceEvent,
        RequestStatus,
    )

    hashes = {hash_customer_id(customer) for customer in customers}
    requests = DeletionRequest.objects.filter(customer_hash__in=hashes)
    per_customer = Counter(requests.values_list("customer_hash", flat=True))
    completed = requests.filter(status=RequestStatus.COMPLETED).count()
    deliveries = list(
        DownstreamDelivery.objects.filter(request__in=requests).values_list(
            "idempotency_key", "downstream__url", "status"
        )
    )
    acks = Counter(
        dict(
            EvidenceEvent.objects.filter(
                request__in=requests, kind=EventKind.DOWNSTREAM_ACKNOWLEDGED
            )
            .values_list("detail__idempotency_key")
            .annotate(n=Count("id"))
            .values_list("detail__idempotency_key", "n")
        )
    )
    by_url = {downstream.url: downstream for downstream in downstreams}
    not_acknowledged = [
        k for k, _u, s in deliveries if s != DeliveryStatus.ACKNOWLEDGED
    ]
    not_processed = [k for k, url, _s in deliveries if k not in by_url[url].processed]
    known = {k for k, _u, _s in deliveries}
    unknown_processed = sum(
        1 for d in downstreams for key in d.processed if key not in known
    )
    return {
        "customers": len(customers),
        "requests_in_database": len(per_customer),
        "customers_with_two_requests": sum(1 for n in per_customer.values() if n > 1),
        "completed": completed,
        "requests_not_completed": len(customers) - completed,
        "deliveries": len(deliveries),
        "deliveries_expected": len(customers) * len(downstreams),
        "deliveries_not_acknowledged": len(not_acknowledged),
        "acknowledgements_not_exactly_once": sum(
            1 for key in known if acks.get(key, 0) != 1
        ),
        "deliveries_not_processed_downstream": len(not_processed),
        "processed_downstream_unknown_to_console": unknown_processed,
        "downstream_calls": sum(sum(d.calls.values()) for d in downstreams),
        "downstream_repeat_calls": sum(
            n - 1 for d in downstreams for n in d.calls.values()
        ),
        "keys_with_differing_bodies": sum(
            1 for d in downstreams for bodies in d.bodies.values() if len(bodies) > 1
        ),
        "bad_signatures": sum(d.bad_signatures for d in downstreams),
    }


def verify_overrides(writer: OverrideWriter, client) -> dict:
    """Every accepted block in the database, in the change feed and in the client."""
    from overrides.models import Block, OverrideChange

    accepted = set(writer.accepted)
    in_database = set(
        Block.objects.filter(
            item_id__in=accepted, withdrawn_at__isnull=True
        ).values_list("item_id", flat=True)
    )
    in_feed = set(
        OverrideChange.objects.filter(action="block")
        .filter(rule__item_id__in=sorted(accepted))
        .values_list("rule__item_id", flat=True)
    )
    client.refresh()
    in_client = {item for item in accepted if client.is_blocked(item)}
    unanswered_committed = Block.objects.filter(item_id__in=writer.unanswered).count()
    return {
        "sent": writer.counts["sent"],
        "accepted": len(accepted),
        "missing_in_database": len(accepted - in_database),
        "missing_in_change_feed": len(accepted - in_feed),
        "missing_in_client": len(accepted - in_client),
        "unanswered": len(writer.unanswered),
        "unanswered_but_committed": unanswered_committed,
        "answers": dict(writer.counts),
    }


def wait_for_completion(customers, timeout: float, log) -> float:
    from django.db import close_old_connections

    from opsconsole.customer_ids import hash_customer_id
    from privacy.models import DeletionRequest, RequestStatus

    hashes = {hash_customer_id(customer) for customer in customers}
    started = time.monotonic()
    done = -1
    while time.monotonic() - started < timeout:
        close_old_connections()
        try:
            done = DeletionRequest.objects.filter(
                customer_hash__in=hashes, status=RequestStatus.COMPLETED
            ).count()
        except Exception as error:  # the database may still be recovering
            log(f"   (database not answering yet: {error!r})")
            time.sleep(1)
            continue
        if done >= len(customers):
            break
        time.sleep(1)
    log(
        f"   {done}/{len(customers)} completed after {time.monotonic() - started:.0f} s"
    )
    return time.monotonic() - started


def run(
    *,
    count: int,
    scale: float,
    only: str | None = None,
    downstream_delay: float = 0.0,
    fault_when_open: int = 0,
    log=print,
) -> dict:
    from opsconsole_client import OverridesClient

    started_at = datetime.now(UTC)
    stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
    run_started = time.monotonic()
    results: dict = {
        "benchmark": "faults",
        "started_at": started_at.isoformat().replace("+00:00", "Z"),
        "machine": common.machine_info(),
        "git": common.git_commit(),
        "deletion_requests": count,
    }
    with ExitStack() as exits:
        directory = Path(exits.enter_context(tempfile.TemporaryDirectory()))
        logs = common.RESULTS_DIR / f"faults-{stamp}-logs"
        exits.callback(keep_logs, directory, logs)
        results["logs"] = str(logs.relative_to(common.ROOT))
        postgres, redis = PrivatePostgres(directory), PrivateRedis(directory)
        stack = Stack(directory=directory, postgres=postgres, redis=redis, env={})
        exits.callback(stack.stop_all)
        log(f"== private PostgreSQL (port {postgres.port}), Redis (port {redis.port})")
        postgres.init()
        postgres.start()
        postgres.create_database("opsconsole")
        redis.start()
        stack.env = configure(postgres, redis)
        downstreams = [
            RecordingDownstream(f"faults-downstream-secret-{n}", delay=downstream_delay)
            for n in range(DOWNSTREAMS)
        ]
        for downstream in downstreams:
            exits.callback(downstream.close)
        prepared = prepare(count, downstreams)
        from django.db import connections

        connections.close_all()

        stack.port = common.free_port()
        stack.start_console()
        for number in range(WORKERS):
            stack.start_worker(number)
        stack.start_beat()
        log(
            f"== console on {stack.base_url} (gunicorn, 2 workers), {WORKERS} Celery "
            f"workers, beat, {DOWNSTREAMS} downstreams"
        )
        keys = prepared["keys"]
        client = OverridesClient(
            stack.base_url,
            keys["client"],
            surface=SURFACE,
            region=REGION,
            snapshot_path=directory / "client-snapshot.json",
            redis_url=redis.url,
            channel=stack.env["OVERRIDES_CHANNEL"],
            poll_interval=0.5,
            refresh_interval=10.0,
            heartbeat_interval=5.0,
            timeout=1.0,
        )
        exits.callback(client.close)
        if client.version is None:
            raise common.BenchmarkError("the client could not load its first snapshot")

        activities = {
            "intake": Intake(
                stack.base_url,
                keys["privacy"],
                prepared["customers"],
                seconds=60 * scale,
            ),
            "rank": RankLoad(
                stack.base_url,
                keys["serving"],
                {
                    "surface": SURFACE,
                    "region": REGION,
                    "candidates": prepared["candidates"],
                },
                prepared["blocked"],
            ),
            "writer": OverrideWriter(stack.base_url, keys["overrides"], f"w-{stamp}"),
            "client": ClientAnswers(
                client,
                prepared["candidates"],
                prepared["blocked"],
                opted_out="opted-out-customer",
                other="never-opted-out-customer",
            ),
        }
        for activity in activities.values():
            exits.callback(activity.stop)
            activity.start()

        log("== load running; faults, one at a time:")
        load_started = time.monotonic()
        injected = []
        schedule = [
            (at, name, inject)
            for at, name, inject in fault_schedule(stack, scale)
            if only is None or FAULT_KINDS[only] in name
        ]
        for at, name, inject in schedule:
            time.sleep(max(0.0, load_started + at - time.monotonic()))
            open_before = wait_for_open_requests(fault_when_open, log)
            completed_before = deletion_count(completed=True)
            began = time.monotonic()
            inject()
            injected.append(
                {
                    "at_s": round(began - load_started, 1),
                    "fault": name,
                    "took_s": round(time.monotonic() - began, 1),
                    "deletions_completed_before": completed_before,
                    "deletions_open_before": open_before,
                }
            )
            log(
                f"   {injected[-1]['at_s']:5.1f} s  {name} ({injected[-1]['took_s']} s)"
            )
        time.sleep(max(0.0, load_started + 90 * scale - time.monotonic()))
        for name in ("writer", "rank"):
            activities[name].stop()
        log("== waiting for the intake to finish and every request to complete")
        activities["intake"].join(timeout=COMPLETION_TIMEOUT_SECONDS)
        activities["intake"].stop()
        completion_s = wait_for_completion(
            prepared["customers"], COMPLETION_TIMEOUT_SECONDS, log
        )
        activities["client"].stop()
        results["faults"] = injected
        results["completion_after_load_s"] = completion_s
        log("== verifying")
        results["deletions"] = verify_deletions(prepared["customers"], downstreams)
        results["overrides"] = verify_overrides(activities["writer"], client)
        results["client"] = activities["client"].report(
            versions_seen=len(activities["client"].versions)
        )
        results["rank_load"] = activities["rank"].report()
        results["intake"] = dict(activities["intake"].counts)
        results["outage_windows_s"] = {
            name: activities[name].outage_windows(load_started)
            for name in ("rank", "writer", "intake")
        }
    results["summary"] = summarise(results)
    results["duration_s"] = time.monotonic() - run_started
    return results


def keep_logs(directory: Path, target: Path) -> None:
    """Every process's log, kept next to the results (the temporary dir goes)."""
    target.mkdir(parents=True, exist_ok=True)
    for path in directory.glob("*.log"):
        shutil.copy(path, target / path.name)


def deletion_count(*, completed: bool) -> int | None:
    """Deletion requests completed, or filed and not yet completed (deliveries still
    to make); None while the database is down or recovering."""
    from django.db import close_old_connections

    from privacy.models import DeletionRequest, RequestStatus

    close_old_connections()
    requests = DeletionRequest.objects.all()
    of_status = requests.filter if completed else requests.exclude
    try:
        return of_status(status=RequestStatus.COMPLETED).count()
    except Exception:  # the database is down or recovering: no figure
        return None


def wait_for_open_requests(at_least: int, log) -> int | None:
    """With `at_least`, hold a fault until that many requests are still open, so it
    surely strikes mid-deletion however fast the machine is (the scheduled time
    alone does not promise it); a backlog that never builds stops the run."""
    if not at_least:
        return deletion_count(completed=False)
    deadline = time.monotonic() + 120
    while (count := deletion_count(completed=False) or 0) < at_least:
        if time.monotonic() > deadline:
            raise common.BenchmarkError(
                f"never {at_least} deletion requests open at once (at most {count}): "
                "slow the downstreams (--downstream-delay)"
            )
        time.sleep(0.1)
    log(f"   {count} deletion requests open")
    return count


def summarise(results: dict) -> dict:
    deletions, overrides = results["deletions"], results["overrides"]
    lost = {
        "deletion requests not completed": deletions["requests_not_completed"],
        "deliveries missing": deletions["deliveries_expected"]
        - deletions["deliveries"],
        "deliveries not acknowledged": deletions["deliveries_not_acknowledged"],
        "acknowledgements not exactly once": deletions[
            "acknowledgements_not_exactly_once"
        ],
        "deliveries not processed downstream": deletions[
            "deliveries_not_processed_downstream"
        ],
        "accepted blocks missing in the database": overrides["missing_in_database"],
        "accepted blocks missing in the change feed": overrides[
            "missing_in_change_feed"
        ],
        "accepted blocks missing in the client": overrides["missing_in_client"],
    }
    client = results["client"]
    names = [fault["fault"] for fault in results["faults"]]
    return {
        "requests": {
            "deletion requests": deletions["customers"],
            "downstream calls": deletions["downstream_calls"],
            "rank over HTTP": results["rank_load"].get("requests", 0),
            "block writes": overrides["sent"],
            "client answers": client.get("answers", 0),
        },
        "kills": sum(1 for name in names if name in KILLS),
        "restarts": len(names),
        "lost": sum(lost.values()),
        "lost_by_kind": lost,
        "client_errors": client.get("errors", 0),
        "client_wrong_answers": client.get("failures", 0),
        "integrity": {
            "customers with two requests": deletions["customers_with_two_requests"],
            "keys with differing bodies": deletions["keys_with_differing_bodies"],
            "bad signatures": deletions["bad_signatures"],
            "processed downstream, unknown to the console": deletions[
                "processed_downstream_unknown_to_console"
            ],
        },
    }


def passed(summary: dict) -> bool:
    return (
        summary["lost"] == 0
        and summary["client_errors"] == 0
        and summary["client_wrong_answers"] == 0
        and not any(summary["integrity"].values())
    )


def summary_rows(results: dict) -> list[tuple[str, str, str, str]]:
    summary = results["summary"]
    rows = [
        (f"requests: {name}", f"{value:,}", "", "")
        for name, value in summary["requests"].items()
    ]
    rows.append(("kills (SIGKILL)", str(summary["kills"]), "", ""))
    rows.append(("restarts (kills included)", str(summary["restarts"]), "", ""))
    for name, value in summary["lost_by_kind"].items():
        rows.append((f"lost: {name}", str(value), "0", "PASS" if not value else "FAIL"))
    rows.append(
        ("LOST", str(summary["lost"]), "0", "PASS" if not summary["lost"] else "FAIL")
    )
    for name, value in summary["integrity"].items():
        rows.append((name, str(value), "0", "PASS" if not value else "FAIL"))
    client = results["client"]
    for name, value, target in (
        ("client errors", summary["client_errors"], "0"),
        (
            "client wrong answers (blocked shown...)",
            summary["client_wrong_answers"],
            "0",
        ),
    ):
        rows.append((name, str(value), target, "PASS" if not value else "FAIL"))
    rows.append(
        (
            "client: opt-out checks failed closed",
            str(client.get("opt-out check failed closed", 0)),
            "",
            "",
        )
    )
    rank = results["rank_load"]
    rows.append(
        (
            "rank over HTTP: ok / not ok (faults)",
            f"{rank.get('ok', 0):,} / {rank.get('requests', 0) - rank.get('ok', 0):,}",
            "",
            "",
        )
    )
    overrides = results["overrides"]
    rows.append(
        (
            "block writes: accepted / unanswered (committed)",
            f"{overrides['accepted']} / {overrides['unanswered']} "
            f"({overrides['unanswered_but_committed']})",
            "",
            "",
        )
    )
    rows.append(
        (
            "completion after the load stopped",
            f"{results['completion_after_load_s']:.0f} s",
            "",
            "",
        )
    )
    return rows


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="Multiply the gaps between faults (0.5: twice as fast; try-outs).",
    )
    parser.add_argument(
        "--only",
        choices=sorted(FAULT_KINDS),
        help="Inject only this kind of fault (the test suite restarts PostgreSQL).",
    )
    parser.add_argument(
        "--downstream-delay",
        type=float,
        default=0.0,
        help="Seconds each downstream takes per call (default 0).",
    )
    parser.add_argument(
        "--fault-when-open",
        type=int,
        default=0,
        metavar="N",
        help="Hold each fault until N deletion requests are open (default: no wait).",
    )
    parser.add_argument(
        "--output", type=Path, help="Write the JSON here instead of results/."
    )
    arguments = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        results = run(
            count=arguments.requests,
            scale=arguments.scale,
            only=arguments.only,
            downstream_delay=arguments.downstream_delay,
            fault_when_open=arguments.fault_when_open,
        )
    except common.BenchmarkError as error:
        print(f"FAULT INJECTION COULD NOT RUN: {error}", file=sys.stderr)
        return 2
    stamp = results["started_at"].replace(":", "").replace("-", "")[:15] + "Z"
    path = arguments.output or common.RESULTS_DIR / f"faults-{stamp}.json"
    rows = summary_rows(results)
    common.save_results(results, rows, path)
    print()
    print(common.format_table(rows))
    print()
    for fault in results["faults"]:
        print(
            f"  {fault['at_s']:6.1f} s  {fault['fault']} ({fault['took_s']} s; "
            f"{fault['deletions_completed_before']} deletions completed before)"
        )
    print(
        f"  answers lost to the faults (s after start): {results['outage_windows_s']}"
    )
    ok = passed(results["summary"])
    verdict = "PASS" if ok else "FAIL"
    print(
        f"\n{verdict}: lost {results['summary']['lost']}; raw figures: "
        f"{path} ({results['duration_s']:.0f} s)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
