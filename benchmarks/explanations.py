"""Explanation benchmark: one run, one command (`make benchmarks`, second line).

Trains a LightGBM classifier (500 trees) and a scikit-learn GradientBoostingClassifier
(100 trees) on 30 generated features, registers both in its own database
(PostgreSQL `opsconsole_bench_expl`, Redis db 10; SQLite in a temporary directory
when PostgreSQL does not answer), serves the console with gunicorn (2 sync workers,
DEBUG=0) and measures, in the same run and for both models:

- the uncached explanation API call (the first GET of a prediction's explanation:
  SHAP runs and the result is stored) against the bare
  `shap.TreeExplainer(model).shap_values(row)` on the same row in this process, plus
  an empty request (`/healthz`) to the same server, interleaved call by call;
- the cached explanation's server time, in this process with Django's test client;
- the prediction page's HTML weight (shap's bundle is a separate static file);
- logging 1,000 predictions in one request: predictions per second.

It prints a table and writes every raw figure to benchmarks/results/. The exit code
is 0 when the run completed, targets met or not; 2 when the benchmark itself
failed (an endpoint answered errors or wrong values, gunicorn did not start).

The measurement functions take the server as an argument and use Django as the
caller configured it, so tests/test_benchmarks_smoke.py runs them at a tiny scale
on the test database with Django's test client in place of gunicorn.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

from benchmarks import serving
from benchmarks.serving import (
    RESULTS_DIR,
    ROOT,
    BenchmarkError,
    OtherLoad,
    format_table,
    free_port,
    git_commit,
    machine_info,
    percentile,
    stop_server,
)

DATABASE_NAME = "opsconsole_bench_expl"
REDIS_URL = "redis://127.0.0.1:6379/10"
HEALTH_PATH = "/healthz"
EMPTY_API_PATH = serving.BASELINE_PATH
EMPTY_API_BODY = b'{"candidates": []}'
PREDICTIONS_PATH = "/api/v1/predictions"
AGENT_USERNAME = "benchmark-agent"
KINDS = ("lightgbm", "sklearn")
KIND_NAMES = {
    "lightgbm": "LightGBM",
    "sklearn": "sklearn GBC",
}
SEED = 7
KB = 1000

# This process and gunicorn: production-like (DEBUG=0), the benchmark's own
# database, Redis db and artifact directory (filled in by `environment()`).
BASE_ENV = {
    # The console plus serving.py's baseline route: an API request that does nothing.
    "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
    "DEBUG": "0",
    "SECRET_KEY": "benchmark-only-secret-key-not-used-anywhere-else-0123456789",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "SECURE_SSL_REDIRECT": "0",
    "CUSTOMER_ID_HMAC_KEY": "benchmark-only-customer-id-hmac-key",
    "CUSTOMER_ID_ENCRYPTION_KEY": "0" * 64,
    "CACHE_KEY_PREFIX": "opsconsole-bench-expl",
    "API_KEY_RATE_LIMIT_PER_MINUTE": "1000000000",
    "CELERY_TASK_ALWAYS_EAGER": "1",
    "EXPLANATION_PRECOMPUTE": "0",
    "LOG_LEVEL": "WARNING",
}


@dataclass(frozen=True)
class Scale:
    """Model sizes and how many calls each measurement makes; the defaults are the
    issue's."""

    features: int = 30
    training_rows: int = 4_000
    lightgbm_trees: int = 500
    sklearn_trees: int = 100
    uncached_calls: int = 200
    cached_calls: int = 300
    batch_size: int = 1_000
    batches: int = 5
    warmup_calls: int = 4


QUICK = Scale(uncached_calls=40, cached_calls=60, batches=2)

# The targets. The uncached one is relative: the API call's median may
# take at most 1.5x the bare shap call's plus the empty request's median.
UNCACHED_FACTOR = 1.5
CACHED_MS = 2.0
PAGE_KB = 30.0


# Data and models --------------------------------------------------------------------


def feature_schema(count: int) -> list[dict]:
    """Labels, descriptions and units like a real model's, so the page weighs what
    a real one would."""
    units = ["", "days", "SGD", "%", "visits"]
    return [
        {
            "name": f"feature_{number:02d}",
            "label": f"Signal {number}",
            "description": f"Generated benchmark signal number {number}.",
            "unit": units[number % len(units)],
        }
        for number in range(1, count + 1)
    ]


