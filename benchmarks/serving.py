"""Serving read path benchmark: one run, one command (`make benchmarks`).

Loads 100,000 blocks, 1,000 boosts and 1,000,000 opted-out customers into its own
PostgreSQL database (`opsconsole_bench`, Redis db 11), serves the console with
gunicorn (2 workers) and measures, in the same run:

- REST `rank` (1,000 candidates) against a baseline DRF view in the same server
  (benchmarks/baseline.py), with wrk at 2 connections, interleaved;
- client-local `rank` (RuleSet) against the plain-Python floor;
- change propagation: commit of a write service -> the Python client has it;
- `optouts/check` with 1,000 ids;
- the snapshot of all 100,000 blocks: build time, size, first GET, 304 latency.

It prints a table and writes every raw figure to benchmarks/results/. The exit code
is 0 when the run completed, targets met or not; non-zero only when the benchmark
itself failed (an endpoint answered errors, a tool was missing, a timeout).

The data setup and measurement functions use Django as the caller configured it, so
tests/test_benchmarks_smoke.py runs them at a tiny scale on the test database.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
LUA_DIR = BENCH_DIR / "lua"

PG_ADMIN_URL = os.environ.get(
    "BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DATABASE_NAME = "opsconsole_bench"
REDIS_URL = "redis://127.0.0.1:6379/11"

# The environment of this process and of gunicorn: production-like (DEBUG=0), its
# own database, Redis db and pub/sub channel (channels are not per-db in Redis), and
# a rate limit no benchmark reaches.
BENCH_ENV = {
    "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
    "DEBUG": "0",
    "SECRET_KEY": "benchmark-only-secret-key-not-used-anywhere-else-0123456789",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "SECURE_SSL_REDIRECT": "0",
    "CUSTOMER_ID_HMAC_KEY": "benchmark-only-customer-id-hmac-key",
    "CUSTOMER_ID_ENCRYPTION_KEY": "0b" * 32,  # benchmark only: 64 hex digits
    "DATABASE_URL": PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + DATABASE_NAME,
    "REDIS_URL": REDIS_URL,
    "CACHE_KEY_PREFIX": "opsconsole-bench",
    "OVERRIDES_CHANNEL": "opsconsole-bench:overrides",
    "API_KEY_RATE_LIMIT_PER_MINUTE": "1000000000",
    "CELERY_TASK_ALWAYS_EAGER": "1",
    "LOG_LEVEL": "WARNING",
}

SURFACES = ["home", "search", "email", "product_page", None]
REGIONS = ["SA", "SG", "AE", "GB", "DE", "US", None]
SCOPE_SURFACE = "home"
SCOPE_REGION = "SG"
BENCH_USERNAME = "benchmark"

RANK_PATH = "/api/v1/serving/rank"
BASELINE_PATH = "/api/v1/_bench/baseline"
OPTOUTS_PATH = "/api/v1/serving/optouts/check"
SNAPSHOT_PATH = "/api/v1/serving/snapshot"
HEALTH_PATH = "/healthz"


class BenchmarkError(Exception):
    """The benchmark could not measure (not: a target was missed)."""


@dataclass(frozen=True)
class Scale:
    """How much data, and how long each measurement runs; the defaults are the
    issue's."""

    blocks: int = 100_000
    boosts: int = 1_000
    optouts: int = 1_000_000
    candidates: int = 1_000
    optout_check_ids: int = 1_000
    wrk_seconds: int = 15
    wrk_warmup_seconds: int = 4
    wrk_connections: int = 2
    interleaved_rounds: int = 2
    local_rounds: int = 30
    local_number: int = 200
    propagation_changes: int = 100
    changes_after_rank: int = 5


# The targets: (comparison, limit, unit).
TARGETS = {
    "rank_rps_ratio": (">=", 0.8, "x baseline"),
    "rank_p99_ms": ("<", 10.0, "ms"),
    "local_rank_ratio": ("<=", 3.0, "x floor"),
    "propagation_median_ms": ("<", 250.0, "ms"),
    "propagation_p99_ms": ("<", 1000.0, "ms"),
    "optouts_p99_ms": ("<", 10.0, "ms"),
    "snapshot_304_ms": ("<", 2.0, "ms"),
}


# Data setup -----------------------------------------------------------------------


def bench_user():
    """The account the benchmark's rules are created by (rules need a creator)."""
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username=BENCH_USERNAME)
    return user


