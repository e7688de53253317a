"""Soak: `rank` and `snapshot` at twice the serving benchmark's throughput, for long.

`.venv/bin/python -m benchmarks.soak` (10 minutes; `--minutes 1` to try it out).
The data are the serving benchmark's (100,000 blocks, 1,000 boosts, 1,000,000
opted-out customers, benchmarks/serving.py loads them) in a database of the soak's
own, `opsconsole_bench_soak` (kept between runs, reloaded only when incomplete), with
a private redis-server (free port, gone afterwards) so its memory is the soak's
alone. gunicorn (2 workers, DEBUG=0), a Celery worker and beat run as deployed.

Two wrk processes drive a constant rate each (benchmarks/lua/paced.lua): `rank`
(1,000 candidates) and the 304 answer of `snapshot` (what a serving layer's refresh
costs), at twice the req/s the serving benchmark sustained. Those figures come from
benchmarks/results/serving-latest.json when it exists, else the soak measures them
first the same way (wrk, 2 connections, as fast as the server goes); the results
say which. Every answer's status is checked by wrk's script; every few seconds the
soak also checks an answer's content (the rank removals and boosts, the snapshot's
blocks and ETag). Memory (RSS) of every gunicorn, Celery and Redis process is taken
after a warm-up and at the end: growth under 10% is a PASS.

Exit code 0 when the soak held (no error, memory within 10%), 1 when it did not,
2 when it could not run. A machine too small for twice the rate is reported as
such, with the rate reached: the goal is never lowered.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import faults
from benchmarks import serving as common

DATABASE_NAME = "opsconsole_bench_soak"
QUEUE = "opsconsole-soak"
RATE_FACTOR = 2.0
MEMORY_GROWTH_LIMIT = 0.10
# A soak "reaches" its rate when it sends at least this share of the requests due.
RATE_REACHED_SHARE = 0.98
CONTENT_CHECK_SECONDS = 5.0
FULL_SNAPSHOT_CHECK_SECONDS = 60.0
MEMORY_SAMPLE_SECONDS = 15.0
SUSTAINED_MEASURE_SECONDS = 10
ENDPOINTS = {
    # name: (path, method, body, expected status, wrk connections)
    "rank": (common.RANK_PATH, "POST", "rank", 200, 4),
    "snapshot_304": (common.SNAPSHOT_PATH, "GET", None, 304, 2),
}


def configure(redis_url: str) -> None:
    """The serving benchmark's environment, with this soak's database and Redis."""
    common.DATABASE_NAME = DATABASE_NAME
    common.REDIS_URL = redis_url
    common.BENCH_ENV.update(
        {
            "DATABASE_URL": common.PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + DATABASE_NAME,
            "REDIS_URL": redis_url,
            "CACHE_KEY_PREFIX": "opsconsole-soak",
            "OVERRIDES_CHANNEL": "opsconsole-soak:overrides",
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "CELERY_QUEUE": QUEUE,
        }
    )
    common.configure_django()


def sustained_rates(server: common.LiveServer, etag: str, log) -> dict:
    """req/s the serving benchmark sustained for rank and the snapshot 304."""
    latest = common.RESULTS_DIR / "serving-latest.json"
    if latest.exists():
        try:
            results = json.loads(latest.read_text())
            return {
                "source": str(latest.relative_to(common.ROOT)),
                "measured_at": results.get("started_at"),
                "commit": results.get("git", {}).get("commit"),
                "rank": results["rest_rank"]["rank"]["requests_per_second"],
                "snapshot_304": results["snapshot_304"]["requests_per_second"],
            }
        except (ValueError, KeyError) as error:
            log(f"   {latest.name} unreadable ({error!r}): measuring instead")
    log(
        f"== no serving-latest.json: measuring the sustained rates "
        f"({SUSTAINED_MEASURE_SECONDS} s each, wrk, 2 connections)"
    )
    server.wrk(common.RANK_PATH, body="rank", seconds=3)  # warm both workers
    rank = server.wrk(common.RANK_PATH, body="rank", seconds=SUSTAINED_MEASURE_SECONDS)
    snapshot = server.wrk(
        common.SNAPSHOT_PATH, etag=etag, seconds=SUSTAINED_MEASURE_SECONDS
    )
    return {
        "source": "measured by this soak (serving.py's method, shorter runs)",
        "measured_at": datetime.now(UTC).isoformat(),
        "rank": rank["requests_per_second"],
        "snapshot_304": snapshot["requests_per_second"],
    }


# Paced wrk --------------------------------------------------------------------------


def start_paced_wrk(
    server: common.LiveServer, name: str, *, rate: float, seconds: int, etag: str
) -> subprocess.Popen:
    path, method, body, expect, connections = ENDPOINTS[name]
    env = {
        **os.environ,
        **server.wrk_env,
        "BENCH_RATE": f"{rate:.3f}",
        "BENCH_METHOD": method,
        "BENCH_EXPECT": str(expect),
    }
    if body:
        env["BENCH_BODY_FILE"] = str(server.bodies[body])
    else:
        env["BENCH_ETAG"] = etag
    command = common.wrk_command(
        server.base_url + path,
        script="paced.lua",
        seconds=seconds,
        connections=connections,
        timeout="10s",
    )
    return subprocess.Popen(  # noqa: S603
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish_paced_wrk(process: subprocess.Popen, *, rate: float, seconds: int) -> dict:
    """wrk's figures, the status check of every answer, and the rate reached."""
    try:
        stdout, stderr = process.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        raise common.BenchmarkError("wrk did not stop on time") from None
    if process.returncode != 0:
        raise common.BenchmarkError(f"wrk failed: {stderr or stdout}")
    result = common.parse_wrk(stdout)
    paced = re.search(
        r"Paced: expected (\d+), other (\d+), behind_ms (\d+), first_other (\d+)",
        stdout,
    )
    if not paced:
        raise common.BenchmarkError(f"paced.lua printed no summary:\n{stdout}")
    expected, other, behind_ms, first_other = map(int, paced.groups())
    socket_errors = result["socket_errors"]
    # Read errors are gunicorn's sync workers closing after each answer (serving.py).
    failed = other + socket_errors["connect"] + socket_errors["write"]
    failed += socket_errors["timeout"]
    return {
        **result,
        "target_rps": rate,
        "seconds": seconds,
        "answers_expected_status": expected,
        "answers_other_status": other,
        "first_other_status": first_other or None,
        "errors": failed,
        "error_rate": failed / max(1, result["requests"] + failed - other),
        "behind_ms": behind_ms,
        "reached": result["requests_per_second"] >= RATE_REACHED_SHARE * rate,
        "output": stdout,
    }