def generate(rows: int, features: int, *, seed: int = SEED):
    """(frame, labels): numeric features with interactions; about a third
    positives."""
    import numpy as np
    import pandas as pd

    generator = np.random.default_rng(seed)
    values = generator.normal(0, 1, (rows, features))
    values[:, ::3] = np.round(np.abs(values[:, ::3]) * 20)  # count-like columns
    weights = generator.normal(0, 0.6, features)
    score = (values - values.mean(0)) / values.std(0) @ weights
    score += 0.8 * values[:, 1] * values[:, 2] - 0.4 * values[:, 4] ** 2
    labels = (generator.random(rows) < 1 / (1 + np.exp(-(score - 1.0)))).astype(int)
    names = [feature["name"] for feature in feature_schema(features)]
    return pd.DataFrame(values, columns=names), labels


def train_models(scale: Scale, frame, labels) -> tuple[dict, dict]:
    """({kind: fitted model}, {kind: training seconds})."""
    import lightgbm
    from sklearn.ensemble import GradientBoostingClassifier

    untrained = {
        "lightgbm": lightgbm.LGBMClassifier(
            n_estimators=scale.lightgbm_trees,
            num_leaves=31,
            learning_rate=0.05,
            random_state=SEED,
            n_jobs=2,
            verbose=-1,
        ),
        "sklearn": GradientBoostingClassifier(
            n_estimators=scale.sklearn_trees, max_depth=3, random_state=SEED
        ),
    }
    models, seconds = {}, {}
    for kind, model in untrained.items():
        started = time.perf_counter()
        models[kind] = model.fit(frame, labels)
        seconds[kind] = time.perf_counter() - started
    return models, seconds


def tree_count(model) -> int:
    if hasattr(model, "booster_"):
        return model.booster_.num_trees()
    return len(model.estimators_)


def register_models(models: dict, schema: list[dict], *, directory: Path) -> dict:
    """Register each model as `register_model` does (the service); {kind: version}."""
    import joblib

    from explanations import services

    directory.mkdir(parents=True, exist_ok=True)
    features_path = directory / "FEATURES.json"
    features_path.write_text(json.dumps({"features": schema}))
    versions = {}
    for kind, model in models.items():
        artifact = directory / f"bench-{kind}.joblib"
        joblib.dump(model, artifact)
        versions[kind] = services.register_model(
            name=f"bench-{kind}",
            version="1",
            artifact_path=artifact,
            features_path=features_path,
            activate=True,
        )
    return versions


def prediction_records(model_version, model, frame, *, prefix: str) -> list[dict]:
    """What a serving layer logs: the row, the model's probability, a customer."""
    probabilities = model.predict_proba(frame)[:, 1]
    return [
        {
            "prediction_id": f"{prefix}-{index:05d}",
            "model": model_version.name,
            "model_version": model_version.version,
            "customer_id": f"bench-cust-{index % 997:04d}",
            "features": row,
            "output": float(probability),
        }
        for index, (row, probability) in enumerate(
            zip(frame.to_dict("records"), probabilities, strict=True)
        )
    ]


def log_in_process(records: list[dict]) -> None:
    from explanations import services

    for start in range(0, len(records), 1_000):
        services.log_predictions(records=records[start : start + 1_000])


@dataclass
class Workload:
    """Per model: predictions to explain (ids with their rows) and the shap
    explainer built in this process; the bodies of the batch-log requests."""

    warmup: dict[str, list[str]]
    uncached: dict[str, list[tuple[str, object]]]
    explainers: dict[str, object]
    batch_bodies: list[bytes]
    feature_names: list[str]