def rule_scope(number: int) -> tuple[str | None, str | None]:
    """Spread rules evenly over every surface x region pair, "all" included."""
    surface = SURFACES[number % len(SURFACES)]
    region = REGIONS[(number // len(SURFACES)) % len(REGIONS)]
    return surface, region


def load_rules(*, blocks: int, boosts: int, actor, version: int = 1) -> None:
    """Bulk-insert rules as if they had been written at `version`.

    Blocks have distinct item ids (no overlap constraint fires); 5% are scheduled
    to start tomorrow and 20% expire in 30 days, the rest are permanent. Boosts run
    from yesterday for 30 days with factors between 1.2 and 4.1.
    """
    from django.db import transaction

    from overrides.models import Block, Boost, OverrideVersion

    now = datetime.now(UTC)
    yesterday = now - timedelta(days=1)
    tomorrow = now + timedelta(days=1)
    in_a_month = now + timedelta(days=30)

    def block(number: int) -> Block:
        surface, region = rule_scope(number)
        return Block(
            item_id=f"bench-{number}",
            surface_id=surface,
            region_id=region,
            reason="Benchmark data: supplier recall for this product",
            created_by=actor,
            created_at=yesterday,
            starts_at=tomorrow if number % 20 == 19 else yesterday,
            expires_at=in_a_month if number % 5 == 1 else None,
            changed_version=version,
        )

    def boost(number: int) -> Boost:
        surface, region = rule_scope(number)
        return Boost(
            item_id=f"boost-{number}",
            factor=1.2 + (number % 30) / 10,
            surface_id=surface,
            region_id=region,
            reason="Benchmark data: new product launch",
            created_by=actor,
            created_at=yesterday,
            starts_at=yesterday,
            ends_at=in_a_month,
            changed_version=version,
        )

    with transaction.atomic():
        Block.objects.bulk_create((block(n) for n in range(blocks)), batch_size=5000)
        Boost.objects.bulk_create((boost(n) for n in range(boosts)), batch_size=1000)
        OverrideVersion.objects.update_or_create(
            pk=OverrideVersion.SINGLETON_ID, defaults={"value": version}
        )


def opted_out_customer(number: int) -> str:
    return f"cust-{number}"


def load_optouts(*, customers: int) -> int:
    """Opt `cust-0`... out of personalisation, every third one out of training too.

    COPY on PostgreSQL (a million customers in well under a minute), bulk_create
    elsewhere. Returns the number of rows written.
    """
    from django.db import connection, transaction

    from opsconsole.customer_ids import hash_customer_id
    from overrides.models import OptOut, OptOutKind

    source = "benchmark import"

    def rows() -> Iterable[tuple[str, str]]:
        for number in range(customers):
            customer_hash = hash_customer_id(opted_out_customer(number))
            yield customer_hash, OptOutKind.PERSONALIZATION.value
            if number % 3 == 0:
                yield customer_hash, OptOutKind.TRAINING.value

    if connection.vendor != "postgresql":
        objects = [
            OptOut(customer_hash=customer_hash, kind=kind, source=source)
            for customer_hash, kind in rows()
        ]
        OptOut.objects.bulk_create(objects, batch_size=2000)
        return len(objects)
    written = 0
    now = datetime.now(UTC)
    copy_sql = (
        "COPY overrides_optout "
        "(customer_hash, kind, source, created_at, withdrawal_source) FROM STDIN"
    )
    with (
        transaction.atomic(),
        connection.cursor() as cursor,
        cursor.cursor.copy(copy_sql) as copy,
    ):
        for customer_hash, kind in rows():
            copy.write_row((customer_hash, kind, source, now, ""))
            written += 1
    return written


def vacuum_analyze() -> None:
    """What autovacuum does to a loaded table: statistics and the visibility map
    (index-only scans), so the first minutes after a bulk load are not measured."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "VACUUM ANALYZE overrides_block, overrides_boost, overrides_optout"
            )


def create_api_key(name: str = "benchmark") -> str:
    """A fresh `serving:read` key (raw), as a serving layer holds one."""
    from opsconsole.services import api_key_create

    _key, raw_key = api_key_create(
        name=f"{name}-{time.time_ns()}", scopes=["serving:read"]
    )
    return raw_key


@dataclass
class Workload:
    """Request bodies, and what a correct answer to each contains."""

    rank_body: dict
    blocked_ids: set[str]
    boosted_ids: set[str]
    optout_body: dict
    opted_out_ids: set[str]

    @property
    def anonymous_rank_body(self) -> dict:
        """The rank body without customer_id: no opt-out lookup."""
        return {k: v for k, v in self.rank_body.items() if k != "customer_id"}


def build_workload(
    rules,
    *,
    candidates: int,
    optout_check_ids: int,
    optout_customers: int,
    surface: str = SCOPE_SURFACE,
    region: str = SCOPE_REGION,
    seed: int = 42,
) -> Workload:
    """Realistic bodies from a RuleSet of every rule.

    Of the candidates ~1% are blocked and ~1% boosted in the scope, ~2% blocked only
    in other scopes or later (looked up, not removed), the rest have no rule. The
    customer asking is opted out; of the customer ids checked, half are.
    """
    randomness = random.Random(seed)
    now = time.time()
    blocked_here, blocked_elsewhere, boosted_here = set(), set(), set()
    for rule in rules.blocks.values():
        item_id = rule["item_id"]
        if rules.blocking_rule(item_id, surface=surface, region=region, now=now):
            blocked_here.add(item_id)
        else:
            blocked_elsewhere.add(item_id)
    for rule in rules.boosts.values():
        item_id = rule["item_id"]
        if rules.boost(item_id, surface=surface, region=region, now=now):
            boosted_here.add(item_id)
    blocked_elsewhere -= blocked_here
    boosted_here -= blocked_here
    share = max(1, candidates // 100)

    def pick(ids: set[str], count: int) -> list[str]:
        return randomness.sample(sorted(ids), min(count, len(ids)))

    blocked, boosted = pick(blocked_here, share), pick(boosted_here, share)
    chosen = blocked + boosted + pick(blocked_elsewhere, 2 * share)
    item_ids = chosen + [f"item-{n}" for n in range(candidates - len(chosen))]
    randomness.shuffle(item_ids)
    customers = range(optout_customers)
    opted_out = list(
        dict.fromkeys(
            opted_out_customer(randomness.choice(customers))
            for _ in range(optout_check_ids // 2)
        )
    )
    customer_ids = opted_out + [
        f"guest-{n}" for n in range(optout_check_ids - len(opted_out))
    ]
    randomness.shuffle(customer_ids)
    return Workload(
        rank_body={
            "customer_id": opted_out_customer(randomness.choice(customers)),
            "surface": surface,
            "region": region,
            "candidates": [
                {"item_id": item_id, "score": round(randomness.random(), 6)}
                for item_id in item_ids
            ],
        },
        blocked_ids=set(blocked),
        boosted_ids=set(boosted),
        optout_body={"customer_ids": customer_ids},
        opted_out_ids=set(opted_out),
    )


def check_rank_answer(answer: dict, workload: Workload, *, personalized: bool):
    """Refuse to time an endpoint that does not do the work (wrong removals...)."""
    removed = {entry["item_id"] for entry in answer["removed"]}
    boosted = {entry["item_id"] for entry in answer["items"] if entry["boosted"]}
    if removed != workload.blocked_ids or boosted != workload.boosted_ids:
        raise BenchmarkError(
            f"rank removed {len(removed)} and boosted {len(boosted)}, expected "
            f"{len(workload.blocked_ids)} and {len(workload.boosted_ids)}"
        )
    expected_items = len(workload.rank_body["candidates"]) - len(removed)
    if len(answer["items"]) != expected_items:
        raise BenchmarkError("rank answered the wrong number of items")
    if answer["personalized"] is not personalized:
        raise BenchmarkError(f"rank answered personalized={answer['personalized']}")


def check_optouts_answer(answer: dict, workload: Workload) -> None:
    if set(answer["personalization"]) != workload.opted_out_ids:
        raise BenchmarkError(
            f"optouts/check found {len(answer['personalization'])} opted out, "
            f"expected {len(workload.opted_out_ids)}"
        )


# In-process measurements ----------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: p99 of 100 values is the 99th)."""
    ordered = sorted(values)
    rank = math.ceil(round(fraction * len(ordered), 9))
    return ordered[max(0, min(len(ordered), rank) - 1)]


def measure_snapshot_build(
    *, surface: str | None = None, region: str | None = None, repeat: int = 3
) -> tuple[dict, dict]:
    """(figures, the document): time the selector that builds a snapshot, and its
    JSON encoding (what the snapshot endpoint caches)."""
    from overrides.selectors import serving_snapshot

    build_ms, encode_ms = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        document = serving_snapshot(surface=surface, region=region)
        built = time.perf_counter()
        body = json.dumps(document, separators=(",", ":")).encode()
        encode_ms.append((time.perf_counter() - built) * 1000)
        build_ms.append((built - started) * 1000)
    figures = {
        "surface": surface,
        "region": region,
        "blocked": len(document["blocked"]),
        "boosts": len(document["boosts"]),
        "bytes": len(body),
        "build_ms": build_ms,
        "build_ms_median": statistics.median(build_ms),
        "encode_ms": encode_ms,
        "encode_ms_median": statistics.median(encode_ms),
    }
    return figures, document


def plain_python_floor(candidates: list[dict], blocked: set[str]) -> list[dict]:
    """What `rank` cannot beat: drop blocked ids with a set, sort by score."""
    return sorted(
        [c for c in candidates if c["item_id"] not in blocked],
        key=itemgetter("score"),
        reverse=True,
    )


def measure_client_local_rank(
    document: dict,
    candidates: list[dict],
    *,
    surface: str | None,
    region: str | None,
    rounds: int,
    number: int,
) -> dict:
    """RuleSet.rank (what the client runs) against the floor, per call in µs.

    Interleaved round by round, so both see the same machine. The ratio is of the
    fastest rounds (as timeit advises: slower rounds measure other processes).
    """
    from opsconsole_client.rules import RuleSet

    rules = RuleSet.from_document(document)
    now = time.time()
    blocked = {
        rule["item_id"]
        for rule in rules.blocks.values()
        if rules.blocking_rule(rule["item_id"], surface=surface, region=region, now=now)
    }
    floor_items = plain_python_floor(candidates, blocked)
    if len(rules.rank(candidates, surface=surface, region=region).items) != len(
        floor_items
    ):
        raise BenchmarkError("client-local rank and the floor disagree on removals")
    floor_us, rank_us = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(number):
            plain_python_floor(candidates, blocked)
        floor_us.append((time.perf_counter() - started) / number * 1e6)
        started = time.perf_counter()
        for _ in range(number):
            rules.rank(candidates, surface=surface, region=region)
        rank_us.append((time.perf_counter() - started) / number * 1e6)
    return {
        "rules_blocked": len(rules.blocks),
        "rules_boosts": len(rules.boosts),
        "candidates": len(candidates),
        "floor_us": floor_us,
        "rank_us": rank_us,
        "floor_us_min": min(floor_us),
        "rank_us_min": min(rank_us),
        "ratio": min(rank_us) / min(floor_us),
        "ratio_of_medians": statistics.median(rank_us) / statistics.median(floor_us),
    }


def measure_view_work(
    rules, body: dict, *, surface: str, region: str, rounds: int, number: int
) -> dict:
    """The work of the REST rank view (anonymous) against the baseline view's, in
    this process, per request in µs: what rank must do on top of what both share.

    Each call starts from the parsed body (rank works on it in place): rank checks
    the candidates, applies the rules (with the answer's two added fields and the
    sort) and writes its JSON; the baseline filters against its set and writes its
    JSON. The phases of rank are timed apart too. Medians of interleaved rounds.
    """
    import orjson

    from benchmarks.baseline import BLOCKED_IDS
    from overrides.api.serving import candidate_columns

    raw = orjson.dumps({k: v for k, v in body.items() if k != "customer_id"})

    def baseline_view(data: dict) -> bytes:
        candidates = data["candidates"]
        kept = [c for c in candidates if c["item_id"] not in BLOCKED_IDS]
        return orjson.dumps({"items": kept})

    def rank_view(data: dict, phases: dict | None = None) -> bytes:
        started = time.perf_counter()
        candidates = data["candidates"]
        ids, _scores, distinct = candidate_columns(candidates)
        checked = time.perf_counter()
        items, removed = rules.rank_in_place(
            candidates, ids=ids, distinct_ids=distinct, surface=surface, region=region
        )
        ranked = time.perf_counter()
        answer = orjson.dumps(
            {
                "version": rules.version,
                "personalized": True,
                "items": items,
                "removed": removed,
            }
        )
        if phases is not None:
            phases["check"].append((checked - started) * 1e6)
            phases["rules_and_sort"].append((ranked - checked) * 1e6)
            phases["json"].append((time.perf_counter() - ranked) * 1e6)
        return answer

    def per_call(view) -> float:
        bodies = [orjson.loads(raw) for _ in range(number)]
        started = time.perf_counter()
        for data in bodies:
            view(data)
        return (time.perf_counter() - started) / number * 1e6

    baseline_us, rank_us = [], []
    phases: dict[str, list[float]] = {"check": [], "rules_and_sort": [], "json": []}
    for _ in range(rounds):
        baseline_us.append(per_call(baseline_view))
        rank_us.append(per_call(rank_view))
        for data in [orjson.loads(raw) for _ in range(number)]:
            rank_view(data, phases)
    baseline, rank = statistics.median(baseline_us), statistics.median(rank_us)
    return {
        "baseline_us": baseline,
        "rank_us": rank,
        "extra_us": rank - baseline,
        "rank_phases_us": {name: statistics.median(v) for name, v in phases.items()},
        "rounds": rounds,
        "number": number,
    }


def measure_propagation(
    *,
    client,
    make_change: Callable[[int], int],
    changes: int,
    timeout_seconds: float = 5.0,
    pause_seconds: float = 0.05,
) -> dict:
    """Commit -> `client.version` reaching the change's version, for each change.

    `make_change(index)` writes one change and returns its version. The commit time
    is taken by an on_commit callback registered before the write, so it runs right
    after COMMIT, before the write service announces the version.
    """
    from django.db import transaction

    latencies_ms: list[float] = []
    missed = 0
    for index in range(changes):
        committed: dict[str, float] = {}
        with transaction.atomic():
            transaction.on_commit(
                lambda committed=committed: committed.setdefault(
                    "at", time.perf_counter()
                )
            )
            version = make_change(index)
        deadline = committed["at"] + timeout_seconds
        while (client.version or 0) < version and time.perf_counter() < deadline:
            time.sleep(0.0002)
        missed += (client.version or 0) < version
        latencies_ms.append((time.perf_counter() - committed["at"]) * 1000)
        time.sleep(pause_seconds)
    return {
        "changes": changes,
        "missed": missed,
        "timeout_seconds": timeout_seconds,
        "latencies_ms": latencies_ms,
        "median_ms": statistics.median(latencies_ms),
        "p90_ms": percentile(latencies_ms, 0.90),
        "p99_ms": percentile(latencies_ms, 0.99),
        "max_ms": max(latencies_ms),
    }


def block_change(actor, *, prefix: str) -> Callable[[int], int]:
    """A `make_change` that blocks a new item in the benchmark's scope."""
    from overrides import services

    def make_change(index: int) -> int:
        block = services.block_item(
            item_id=f"{prefix}-{index}",
            surface=SCOPE_SURFACE,
            region=SCOPE_REGION,
            reason="Benchmark: propagation of a new block",
            actor=actor,
        )
        return block.changed_version

    return make_change


# wrk ------------------------------------------------------------------------------

_WRK_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _wrk_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise BenchmarkError(f"unexpected wrk duration {text!r}")
    return float(match[1]) * _WRK_UNITS_MS[match[2]]


def parse_wrk(output: str) -> dict:
    """req/s, request count, errors and latency percentiles (ms) of a wrk run."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    if not rps or not total:
        raise BenchmarkError(f"could not read wrk's output:\n{output}")
    result = {
        "requests_per_second": float(rps[1]),
        "requests": int(total[1]),
        **{
            f"p{percent}_ms": _wrk_ms(value)
            for percent, value in re.findall(
                r"^\s+(\d+)%\s+(\S+)$", output, re.MULTILINE
            )
        },
    }
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    result["non_2xx_3xx"] = int(non_2xx[1]) if non_2xx else 0
    # Read errors are gunicorn's sync workers closing the connection after each
    # answer (wrk reconnects); connect errors and timeouts are failures.
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    counts = map(int, errors.groups()) if errors else (0, 0, 0, 0)
    result["socket_errors"] = dict(
        zip(("connect", "read", "write", "timeout"), counts, strict=True)
    )
    answers = re.search(r"Answers 304: (\d+), other: (\d+)", output)
    if answers:
        result["answers_304"], result["answers_other"] = map(int, answers.groups())
    return result


def wrk_command(
    url: str, *, script: str, seconds: int, connections: int, timeout: str = "30s"
) -> list[str]:
    """wrk with one thread, the latency distribution and one of benchmarks/lua."""
    return [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        f"--timeout={timeout}",
        "--latency",
        "-s",
        str(LUA_DIR / script),
        url,
    ]


def run_wrk(
    url: str, *, script: str, env: dict, seconds: int, connections: int
) -> dict:
    """One bounded wrk run (1 thread); raises when the server answered errors."""
    command = wrk_command(url, script=script, seconds=seconds, connections=connections)
    completed = subprocess.run(  # noqa: S603
        command,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    if completed.returncode != 0:
        raise BenchmarkError(f"wrk failed: {completed.stderr or completed.stdout}")
    result = parse_wrk(completed.stdout)
    errors = result["socket_errors"]
    if (
        result["non_2xx_3xx"]
        or errors["connect"]
        or errors["timeout"]
        or result.get("answers_other")
    ):
        raise BenchmarkError(f"{url} answered errors under load:\n{completed.stdout}")
    return {**result, "command": " ".join(command), "output": completed.stdout}


# The machine ------------------------------------------------------------------------


def machine_info() -> dict:
    cpu_model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        memory_kb = next(
            int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:")
        )
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gib": round(memory_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def software_versions() -> dict:
    import django
    import gunicorn
    import redis
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    wrk = subprocess.run(
        ["wrk", "--version"],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    return {
        "django": django.get_version(),
        "gunicorn": gunicorn.__version__,
        "postgresql": postgres,
        "redis": redis.Redis.from_url(REDIS_URL).info("server")["redis_version"],
        "wrk": (wrk.stdout or wrk.stderr).split(" [")[0].strip(),
    }


def git_commit() -> dict:
    def git(*arguments: str) -> str:
        completed = subprocess.run(  # noqa: S603
            ["git", *arguments],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        return completed.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--short"))}


class OtherLoad:
    """The share of the machine's CPU that processes other than the benchmark's used
    while it measured: on a shared machine, the noise in the figures.

    The benchmark's own: this process and the children it waited for (wrk), the
    gunicorn processes, and the PostgreSQL backends connected to its database (a
    backend that exits meanwhile is missed, so the share is an upper bound).
    """

    def __init__(self, pids: Callable[[], list[int]]):
        self._pids = pids
        self.share: float | None = None

    @staticmethod
    def _machine_ticks() -> tuple[int, int]:
        """(busy, all) CPU ticks of the machine since boot."""
        with open("/proc/stat") as stat:
            ticks = [int(value) for value in stat.readline().split()[1:9]]
        idle = ticks[3] + ticks[4]  # idle, iowait
        return sum(ticks) - idle, sum(ticks)

    def _our_ticks(self) -> dict[int | str, float]:
        ticks: dict[int | str, float] = {}
        for pid in self._pids():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            ticks[pid] = int(fields[11]) + int(fields[12])  # utime, stime
        usage = [
            resource.getrusage(who)
            for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        ]
        seconds = sum(each.ru_utime + each.ru_stime for each in usage)
        ticks["benchmark"] = seconds * os.sysconf("SC_CLK_TCK")
        return ticks

    def __enter__(self) -> OtherLoad:
        self._start_machine = self._machine_ticks()
        self._start_ours = self._our_ticks()
        return self

    def __exit__(self, *exc_info) -> None:
        busy, total = self._machine_ticks()
        ours = sum(
            ticks - self._start_ours.get(key, 0)
            for key, ticks in self._our_ticks().items()
        )
        elapsed = total - self._start_machine[1]
        if elapsed > 0:
            other = busy - self._start_machine[0] - ours
            self.share = max(0.0, other / elapsed)


# The server -------------------------------------------------------------------------


def api_session(api_key: str):
    """A requests session that sends the API key on every request."""
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {api_key}"
    return session


def child_pids(pid: int) -> list[int]:
    """The children of a process (gunicorn's workers); none once it has exited."""
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children")
                .read_text().split()]  # fmt: skip
    except OSError:
        return []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(port: int, log_path: Path) -> subprocess.Popen:
    """gunicorn with 2 sync workers, as deployed; returns once /readyz answers."""
    import requests

    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "opsconsole.wsgi",
        "--workers",
        "2",
        "--bind",
        f"127.0.0.1:{port}",
        "--timeout",
        "120",
        "--log-level",
        "warning",
    ]
    with open(log_path, "w") as log_file:
        server = subprocess.Popen(  # noqa: S603
            command,
            cwd=ROOT,
            env={**os.environ, **BENCH_ENV},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise BenchmarkError(f"gunicorn exited:\n{log_path.read_text()}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).ok:
                return server
        except (requests.ConnectionError, requests.Timeout):  # still booting
            pass
        time.sleep(0.2)
    stop_server(server)
    raise BenchmarkError(f"gunicorn did not become ready:\n{log_path.read_text()}")


def stop_server(server: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 20 s (gunicorn, Celery; a no-op once exited)."""
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def start_client(base_url: str, api_key: str):
    """The Python client a serving layer runs, following changes over Redis."""
    from opsconsole_client import OverridesClient

    client = OverridesClient(
        base_url,
        api_key,
        surface=SCOPE_SURFACE,
        region=SCOPE_REGION,
        redis_url=REDIS_URL,
        channel=BENCH_ENV["OVERRIDES_CHANNEL"],
        timeout=30.0,
    )
    if client.version is None:
        client.close()
        raise BenchmarkError("the client could not load the snapshot")
    return client


class LiveServer:
    """The gunicorn under test, and how the benchmark talks to it."""

    def __init__(self, *, api_key: str, scale: Scale, workload: Workload, stamp: str):
        self.scale = scale
        self.api_key = api_key
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = RESULTS_DIR / f"gunicorn-{stamp}.log"
        self.session = api_session(api_key)
        self.wrk_env = {"BENCH_API_KEY": api_key}
        self.bodies: dict[str, Path] = {}
        for name, body in (
            ("rank", workload.rank_body),
            ("rank_anonymous", workload.anonymous_rank_body),
            ("optouts", workload.optout_body),
        ):
            self.bodies[name] = RESULTS_DIR / f".body-{stamp}-{name}.json"
            self.bodies[name].write_text(json.dumps(body))
        self.server: subprocess.Popen | None = None

    def __enter__(self) -> LiveServer:
        self.server = start_server(self.port, self.log_path)
        return self

    def __exit__(self, *exc_info) -> None:
        if self.server is not None:
            stop_server(self.server)
        for path in self.bodies.values():
            path.unlink(missing_ok=True)

    def pids(self) -> list[int]:
        """gunicorn's master and workers, and the database's backends."""
        from django.db import connection

        master = self.server.pid
        pids = [master, *child_pids(master)]
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            )
            pids.extend(pid for (pid,) in cursor.fetchall())
        return pids

    def request(self, method: str, path: str, **kwargs) -> tuple[float, object]:
        """(milliseconds, response) of one request; raises on an error status."""
        started = time.perf_counter()
        response = self.session.request(
            method, self.base_url + path, timeout=120, **kwargs
        )
        elapsed_ms = (time.perf_counter() - started) * 1000
        response.raise_for_status()
        return elapsed_ms, response

    def wrk(
        self,
        path: str,
        *,
        body: str | None = None,
        etag: str | None = None,
        seconds: int | None = None,
    ) -> dict:
        """wrk against one endpoint, with the other processes' CPU share."""
        env = dict(self.wrk_env)
        if body is not None:
            env["BENCH_BODY_FILE"] = str(self.bodies[body])
        if etag is not None:
            env["BENCH_ETAG"] = etag
        script = (
            "post_body.lua" if body else "get_not_modified.lua" if etag else "get.lua"
        )
        with OtherLoad(self.pids) as other_load:
            result = run_wrk(
                self.base_url + path,
                script=script,
                env=env,
                seconds=seconds or self.scale.wrk_seconds,
                connections=self.scale.wrk_connections,
            )
        return {**result, "other_cpu_share": other_load.share}


# The table --------------------------------------------------------------------------


def verdict(name: str, value: float) -> tuple[str, str]:
    comparison, limit, unit = TARGETS[name]
    passed = {"<": value < limit, "<=": value <= limit, ">=": value >= limit}
    return f"{comparison} {limit:g} {unit}", "PASS" if passed[comparison] else "MISS"


def summary_rows(results: dict) -> list[tuple[str, str, str, str]]:
    """(metric, value, target, PASS/MISS or "" for context) for table and JSON."""
    rows = []

    def add(metric: str, value: str, target: str | None = None, figure=None):
        outcome = verdict(target, figure) if target else ("", "")
        rows.append((metric, value, *outcome))

    def latencies(run: dict) -> str:
        return f"{run['p50_ms']:.2f} / {run['p90_ms']:.2f} / {run['p99_ms']:.2f} ms"

    rest = results["rest_rank"]
    add(
        "REST rank req/s, 1,000 cand., c=2",
        f"{rest['rank']['requests_per_second']:.0f} vs baseline "
        f"{rest['baseline']['requests_per_second']:.0f} = {rest['ratio']:.2f}x",
        "rank_rps_ratio",
        rest["ratio"],
    )
    add(
        "REST rank p50 / p90 / p99",
        latencies(rest["rank"]),
        "rank_p99_ms",
        rest["rank"]["p99_ms"],
    )
    add("baseline p50 / p90 / p99", latencies(rest["baseline"]))
    anonymous = rest["rank_anonymous"]
    anonymous_ratio = (
        anonymous["requests_per_second"] / rest["baseline"]["requests_per_second"]
    )
    add(
        "REST rank without customer_id",
        f"{anonymous['requests_per_second']:.0f} req/s = {anonymous_ratio:.2f}x; "
        f"p99 {anonymous['p99_ms']:.2f} ms",
    )
    work = results["view_work"]
    # Per request and connection, the baseline takes connections / req/s; rank's
    # own work comes on top of it, so even if nothing else cost rank more, its
    # ratio could not pass this.
    baseline_ms = (
        results["scale"]["wrk_connections"]
        / rest["baseline"]["requests_per_second"]
        * 1e3
    )
    ceiling = baseline_ms / (baseline_ms + work["extra_us"] / 1e3)
    phases = work["rank_phases_us"]
    add(
        "rank view's own work over baseline's",
        f"+{work['extra_us']:.0f} µs (check {phases['check']:.0f}, rules+sort "
        f"{phases['rules_and_sort']:.0f}, JSON {phases['json']:.0f}): ratio <= "
        f"{ceiling:.2f}x",
    )
    local = results["client_local_rank"]
    add(
        "client-local rank vs floor, 1,000 cand.",
        f"{local['rank_us_min']:.0f} µs vs {local['floor_us_min']:.0f} µs "
        f"= {local['ratio']:.2f}x (medians {local['ratio_of_medians']:.2f}x)",
        "local_rank_ratio",
        local["ratio"],
    )
    propagation = results["propagation"]
    add(
        f"propagation median, {propagation['changes']} changes",
        f"{propagation['median_ms']:.1f} ms",
        "propagation_median_ms",
        propagation["median_ms"],
    )
    add(
        "propagation p99 / max",
        f"{propagation['p99_ms']:.1f} / {propagation['max_ms']:.1f} ms"
        + (f", {propagation['missed']} missed" if propagation["missed"] else ""),
        "propagation_p99_ms",
        math.inf if propagation["missed"] else propagation["p99_ms"],
    )
    optouts = results["optouts_check"]
    add(
        "optouts/check, 1,000 ids: p50 / p90 / p99",
        latencies(optouts),
        "optouts_p99_ms",
        optouts["p99_ms"],
    )
    for label, built in (
        ("all rules", results["snapshot"]),
        (f"{SCOPE_SURFACE}/{SCOPE_REGION}", results["snapshot_scoped"]),
    ):
        add(
            f"snapshot build, {label}: {built['blocked']:,} blocks",
            f"{built['build_ms_median']:.0f} ms + JSON "
            f"{built['encode_ms_median']:.0f} ms = {built['bytes'] / 1e6:.1f} MB",
        )
    http = results["snapshot_http"]
    add(
        "snapshot GET, all rules: first / cached",
        f"{http['first_ms']:.0f} / {http['cached_ms']:.0f} ms",
    )
    not_modified = results["snapshot_304"]
    add(
        "snapshot 304 p50 (p99)",
        f"{not_modified['p50_ms']:.2f} ms ({not_modified['p99_ms']:.2f} ms)",
        "snapshot_304_ms",
        not_modified["p50_ms"],
    )
    health = results["healthz"]
    add(
        "healthz (gunicorn+Django floor) p50 (p99)",
        f"{health['p50_ms']:.2f} ms ({health['p99_ms']:.2f} ms)",
    )
    after_change = results["rank_after_change"]
    add(
        "REST rank, 1st request after a change",
        f"median {after_change['first_ms_median']:.0f} ms, "
        f"max {after_change['max_ms']:.0f} ms",
    )
    return rows


def format_table(rows: list[tuple[str, str, str, str]]) -> str:
    header = ("metric", "value", "target", "result")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


# The run ----------------------------------------------------------------------------


def save_results(
    results: dict, rows, path: Path, *, latest: Path | None = None
) -> None:
    """Put the printed table in the results and write them (and the latest copy)."""
    results["table"] = [
        dict(zip(("metric", "value", "target", "result"), row, strict=True))
        for row in rows
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, default=str)
    for target in (path, latest):
        if target is not None:
            target.write_text(text)


def machine_line(results: dict) -> str:
    """The run's machine and commit, for the line above every table."""
    machine, git = results["machine"], results.get("git")
    line = (
        f"Machine: {machine['nproc']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_gib']} GiB, load average at start "
        f"{' '.join(machine['loadavg_at_start'])}"
    )
    if git:
        line += f"; commit {git['commit'][:12]}"
        line += " + uncommitted changes" if git["dirty"] else ""
    return line


def configure_django() -> None:
    """Point this process at the benchmark database and Redis, then set Django up."""
    os.environ.update(BENCH_ENV)
    import django

    django.setup()


def recreate_database() -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {DATABASE_NAME} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {DATABASE_NAME}")


def flush_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def data_is_loaded(scale: Scale) -> bool:
    from django.db.utils import OperationalError, ProgrammingError

    from overrides.models import Block, OptOut

    try:
        return (
            Block.objects.filter(item_id__startswith="bench-").count() == scale.blocks
            and OptOut.objects.count() >= scale.optouts
        )
    except (OperationalError, ProgrammingError):
        return False


def prepare_data(scale: Scale, *, reuse: bool, log) -> dict:
    """A fresh database, migrated and bulk-loaded; or a complete earlier load."""
    from django.core.management import call_command
    from django.db import connections

    if reuse and data_is_loaded(scale):
        log("reusing the data already in opsconsole_bench")
        return {"reused": True}
    connections.close_all()
    timings: dict = {"reused": False}
    started = time.perf_counter()
    recreate_database()
    call_command("migrate", interactive=False, verbosity=0)
    timings["migrate_s"] = time.perf_counter() - started
    started = time.perf_counter()
    load_rules(blocks=scale.blocks, boosts=scale.boosts, actor=bench_user())
    timings["rules_s"] = time.perf_counter() - started
    log(
        f"   {scale.blocks:,} blocks, {scale.boosts:,} boosts: "
        f"{timings['rules_s']:.0f} s"
    )
    started = time.perf_counter()
    timings["optout_rows"] = load_optouts(customers=scale.optouts)
    vacuum_analyze()
    timings["optouts_s"] = time.perf_counter() - started
    log(
        f"   {timings['optout_rows']:,} opt-out rows ({scale.optouts:,} customers): "
        f"{timings['optouts_s']:.0f} s"
    )
    return timings


def measure_rest(server: LiveServer, log) -> dict:
    """Baseline and rank (with and without customer_id), interleaved round by round
    so all see the same machine; req/s are means over rounds, percentiles the
    worst round's (a p99 target must not be averaged away)."""
    endpoints = {
        "baseline": (BASELINE_PATH, "rank"),
        "rank": (RANK_PATH, "rank"),
        "rank_anonymous": (RANK_PATH, "rank_anonymous"),
    }
    runs: dict[str, list[dict]] = {name: [] for name in endpoints}
    for round_number in range(1, server.scale.interleaved_rounds + 1):
        for name, (path, body) in endpoints.items():
            result = server.wrk(path, body=body)
            runs[name].append(result)
            log(
                f"   round {round_number} {name:14s} "
                f"{result['requests_per_second']:6.0f} req/s, "
                f"p99 {result['p99_ms']:7.2f} ms, other processes "
                f"{result['other_cpu_share']:.0%} CPU"
            )
    summary: dict = {"runs": runs}
    for name, name_runs in runs.items():
        summary[name] = {
            "requests_per_second": statistics.mean(
                run["requests_per_second"] for run in name_runs
            ),
            **{
                key: max(run[key] for run in name_runs)
                for key in ("p50_ms", "p90_ms", "p99_ms")
            },
        }
    summary["ratio"] = (
        summary["rank"]["requests_per_second"]
        / summary["baseline"]["requests_per_second"]
    )
    return summary


def measure_rank_after_change(server: LiveServer, body: dict, make_change, *, changes):
    """Latency of rank requests right after a rule change: each worker rebuilds its
    in-process rules from the database then (overrides/serving.py, ruleset)."""
    first_ms, all_ms = [], []
    for index in range(changes):
        make_change(index)
        timings = [server.request("POST", RANK_PATH, json=body)[0] for _ in range(4)]
        first_ms.append(timings[0])
        all_ms.extend(timings)
    return {
        "changes": changes,
        "first_ms": first_ms,
        "all_ms": all_ms,
        "first_ms_median": statistics.median(first_ms),
        "max_ms": max(all_ms),
    }


def measure_over_http(
    server: LiveServer, workload: Workload, *, actor, stamp: str, log
) -> dict:
    results: dict = {}
    # Before anything else asks for it: the first, uncached GET of every rule.
    first_ms, response = server.request("GET", SNAPSHOT_PATH)
    cached_ms, _ = server.request("GET", SNAPSHOT_PATH)
    etag = response.headers["ETag"]
    results["snapshot_http"] = {
        "first_ms": first_ms,
        "cached_ms": cached_ms,
        "bytes": len(response.content),
        "etag": etag,
    }
    log("== answers checked, then warm-up (every endpoint, both workers)")
    _, rank = server.request("POST", RANK_PATH, json=workload.rank_body)
    check_rank_answer(rank.json(), workload, personalized=False)
    _, rank = server.request("POST", RANK_PATH, json=workload.anonymous_rank_body)
    check_rank_answer(rank.json(), workload, personalized=True)
    _, optouts = server.request("POST", OPTOUTS_PATH, json=workload.optout_body)
    check_optouts_answer(optouts.json(), workload)
    warmup = server.scale.wrk_warmup_seconds
    for path, body in (
        (BASELINE_PATH, "rank"),
        (RANK_PATH, "rank"),
        (OPTOUTS_PATH, "optouts"),
    ):
        server.wrk(path, body=body, seconds=warmup)
    server.wrk(SNAPSHOT_PATH, etag=etag, seconds=warmup)

    log(f"== REST rank vs baseline, wrk {server.scale.wrk_seconds} s each, interleaved")
    results["rest_rank"] = measure_rest(server, log)
    for name, path, options in (
        ("optouts_check", OPTOUTS_PATH, {"body": "optouts"}),
        ("snapshot_304", SNAPSHOT_PATH, {"etag": etag}),
        ("healthz", HEALTH_PATH, {}),
    ):
        results[name] = result = server.wrk(path, **options)
        log(
            f"== {name}: {result['requests_per_second']:.0f} req/s, p99 "
            f"{result['p99_ms']:.2f} ms, other processes "
            f"{result['other_cpu_share']:.0%} CPU"
        )

    changes = server.scale.propagation_changes
    log(f"== propagation: {changes} blocks, commit -> the client has the version")
    client = start_client(server.base_url, server.api_key)
    try:
        results["propagation"] = {
            "client": "opsconsole_client.OverridesClient, Redis push",
            **measure_propagation(
                client=client,
                make_change=block_change(actor, prefix=f"propagation-{stamp}"),
                changes=changes,
            ),
        }
    finally:
        client.close()

    log("== REST rank right after a change")
    results["rank_after_change"] = measure_rank_after_change(
        server,
        workload.rank_body,
        block_change(actor, prefix=f"after-change-{stamp}"),
        changes=server.scale.changes_after_rank,
    )
    return results


def run(scale: Scale, *, reuse: bool, log=print) -> dict:
    if shutil.which("wrk") is None:
        raise BenchmarkError("wrk is not installed: `make wrk` installs it")
    started_at = datetime.now(UTC)
    stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
    run_started = time.perf_counter()
    results: dict = {
        "started_at": started_at.isoformat().replace("+00:00", "Z"),
        "scale": asdict(scale),
        "machine": machine_info(),
        "git": git_commit(),
    }
    configure_django()
    from django.db import connections

    from opsconsole_client.rules import RuleSet

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    flush_redis()
    log(
        f"== data: {scale.blocks:,} blocks, {scale.boosts:,} boosts, "
        f"{scale.optouts:,} opted-out customers"
    )
    results["data"] = prepare_data(scale, reuse=reuse, log=log)
    # What beat's ensure_optout_mirror task does on a console with Redis.
    from overrides import optout_mirror

    mirror_started = time.perf_counter()
    results["data"]["optout_mirror_rows"] = optout_mirror.rebuild()
    results["data"]["optout_mirror_s"] = time.perf_counter() - mirror_started
    results["software"] = software_versions()
    actor = bench_user()
    api_key = create_api_key()

    log("== snapshot build (the selector, in this process)")
    results["snapshot"], document = measure_snapshot_build()
    results["snapshot_scoped"], scoped_document = measure_snapshot_build(
        surface=SCOPE_SURFACE, region=SCOPE_REGION
    )
    all_rules = RuleSet.from_document(document)  # what each gunicorn worker holds
    workload = build_workload(
        all_rules,
        candidates=scale.candidates,
        optout_check_ids=scale.optout_check_ids,
        optout_customers=scale.optouts,
    )
    del document
    results["workload"] = {
        "scope": {"surface": SCOPE_SURFACE, "region": SCOPE_REGION},
        "candidates": len(workload.rank_body["candidates"]),
        "blocked_in_scope": len(workload.blocked_ids),
        "boosted_in_scope": len(workload.boosted_ids),
        "customer_ids": len(workload.optout_body["customer_ids"]),
        "opted_out": len(workload.opted_out_ids),
    }

    log("== client-local rank vs the plain-Python floor")
    results["client_local_rank"] = measure_client_local_rank(
        scoped_document,
        workload.rank_body["candidates"],
        surface=SCOPE_SURFACE,
        region=SCOPE_REGION,
        rounds=scale.local_rounds,
        number=scale.local_number,
    )
    del scoped_document

    log("== the rank view's own work vs the baseline view's, in this process")
    results["view_work"] = measure_view_work(
        all_rules,
        workload.rank_body,
        surface=SCOPE_SURFACE,
        region=SCOPE_REGION,
        rounds=scale.local_rounds,
        number=scale.local_number,
    )
    del all_rules

    connections.close_all()
    with LiveServer(
        api_key=api_key, scale=scale, workload=workload, stamp=stamp
    ) as server:
        log(f"== gunicorn, 2 workers, on {server.base_url}")
        results.update(
            measure_over_http(server, workload, actor=actor, stamp=stamp, log=log)
        )
        results["server_log"] = str(server.log_path.relative_to(ROOT))

    shares = [
        run["other_cpu_share"]
        for runs in results["rest_rank"]["runs"].values()
        for run in runs
    ]
    results["other_cpu_share_during_rest"] = statistics.mean(shares)
    results["duration_s"] = time.perf_counter() - run_started
    rows = summary_rows(results)
    save_results(
        results,
        rows,
        RESULTS_DIR / f"serving-{stamp}.json",
        latest=RESULTS_DIR / "serving-latest.json",
    )
    report(results, rows, stamp, log)
    return results


def report(results: dict, rows, stamp: str, log) -> None:
    log("")
    log(machine_line(results))
    share = results["other_cpu_share_during_rest"]
    log(
        f"Other processes used {share:.0%} of the CPUs during the REST runs"
        + (" -- a shared machine: expect noise." if share > 0.1 else ".")
    )
    log("")
    log(format_table(rows))
    log("")
    missed = [row[0] for row in rows if row[3] == "MISS"]
    log(f"TARGETS MISSED: {'; '.join(missed)}" if missed else "All targets met.")
    log(
        f"Raw figures: benchmarks/results/serving-{stamp}.json "
        f"(and serving-latest.json); the run took {results['duration_s']:.0f} s."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--reuse-data",
        action="store_true",
        help="Keep opsconsole_bench when it already holds the full data set.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="Short wrk runs and fewer repetitions (same data), to try it out.",
    )
    arguments = parser.parse_args(argv)
    scale = Scale()
    if arguments.quick:
        scale = Scale(
            wrk_seconds=5,
            wrk_warmup_seconds=2,
            interleaved_rounds=1,
            local_rounds=5,
            propagation_changes=20,
            changes_after_rank=2,
        )
    try:
        run(scale, reuse=arguments.reuse_data)
    except BenchmarkError as error:
        print(f"BENCHMARK FAILED: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
