"""Privacy benchmark: deletion-request intake, its effect on serving, and completion.

One run (`.venv/bin/python -m benchmarks.privacy`, also part of `make benchmarks`),
on its own PostgreSQL database (`opsconsole_bench_privacy`) and Redis db 9, with the
console under gunicorn (2 workers, DEBUG=0), real Celery workers and three local
HTTP downstreams:

- intake: deletion requests accepted per second over HTTP (2 connections);
- intake -> serving: time from sending a deletion request to `rank` answering
  `personalized: false` for that customer (target under 1 s);
- completion: 1,000 requests with 3 downstreams (3,000 signed webhook calls) carried
  out by 2 Celery workers (one per core): time until every request is completed.

It prints a table and writes the raw figures to benchmarks/results/privacy-*.json.
Exit code 0 when the run completed (targets met or not), 2 when it could not run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from benchmarks import serving as common

DATABASE_NAME = "opsconsole_bench_privacy"
REDIS_URL = "redis://127.0.0.1:6379/9"
ENV = {
    "DATABASE_URL": common.PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + DATABASE_NAME,
    "REDIS_URL": REDIS_URL,
    "CACHE_KEY_PREFIX": "opsconsole-bench-privacy",
    "OVERRIDES_CHANNEL": "opsconsole-bench-privacy:overrides",
    "CELERY_TASK_ALWAYS_EAGER": "0",
    "CELERY_QUEUE": "opsconsole-bench-privacy",
}
TARGET_PERSONALIZED_OFF_MS = 1000.0


class Downstream:
    """A local system that acknowledges every deletion (200) and counts keys."""

    def __init__(self):
        self.keys: set[str] = set()
        self.calls = 0
        lock = threading.Lock()
        downstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    downstream.calls += 1
                    downstream.keys.add(self.headers["Idempotency-Key"])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/delete"


def configure() -> None:
    common.BENCH_ENV.update(ENV)
    os.environ.update(common.BENCH_ENV)
    import django

    django.setup()


def recreate_database() -> None:
    import psycopg
    import redis

    with psycopg.connect(common.PG_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {DATABASE_NAME} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {DATABASE_NAME}")
    redis.Redis.from_url(REDIS_URL).flushdb()


def start_worker(log_path: Path) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "opsconsole",
        "worker",
        "--pool=solo",
        "-Q",
        ENV["CELERY_QUEUE"],
        "--loglevel=WARNING",
        "--without-heartbeat",
        "--without-gossip",
        "--without-mingle",
    ]
    with open(log_path, "w") as log_file:
        return subprocess.Popen(  # noqa: S603
            command,
            cwd=common.ROOT,
            env={**os.environ, **common.BENCH_ENV},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


def measure_intake(base_url: str, keys: dict, *, count: int, probes: int) -> dict:
    """File `count` requests; for the first `probes`, time intake -> rank says so."""
    import requests

    session = requests.Session()
    privacy_headers = {"Authorization": f"Bearer {keys['privacy']}"}
    serving_headers = {"Authorization": f"Bearer {keys['serving']}"}
    candidates = [{"item_id": f"item-{n}", "score": 1.0 / (n + 1)} for n in range(100)]
    to_off_ms = []
    for number in range(probes):
        customer = f"bench-customer-{number:05d}"
        started = time.perf_counter()
        accepted = session.post(
            f"{base_url}/api/v1/privacy/deletion-requests",
            json={"customer_id": customer, "source": "bench"},
            headers=privacy_headers,
        )
        if accepted.status_code != 202:
            raise common.BenchmarkError(f"intake answered {accepted.status_code}")
        while True:
            answer = session.post(
                f"{base_url}/api/v1/serving/rank",
                json={"customer_id": customer, "candidates": candidates},
                headers=serving_headers,
            ).json()
            if answer["personalized"] is False:
                break
            if time.perf_counter() - started > 10:
                raise common.BenchmarkError("rank never stopped personalising")
        to_off_ms.append((time.perf_counter() - started) * 1000)

    def file_one(number: int) -> int:
        return local.session.post(
            f"{base_url}/api/v1/privacy/deletion-requests",
            json={"customer_id": f"bench-customer-{number:05d}", "source": "bench"},
            headers=privacy_headers,
        ).status_code

    local = threading.local()

    def with_session(number: int) -> int:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return file_one(number)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        codes = list(pool.map(with_session, range(probes, count)))
    elapsed = time.perf_counter() - started
    if set(codes) != {202}:
        raise common.BenchmarkError(f"intake answered {sorted(set(codes))}")
    return {
        "requests": count,
        "throughput_rps": (count - probes) / elapsed,
        "personalized_off_ms": {
            "probes": probes,
            "median": statistics.median(to_off_ms),
            "p99": common.percentile(to_off_ms, 0.99),
            "max": max(to_off_ms),
        },
    }


def measure_completion(count: int, workers: int, log_dir: Path, log) -> dict:
    from privacy.models import DeletionRequest, RequestStatus

    started = time.perf_counter()
    processes = [start_worker(log_dir / f"worker-{n}.log") for n in range(workers)]
    try:
        deadline = started + 900
        while True:
            done = DeletionRequest.objects.filter(
                status=RequestStatus.COMPLETED
            ).count()
            if done == count:
                break
            if time.perf_counter() > deadline:
                raise common.BenchmarkError(f"only {done}/{count} completed in 900 s")
            if any(process.poll() is not None for process in processes):
                raise common.BenchmarkError("a Celery worker exited")
            time.sleep(0.25)
        elapsed = time.perf_counter() - started
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
    log(f"  {count} requests completed in {elapsed:.1f} s")
    return {"requests": count, "workers": workers, "seconds": elapsed}


def run(*, count: int, probes: int, log=print) -> dict:
    from django.core.management import call_command
    from django.db import connections

    from opsconsole.services import api_key_create
    from privacy import services

    started = time.monotonic()
    log(f"preparing {DATABASE_NAME} and Redis db 9")
    connections.close_all()
    recreate_database()
    call_command("migrate", verbosity=0)
    downstreams = [Downstream() for _ in range(3)]
    for number, downstream in enumerate(downstreams):
        services.downstream_create(
            name=f"downstream-{number}",
            url=downstream.url,
            secret=f"benchmark-downstream-secret-{number}",
        )
    keys = {
        "privacy": api_key_create(name="bench-privacy", scopes=["privacy:write"])[1],
        "serving": api_key_create(name="bench-serving", scopes=["serving:read"])[1],
    }
    results_dir = common.RESULTS_DIR
    results_dir.mkdir(exist_ok=True)
    port = common.free_port()
    server = common.start_server(port, results_dir / "privacy-gunicorn.log")
    try:
        log(f"filing {count} deletion requests over HTTP (no worker running yet)")
        intake = measure_intake(
            f"http://127.0.0.1:{port}", keys, count=count, probes=probes
        )
    finally:
        common.stop_server(server)
    log("carrying them out with 2 Celery workers and 3 downstreams")
    completion = measure_completion(count, 2, results_dir, log)
    acknowledged = [len(downstream.keys) for downstream in downstreams]
    if acknowledged != [count] * 3:
        raise common.BenchmarkError(f"downstreams acknowledged {acknowledged}")
    completion["downstream_calls"] = sum(d.calls for d in downstreams)
    completion["deliveries_per_second"] = 3 * count / completion["seconds"]
    return {
        "benchmark": "privacy",
        "at": datetime.now(UTC).isoformat(),
        "machine": common.machine_info(),
        "git": common.git_commit(),
        "intake": intake,
        "completion": completion,
        "duration_s": time.monotonic() - started,
    }


def summary_rows(results: dict) -> list[tuple[str, str, str, str]]:
    intake, completion = results["intake"], results["completion"]
    off = intake["personalized_off_ms"]
    verdict = "ok" if off["p99"] < TARGET_PERSONALIZED_OFF_MS else "MISS"
    return [
        ("intake throughput", f"{intake['throughput_rps']:.0f} req/s", "report", ""),
        (
            "intake -> personalized:false (median)",
            f"{off['median']:.1f} ms",
            "< 1000 ms",
            "ok" if off["median"] < TARGET_PERSONALIZED_OFF_MS else "MISS",
        ),
        (
            "intake -> personalized:false (p99)",
            f"{off['p99']:.1f} ms",
            "< 1000 ms",
            verdict,
        ),
        (
            f"complete {completion['requests']:,} requests, 3 downstreams",
            f"{completion['seconds']:.1f} s",
            "report",
            "",
        ),
        (
            "downstream deliveries",
            f"{completion['deliveries_per_second']:.0f} /s",
            "report",
            "",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--probes", type=int, default=100)
    arguments = parser.parse_args(argv)
    configure()
    try:
        results = run(count=arguments.requests, probes=arguments.probes)
    except common.BenchmarkError as error:
        print(f"BENCHMARK FAILED: {error}", file=sys.stderr)
        return 2
    rows = summary_rows(results)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    common.save_results(
        results,
        rows,
        common.RESULTS_DIR / f"privacy-{stamp}.json",
        latest=common.RESULTS_DIR / "privacy-latest.json",
    )
    print()
    print(common.machine_line(results))
    print(common.format_table(rows))
    print(f"Raw figures: benchmarks/results/privacy-{stamp}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