def prepare(scale: Scale, *, artifact_dir: Path, log=print) -> tuple[Workload, dict]:
    """Train, register and log what the measurements need; (workload, figures)."""
    import shap

    schema = feature_schema(scale.features)
    names = [feature["name"] for feature in schema]
    frame, labels = generate(scale.training_rows, scale.features)
    models, training_s = train_models(scale, frame, labels)
    figures: dict = {
        "training_rows": scale.training_rows,
        "positive_share": float(labels.mean()),
        "models": {},
    }
    versions = register_models(models, schema, directory=artifact_dir / "source")
    per_model = scale.warmup_calls + scale.uncached_calls
    held_out, _ = generate(per_model * len(KINDS), scale.features, seed=SEED + 1)
    workload = Workload(
        warmup={}, uncached={}, explainers={}, batch_bodies=[], feature_names=names
    )
    for position, kind in enumerate(KINDS):
        model = models[kind]
        rows = held_out.iloc[position * per_model : (position + 1) * per_model]
        rows = rows.reset_index(drop=True)
        records = prediction_records(versions[kind], model, rows, prefix=f"x-{kind}")
        log_in_process(records)
        ids = [record["prediction_id"] for record in records]
        workload.warmup[kind] = ids[: scale.warmup_calls]
        workload.uncached[kind] = [
            (ids[index], rows.iloc[[index]])
            for index in range(scale.warmup_calls, per_model)
        ]
        started = time.perf_counter()
        workload.explainers[kind] = shap.TreeExplainer(model)
        figures["models"][kind] = {
            "class": f"{type(model).__module__}.{type(model).__name__}",
            "trees": tree_count(model),
            "features": scale.features,
            "training_s": training_s[kind],
            "tree_explainer_build_ms": (time.perf_counter() - started) * 1000,
            "model_version": str(versions[kind]),
        }
        log(
            f"   {KIND_NAMES[kind]}: {tree_count(model)} trees, trained in "
            f"{training_s[kind]:.1f} s; {len(records)} predictions logged"
        )
    batch_rows, _ = generate(
        scale.batch_size * scale.batches, scale.features, seed=SEED + 2
    )
    batch_records = prediction_records(
        versions["lightgbm"], models["lightgbm"], batch_rows, prefix="batch"
    )
    workload.batch_bodies = [
        json.dumps(batch_records[start : start + scale.batch_size]).encode()
        for start in range(0, len(batch_records), scale.batch_size)
    ]
    return workload, figures


def create_api_key() -> str:
    from opsconsole.services import api_key_create

    _key, raw_key = api_key_create(
        name=f"bench-expl-{time.time_ns()}",
        scopes=["explanations:read", "predictions:write", "serving:read"],
    )
    return raw_key


def agent_user():
    """A support agent: the role that opens prediction pages."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user, _ = get_user_model().objects.get_or_create(username=AGENT_USERNAME)
    user.groups.set([Group.objects.get(name="support_agent")])
    return user


# Measurements -----------------------------------------------------------------------


def explanation_path(prediction_id: str) -> str:
    return f"/api/v1/predictions/{prediction_id}/explanation"


def bare_shap_values(explainer, row):
    """The floor: shap's TreeExplainer on the one-row frame, nothing else."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "LightGBM binary classifier")
        return explainer.shap_values(row)


def positive_class(values) -> list[float]:
    import numpy as np

    if isinstance(values, list):
        values = values[-1]
    values = np.asarray(values, dtype=float)
    if values.ndim == 3:
        values = values[..., -1]
    return [float(value) for value in values.reshape(-1)]


def check_explanation(answer: dict, bare_values: list[float], names: list[str]):
    """Refuse to time an endpoint that answers something else than shap."""
    by_feature = {item["feature"]: item["shap"] for item in answer["contributions"]}
    for name, value in zip(names, bare_values, strict=True):
        if abs(by_feature[name] - value) > 1e-6 * max(1.0, abs(value)):
            raise BenchmarkError(
                f"{answer['prediction_id']}: {name} is {by_feature[name]} in the "
                f"answer, {value} from shap"
            )
    total = answer["base_value"] + sum(by_feature.values())
    if abs(total - answer["output"]) > 1e-6 * max(1.0, abs(answer["output"])):
        raise BenchmarkError(f"{answer['prediction_id']}: the values do not add up")


def warm_up(server, workload: Workload) -> None:
    """Each worker builds its explainers on its first explanation: ask for the
    warm-up predictions as many at a time as the server has workers, so every
    worker has served one of each model before anything is timed."""
    from concurrent.futures import ThreadPoolExecutor

    for _ in range(5):
        server.request("GET", HEALTH_PATH)
    ids = [prediction_id for kind in KINDS for prediction_id in workload.warmup[kind]]

    def explain(prediction_id: str):
        return server.request("GET", explanation_path(prediction_id))

    if server.workers == 1:
        for prediction_id in ids:
            explain(prediction_id)
    else:
        with ThreadPoolExecutor(max_workers=server.workers) as pool:
            for kind in KINDS:
                list(pool.map(explain, workload.warmup[kind]))
    for prediction_id in ids:  # stored now: warms the cached path too
        server.request("GET", explanation_path(prediction_id))