# Memory and content checks -----------------------------------------------------------


def our_processes(server, worker, beat, redis) -> dict[str, int]:
    master = server.server.pid
    processes = {"gunicorn master": master}
    for number, pid in enumerate(sorted(common.child_pids(master)), start=1):
        processes[f"gunicorn worker {number}"] = pid
    processes.update(
        {"celery worker": worker.pid, "celery beat": beat.pid, "redis": redis.pid}
    )
    return processes


def memory_sample(processes: dict[str, int]) -> dict[str, int | None]:
    return {name: faults.rss_kib(pid) for name, pid in processes.items()}


class ContentChecker(threading.Thread):
    """While wrk runs: every few seconds one rank answer and one 304 checked, every
    minute the whole snapshot compared with the one taken at the start. Failures are
    counted, not raised: the soak runs to its end and reports them."""

    def __init__(self, server, workload, *, etag: str, document: dict, stop_at: float):
        super().__init__(daemon=True, name="soak-content-checks")
        self.session = common.api_session(server.api_key)
        self.base_url = server.base_url
        self.workload, self.etag = workload, etag
        self.expected_blocked = len(document["blocked"])
        self.expected_version = document["version"]
        self.stop_at = stop_at
        self.stop_event = threading.Event()
        self.checks = {"rank": 0, "snapshot_304": 0, "snapshot_full": 0}
        self.failures: list[str] = []

    def _check(self, name: str, check) -> None:
        try:
            check()
        except Exception as error:  # every failure is a finding
            self.failures.append(f"{datetime.now(UTC).isoformat()} {name}: {error!r}")
        self.checks[name] += 1

    def _rank(self) -> None:
        response = self.session.post(
            self.base_url + common.RANK_PATH, json=self.workload.rank_body, timeout=30
        )
        response.raise_for_status()
        common.check_rank_answer(response.json(), self.workload, personalized=False)

    def _not_modified(self) -> None:
        response = self.session.get(
            self.base_url + common.SNAPSHOT_PATH,
            headers={"If-None-Match": self.etag},
            timeout=30,
        )
        if response.status_code != 304 or response.content:
            raise common.BenchmarkError(f"snapshot answered {response.status_code}")

    def _full_snapshot(self) -> None:
        response = self.session.get(self.base_url + common.SNAPSHOT_PATH, timeout=60)
        response.raise_for_status()
        document = response.json()
        if (
            response.headers.get("ETag") != self.etag
            or document["version"] != self.expected_version
            or len(document["blocked"]) != self.expected_blocked
        ):
            raise common.BenchmarkError(
                f"snapshot changed: version {document['version']}, "
                f"{len(document['blocked'])} blocks, "
                f"ETag {response.headers.get('ETag')}"
            )

    def run(self) -> None:
        next_full = time.monotonic() + FULL_SNAPSHOT_CHECK_SECONDS / 2
        while not self.stop_event.wait(CONTENT_CHECK_SECONDS):
            if time.monotonic() >= self.stop_at:
                return
            self._check("rank", self._rank)
            self._check("snapshot_304", self._not_modified)
            if time.monotonic() >= next_full:
                next_full += FULL_SNAPSHOT_CHECK_SECONDS
                self._check("snapshot_full", self._full_snapshot)