def measure_uncached(server, workload: Workload, *, log=print) -> dict:
    """For each prediction, in turn: its first explanation GET (SHAP runs), the bare
    shap call on its row here (with OpenMP's default threads, then with one, as the
    server runs it), an empty GET (/healthz) and, for context, an empty API request
    (serving.py's baseline view with nothing to filter: the same authentication,
    throttle, parser and renderer). Interleaved, so all see the same machine; the
    figures are medians, and the bare floor is the faster of the two."""
    from threadpoolctl import ThreadpoolController

    openmp = ThreadpoolController().select(user_api="openmp")
    results = {}
    for kind in KINDS:
        explainer = workload.explainers[kind]
        ms: dict[str, list[float]] = {
            name: []
            for name in ("api", "bare", "bare_one_thread", "empty", "empty_api")
        }
        for prediction_id, row in workload.uncached[kind]:
            elapsed, response = server.request("GET", explanation_path(prediction_id))
            ms["api"].append(elapsed)
            started = time.perf_counter()
            values = bare_shap_values(explainer, row)
            ms["bare"].append((time.perf_counter() - started) * 1000)
            with openmp.limit(limits=1):
                started = time.perf_counter()
                bare_shap_values(explainer, row)
                ms["bare_one_thread"].append((time.perf_counter() - started) * 1000)
            check_explanation(
                response.json(), positive_class(values), workload.feature_names
            )
            ms["empty"].append(server.request("GET", HEALTH_PATH)[0])
            ms["empty_api"].append(empty_api_request(server))
        figures: dict = {"calls": len(ms["api"])}
        for name, timings in ms.items():
            figures[f"{name}_ms"] = timings
            figures[f"{name}_ms_median"] = statistics.median(timings)
        figures["api_ms_p90"] = percentile(ms["api"], 0.9)
        figures["bare_default_threads_ms_median"] = figures.pop("bare_ms_median")
        figures["bare_ms_median"] = min(
            figures["bare_default_threads_ms_median"],
            figures["bare_one_thread_ms_median"],
        )
        figures["budget_ms"] = (
            UNCACHED_FACTOR * figures["bare_ms_median"] + figures["empty_ms_median"]
        )
        figures["ratio_to_bare"] = figures["api_ms_median"] / figures["bare_ms_median"]
        results[kind] = figures
        log(
            f"   {KIND_NAMES[kind]}: API {figures['api_ms_median']:.2f} ms, bare "
            f"{figures['bare_default_threads_ms_median']:.2f} ms (one thread "
            f"{figures['bare_one_thread_ms_median']:.2f} ms), empty request "
            f"{figures['empty_ms_median']:.2f} ms, empty API request "
            f"{figures['empty_api_ms_median']:.2f} ms (medians of {figures['calls']})"
        )
    return results


def empty_api_request(server) -> float:
    elapsed, response = server.request(
        "POST",
        EMPTY_API_PATH,
        data=EMPTY_API_BODY,
        headers={"Content-Type": "application/json"},
    )
    if response.json() != {"items": []}:
        raise BenchmarkError("the empty API request did not answer an empty list")
    return elapsed


def measure_cached_http(server, prediction_ids: list[str]) -> dict:
    """The same explanations again over HTTP (stored now): for context."""
    timings = [
        server.request("GET", explanation_path(prediction_id))[0]
        for prediction_id in prediction_ids
    ]
    return {
        "calls": len(timings),
        "ms_median": statistics.median(timings),
        "ms_p90": percentile(timings, 0.9),
    }


def plain_static_storage():
    """Static URLs from the plain storage (a settings override): the page's HTML
    is the same but for the hashes in two file names, and needs no collectstatic
    manifest."""
    from django.test import override_settings

    return override_settings(
        STORAGES={
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "staticfiles": {
                "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
            },
        }
    )


def measure_cached_in_process(api_key: str, prediction_ids: list[str]) -> dict:
    """Server time of a cached explanation: the whole Django request cycle
    (middleware, API-key authentication and throttle, the view, its queries, JSON)
    timed around Django's test client in this process; no network, no gunicorn."""
    from django.db import connection
    from django.test import Client

    from explanations.models import Explanation

    stored = Explanation.objects.filter(
        prediction__prediction_id__in=prediction_ids
    ).count()
    if stored != len(prediction_ids):
        raise BenchmarkError(
            f"only {stored} of {len(prediction_ids)} explanations are stored"
        )
    client = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {api_key}")
    for prediction_id in prediction_ids[:5]:
        client.get(explanation_path(prediction_id))
    queries: list[str] = []

    def record(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        client.get(explanation_path(prediction_ids[0]))
    timings = []
    for prediction_id in prediction_ids:
        started = time.perf_counter()
        response = client.get(explanation_path(prediction_id))
        timings.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise BenchmarkError(
                f"cached explanation answered {response.status_code}: "
                f"{response.content[:300]!r}"
            )
    return {
        "calls": len(timings),
        "ms": timings,
        "ms_median": statistics.median(timings),
        "ms_p90": percentile(timings, 0.9),
        "ms_min": min(timings),
        "queries": queries,
    }


def measure_page_weight(prediction_id: str) -> dict:
    """The prediction page as an agent gets it: bytes of HTML, and gzipped."""
    from django.test import Client

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(agent_user())
    with plain_static_storage():
        response = client.get(f"/explanations/predictions/{prediction_id}/")
    html = response.content
    if response.status_code != 200 or b'id="force-plot-data"' not in html:
        raise BenchmarkError(
            f"the prediction page answered {response.status_code} without a plot"
        )
    if b"shap/bundle" not in html:
        raise BenchmarkError("the prediction page does not load shap's bundle")
    return {
        "prediction_id": prediction_id,
        "bytes": len(html),
        "gzip_bytes": len(gzip.compress(html)),
    }


def measure_batch_logging(server, bodies: list[bytes], batch_size: int) -> dict:
    """POST each body (a list of new predictions) once; predictions per second."""
    seconds = []
    for body in bodies:
        elapsed, response = server.request(
            "POST",
            PREDICTIONS_PATH,
            data=body,
            headers={"Content-Type": "application/json"},
        )
        answer = response.json()
        if response.status_code != 201 or len(answer) != batch_size:
            raise BenchmarkError(f"batch logging answered {response.status_code}")
        if not all(item["created"] for item in answer):
            raise BenchmarkError("batch logging found predictions already logged")
        seconds.append(elapsed / 1000)
    median = statistics.median(seconds)
    return {
        "batches": len(seconds),
        "batch_size": batch_size,
        "body_bytes": len(bodies[0]),
        "seconds": seconds,
        "seconds_median": median,
        "predictions_per_second": batch_size / median,
    }


def measure_over_http(server, workload: Workload, scale: Scale, *, log=print) -> dict:
    results: dict = {}
    log("== warm-up: every worker builds its explainers")
    warm_up(server, workload)
    log("== uncached explanation API vs bare shap_values, interleaved")
    with OtherLoad(server.pids) as other_load:
        results["uncached"] = measure_uncached(server, workload, log=log)
    results["uncached_other_cpu_share"] = other_load.share
    results["cached_http"] = {
        kind: measure_cached_http(
            server, [prediction_id for prediction_id, _ in workload.uncached[kind]]
        )
        for kind in KINDS
    }
    log(f"== batch logging, {len(workload.batch_bodies)} x {scale.batch_size}")
    results["batch_logging"] = measure_batch_logging(
        server, workload.batch_bodies, scale.batch_size
    )
    return results


def measure_in_process(workload: Workload, api_key: str, scale: Scale) -> dict:
    explained = [
        prediction_id
        for kind in KINDS
        for prediction_id in workload.warmup[kind]
        + [prediction_id for prediction_id, _row in workload.uncached[kind]]
    ]
    cached_ids = (explained * math.ceil(scale.cached_calls / len(explained)))[
        : scale.cached_calls
    ]
    return {
        "cached_in_process": measure_cached_in_process(api_key, cached_ids),
        "page_weight": {
            kind: measure_page_weight(workload.uncached[kind][0][0]) for kind in KINDS
        },
    }


# The table --------------------------------------------------------------------------


def summary_rows(results: dict) -> list[tuple[str, str, str, str]]:
    """(metric, value, target, PASS/MISS or "" for context) for table and JSON."""
    rows = []

    def add(metric, value, target="", passed=None):
        outcome = "" if passed is None else ("PASS" if passed else "MISS")
        rows.append((metric, value, target, outcome))

    for kind in KINDS:
        figures = results["uncached"][kind]
        add(
            f"uncached explanation API, {KIND_NAMES[kind]}",
            f"{figures['api_ms_median']:.2f} ms = {figures['ratio_to_bare']:.2f}x bare "
            f"{figures['bare_ms_median']:.2f} ms; empty request "
            f"{figures['empty_ms_median']:.2f} ms",
            f"<= {UNCACHED_FACTOR:g}x bare + empty = {figures['budget_ms']:.2f} ms",
            figures["api_ms_median"] <= figures["budget_ms"],
        )
    add(
        "empty request (/healthz) / empty API request",
        "; ".join(
            f"{KIND_NAMES[kind]} run {results['uncached'][kind]['empty_ms_median']:.2f}"
            f" / {results['uncached'][kind]['empty_api_ms_median']:.2f} ms"
            for kind in KINDS
        ),
    )
    cached = results["cached_in_process"]
    add(
        "cached explanation, server time (p90)",
        f"{cached['ms_median']:.2f} ms ({cached['ms_p90']:.2f} ms), "
        f"{len(cached['queries'])} queries",
        f"< {CACHED_MS:g} ms",
        cached["ms_median"] < CACHED_MS,
    )
    http = results["cached_http"]
    add(
        "cached explanation over HTTP",
        " / ".join(
            f"{KIND_NAMES[kind]} {http[kind]['ms_median']:.2f} ms" for kind in KINDS
        ),
    )
    heaviest = max(results["page_weight"].values(), key=lambda page: page["bytes"])
    add(
        "prediction page HTML, 30 features",
        f"{heaviest['bytes'] / KB:.1f} KB ({heaviest['gzip_bytes'] / KB:.1f} KB gzip)",
        f"< {PAGE_KB:g} KB",
        heaviest["bytes"] < PAGE_KB * KB,
    )
    batch = results["batch_logging"]
    add(
        f"batch logging, {batch['batch_size']:,} per request",
        f"{batch['predictions_per_second']:,.0f} predictions/s "
        f"({batch['seconds_median'] * 1000:.0f} ms per request)",
    )
    return rows


# The run ----------------------------------------------------------------------------


def reachable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 2).close()
    except OSError:
        return False
    return True