def run_phase(server, rates: dict, *, seconds: int, etag: str) -> dict:
    """Both endpoints at their target rate at once, for `seconds`."""
    processes = {
        name: start_paced_wrk(
            server, name, rate=rates[name], seconds=seconds, etag=etag
        )
        for name in ENDPOINTS
    }
    return {
        name: finish_paced_wrk(process, rate=rates[name], seconds=seconds)
        for name, process in processes.items()
    }


def memory_growth(start: dict, end: dict) -> dict:
    growth = {}
    for name, before in start.items():
        after = end.get(name)
        growth[name] = {
            "start_kib": before,
            "end_kib": after,
            "growth": None if not before or after is None else after / before - 1,
        }
    return growth


# The run ----------------------------------------------------------------------------


def run(*, minutes: float, warmup_seconds: int, reload: bool, log=print) -> dict:
    if shutil.which("wrk") is None:
        raise common.BenchmarkError("wrk is not installed: `make wrk` installs it")
    started_at = datetime.now(UTC)
    stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
    seconds = max(10, round(minutes * 60))
    results: dict = {
        "benchmark": "soak",
        "started_at": started_at.isoformat().replace("+00:00", "Z"),
        "minutes": seconds / 60,
        "warmup_seconds": warmup_seconds,
        "rate_factor": RATE_FACTOR,
        "machine": common.machine_info(),
        "git": common.git_commit(),
    }
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        redis = faults.PrivateRedis(directory)
        redis.start()
        stack.callback(redis.stop)
        configure(redis.url)
        from django.core.management import call_command
        from django.db import connections

        from opsconsole_client.rules import RuleSet
        from overrides import optout_mirror

        scale = common.Scale()
        log(f"== data in {DATABASE_NAME} (the serving benchmark's scale)")
        results["data"] = common.prepare_data(scale, reuse=not reload, log=log)
        if results["data"]["reused"]:
            call_command("migrate", interactive=False, verbosity=0)
        log("== opt-out copy into the private Redis")
        results["data"]["optout_mirror_rows"] = optout_mirror.rebuild()
        results["software"] = common.software_versions()
        api_key = common.create_api_key("soak")
        _figures, document = common.measure_snapshot_build(repeat=1)
        workload = common.build_workload(
            RuleSet.from_document(document),
            candidates=scale.candidates,
            optout_check_ids=scale.optout_check_ids,
            optout_customers=scale.optouts,
        )
        connections.close_all()

        server = stack.enter_context(
            common.LiveServer(
                api_key=api_key, scale=scale, workload=workload, stamp=f"soak-{stamp}"
            )
        )
        env = {**common.BENCH_ENV}
        worker = faults.start_celery(
            "worker", directory / "worker.log", env, queue=QUEUE
        )
        stack.callback(common.stop_server, worker)
        beat = faults.start_celery("beat", directory / "beat.log", env, queue=QUEUE)
        stack.callback(common.stop_server, beat)
        log(f"== gunicorn (2 workers) on {server.base_url}, Celery worker and beat")

        _, response = server.request("GET", common.SNAPSHOT_PATH)
        etag = response.headers["ETag"]
        _, rank = server.request("POST", common.RANK_PATH, json=workload.rank_body)
        common.check_rank_answer(rank.json(), workload, personalized=False)
        sustained = sustained_rates(server, etag, log)
        results["sustained"] = sustained
        rates = {name: RATE_FACTOR * sustained[name] for name in ENDPOINTS}
        results["target_rps"] = rates
        log(
            "== targets: "
            + ", ".join(
                f"{name} {rates[name]:.0f} req/s (2 x {sustained[name]:.0f})"
                for name in ENDPOINTS
            )
            + f"; sustained rates from {sustained['source']}"
        )

        processes = our_processes(server, worker, beat, redis)
        results["processes"] = processes
        results["memory_before_warmup_kib"] = memory_sample(processes)
        log(f"== warm-up, {warmup_seconds} s at the target rates")
        results["warmup"] = run_phase(server, rates, seconds=warmup_seconds, etag=etag)
        start_memory = memory_sample(processes)

        log(f"== soak, {seconds / 60:g} minutes at the target rates")
        checker = ContentChecker(
            server,
            workload,
            etag=etag,
            document=document,
            stop_at=time.monotonic() + seconds,
        )
        del document
        samples = []
        with common.OtherLoad(
            lambda: [*server.pids(), worker.pid, beat.pid, redis.pid]
        ) as other_load:
            wrks = {
                name: start_paced_wrk(
                    server, name, rate=rates[name], seconds=seconds, etag=etag
                )
                for name in ENDPOINTS
            }
            checker.start()
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                time.sleep(
                    min(MEMORY_SAMPLE_SECONDS, max(0, deadline - time.monotonic()))
                )
                sample = memory_sample(processes)
                samples.append(
                    {"t_s": seconds - (deadline - time.monotonic()), **sample}
                )
                log(
                    f"   {samples[-1]['t_s']:5.0f} s  RSS MiB: "
                    + ", ".join(
                        f"{name} {kib / 1024:.0f}" if kib else f"{name} gone"
                        for name, kib in sample.items()
                    )
                )
            soak = {
                name: finish_paced_wrk(process, rate=rates[name], seconds=seconds)
                for name, process in wrks.items()
            }
            checker.stop_event.set()
            checker.join(timeout=60)
        end_memory = memory_sample(processes)
        results["soak"] = soak
        results["other_cpu_share"] = other_load.share
        results["memory_samples_kib"] = samples
        results["memory"] = memory_growth(start_memory, end_memory)
        results["content_checks"] = {
            "checks": checker.checks,
            "failures": checker.failures,
        }
        results["server_log"] = str(server.log_path.relative_to(common.ROOT))
    results["verdict"] = verdicts(results)
    rows = summary_rows(results)
    path = common.RESULTS_DIR / f"soak-{stamp}.json"
    common.save_results(results, rows, path)
    report(results, rows, path, log)
    return results