def environment(*, postgres: bool, redis: bool, temp_dir: Path) -> dict:
    """BASE_ENV with the database, Redis and artifact directory of this run."""
    if postgres:
        database_url = serving.PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + DATABASE_NAME
    else:
        database_url = f"sqlite:///{temp_dir / 'bench.sqlite3'}"
    return {
        **BASE_ENV,
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL if redis else "",
        "MODEL_ARTIFACT_DIR": str(temp_dir / "models"),
        "OPSCONSOLE_VAR_DIR": str(temp_dir / "var"),
        "STATIC_ROOT": str(temp_dir / "static"),  # empty: no static file is asked for
    }


def recreate_database() -> None:
    import psycopg

    with psycopg.connect(serving.PG_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {DATABASE_NAME} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {DATABASE_NAME}")


def database_version(connection) -> str:
    if connection.vendor != "postgresql":
        return connection.Database.sqlite_version
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return cursor.fetchone()[0]


def software_versions() -> dict:
    import django
    import gunicorn
    import lightgbm
    import numpy
    import shap
    import sklearn
    from django.db import connection

    return {
        "django": django.get_version(),
        "gunicorn": gunicorn.__version__,
        "shap": shap.__version__,
        "lightgbm": lightgbm.__version__,
        "scikit-learn": sklearn.__version__,
        "numpy": numpy.__version__,
        "database": f"{connection.vendor} {database_version(connection)}",
    }


class LiveServer:
    """gunicorn with 2 sync workers, as serving.py starts it, on this run's env."""

    workers = 2

    def __init__(self, *, api_key: str, env: dict, stamp: str):
        self.env = env
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = RESULTS_DIR / f"gunicorn-explanations-{stamp}.log"
        self.session = serving.api_session(api_key)
        self.server = None

    def __enter__(self) -> LiveServer:
        # serving.start_server runs gunicorn with serving.BENCH_ENV: swap in ours.
        with mock.patch.dict(serving.BENCH_ENV, self.env, clear=True):
            self.server = serving.start_server(self.port, self.log_path)
        return self

    def __exit__(self, *exc_info) -> None:
        if self.server is not None:
            stop_server(self.server)

    def pids(self) -> list[int]:
        """gunicorn's master and workers, and the database's backends."""
        from django.db import connection

        master = self.server.pid
        children = Path(f"/proc/{master}/task/{master}/children")
        pids = [master, *map(int, children.read_text().split())]
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = current_database()"
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
        if response.status_code >= 400:
            raise BenchmarkError(
                f"{method} {path} answered {response.status_code}: "
                f"{response.text[:300]}"
            )
        return elapsed_ms, response


def run(scale: Scale, *, log=print) -> dict:
    started_at = datetime.now(UTC)
    stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
    run_started = time.perf_counter()
    postgres, redis = reachable(5432), reachable(6379)
    temp_dir = Path(tempfile.mkdtemp(prefix="opsconsole-bench-expl-"))
    env = environment(postgres=postgres, redis=redis, temp_dir=temp_dir)
    results: dict = {
        "started_at": started_at.isoformat().replace("+00:00", "Z"),
        "scale": asdict(scale),
        "machine": machine_info(),
        "git": git_commit(),
        "database": "PostgreSQL" if postgres else "SQLite (PostgreSQL not reachable)",
        "redis": REDIS_URL if redis else "none (not reachable)",
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    try:
        os.environ.update(env)
        (temp_dir / "var").mkdir()
        (temp_dir / "static").mkdir()
        log(f"== database: {results['database']}; Redis: {results['redis']}")
        if postgres:
            recreate_database()
        if redis:
            import redis as redis_client

            redis_client.Redis.from_url(REDIS_URL).flushdb()
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connections

        call_command("migrate", interactive=False, verbosity=0)
        results["software"] = software_versions()
        log(
            f"== models: {scale.features} features, {scale.training_rows:,} rows; "
            f"LightGBM {scale.lightgbm_trees} trees, sklearn GBC "
            f"{scale.sklearn_trees} trees"
        )
        workload, results["data"] = prepare(
            scale, artifact_dir=Path(env["MODEL_ARTIFACT_DIR"]), log=log
        )
        api_key = create_api_key()
        connections.close_all()
        with LiveServer(api_key=api_key, env=env, stamp=stamp) as server:
            log(f"== gunicorn, 2 workers, on {server.base_url}")
            results.update(measure_over_http(server, workload, scale, log=log))
            results["server_log"] = str(server.log_path.relative_to(ROOT))
        log("== cached explanation (server time) and page weight, in this process")
        results.update(measure_in_process(workload, api_key, scale))
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    results["duration_s"] = time.perf_counter() - run_started
    rows = summary_rows(results)
    serving.save_results(
        results,
        rows,
        RESULTS_DIR / f"explanations-{stamp}.json",
        latest=RESULTS_DIR / "explanations-latest.json",
    )
    report(results, rows, stamp, log)
    return results


def report(results: dict, rows, stamp: str, log) -> None:
    log("")
    log(serving.machine_line(results))
    share = results.get("uncached_other_cpu_share")
    if share is not None:
        log(
            f"Other processes used {share:.0%} of the CPUs during the uncached runs"
            + (" -- a shared machine: expect noise." if share > 0.1 else ".")
        )
    log("")
    log(format_table(rows))
    log("")
    missed = [row[0] for row in rows if row[3] == "MISS"]
    log(f"TARGETS MISSED: {'; '.join(missed)}" if missed else "All targets met.")
    log(
        f"Raw figures: benchmarks/results/explanations-{stamp}.json "
        f"(and explanations-latest.json); the run took {results['duration_s']:.0f} s."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="Fewer calls per measurement (same models), to try it out.",
    )
    arguments = parser.parse_args(argv)
    try:
        run(QUICK if arguments.quick else Scale())
    except BenchmarkError as error:
        print(f"BENCHMARK FAILED: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