def verdicts(results: dict) -> dict:
    errors = sum(run["errors"] for run in results["soak"].values())
    errors += len(results["content_checks"]["failures"])
    growths = [
        entry["growth"]
        for entry in results["memory"].values()
        if entry["growth"] is not None
    ]
    gone = [
        name for name, entry in results["memory"].items() if entry["end_kib"] is None
    ]
    return {
        "errors": errors,
        "errors_pass": errors == 0,
        "memory_pass": not gone and max(growths, default=0) < MEMORY_GROWTH_LIMIT,
        "processes_gone": gone,
        "rate_reached": all(run["reached"] for run in results["soak"].values()),
    }


def summary_rows(results: dict) -> list[tuple[str, str, str, str]]:
    rows = []
    for name, run in results["soak"].items():
        sent, target = run["requests_per_second"], run["target_rps"]
        rows.append(
            (
                f"{name}: req/s sent",
                f"{sent:.0f} of {target:.0f} ({sent / target:.0%})",
                f"2 x {results['sustained'][name]:.0f}",
                "reached" if run["reached"] else "NOT REACHED",
            )
        )
        rows.append(
            (
                f"{name}: errors / requests",
                f"{run['errors']} / {run['requests']:,}",
                "0",
                "PASS" if run["errors"] == 0 else "FAIL",
            )
        )
        rows.append(
            (
                f"{name}: p50 / p90 / p99",
                f"{run['p50_ms']:.2f} / {run['p90_ms']:.2f} / {run['p99_ms']:.2f} ms",
                "report",
                "",
            )
        )
    checks = results["content_checks"]
    rows.append(
        (
            "content checks (rank, 304, full snapshot)",
            f"{sum(checks['checks'].values())} checks, "
            f"{len(checks['failures'])} failed",
            "0 failed",
            "PASS" if not checks["failures"] else "FAIL",
        )
    )
    for name, entry in results["memory"].items():
        growth = entry["growth"]
        start, end = entry["start_kib"], entry["end_kib"]
        rows.append(
            (
                f"RSS {name}",
                (
                    f"{start / 1024:.1f} -> {end / 1024:.1f} MiB ({growth:+.1%})"
                    if growth is not None
                    else f"{start} -> {end} (exited)"
                ),
                f"< +{MEMORY_GROWTH_LIMIT:.0%}",
                "PASS"
                if growth is not None and growth < MEMORY_GROWTH_LIMIT
                else "MISS",
            )
        )
    return rows


def report(results: dict, rows, path: Path, log) -> None:
    machine = results["machine"]
    log("")
    log(common.machine_line(results))
    share = results["other_cpu_share"]
    if share is not None:
        log(f"Other processes used {share:.0%} of the CPUs during the soak.")
    log(f"Sustained rates from {results['sustained']['source']}.")
    log("")
    log(common.format_table(rows))
    log("")
    verdict = results["verdict"]
    if not verdict["rate_reached"]:
        log(
            f"RATE NOT REACHED: this machine ({machine['nproc']} CPUs shared by wrk, "
            "gunicorn, PostgreSQL, Redis and Celery) could not send twice the "
            "sustained rate; the figures above are at the rate actually reached."
        )
    log(f"Errors: {'PASS' if verdict['errors_pass'] else 'FAIL'} ({verdict['errors']})")
    log(f"Memory growth after warm-up: {'PASS' if verdict['memory_pass'] else 'MISS'}")
    log(f"Raw figures: {path.relative_to(common.ROOT)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument(
        "--warmup-seconds",
        type=int,
        default=None,
        help="Before the memory is first taken (default: 60 s, 20%% of short runs).",
    )
    parser.add_argument(
        "--reload",
        action="store_true",
        help=f"Drop and reload {DATABASE_NAME} even when its data are complete.",
    )
    arguments = parser.parse_args(argv)
    warmup = arguments.warmup_seconds
    if warmup is None:
        warmup = max(5, min(60, round(arguments.minutes * 60 * 0.2)))
    try:
        results = run(
            minutes=arguments.minutes, warmup_seconds=warmup, reload=arguments.reload
        )
    except common.BenchmarkError as error:
        print(f"SOAK FAILED TO RUN: {error}", file=sys.stderr)
        return 2
    verdict = results["verdict"]
    return 0 if verdict["errors_pass"] and verdict["memory_pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
