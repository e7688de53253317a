"""benchmarks/serving.py and benchmarks/explanations.py at a tiny scale: their data
setup, answer checks and measurements run, so `make benchmarks` does not find a
broken code path after minutes of loading. No timing is asserted: the speed targets
live in benchmarks/.
"""

import os
import time

import pytest
from django.test import Client

from benchmarks import explanations as explanations_bench
from benchmarks import serving as bench
from explanations import explainers
from explanations.models import Explanation, Prediction
from opsconsole_client.rules import RuleSet
from overrides import serving
from overrides.models import Block, Boost, OptOut

BLOCKS, BOOSTS, CUSTOMERS = 200, 20, 1_000

WRK_POST_OUTPUT = """\
Running 15s test @ http://127.0.0.1:40123/api/v1/serving/rank
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.10ms    3.02ms  48.21ms   91.02%
    Req/Sec   331.52     40.18   400.00     70.00%
  Latency Distribution
     50%  850.00us
     75%    6.90ms
     90%    8.41ms
     99%    1.20s
  4953 requests in 15.00s, 61.12MB read
  Socket errors: connect 0, read 4953, write 0, timeout 0
Requests/sec:    330.18
Transfer/sec:      4.07MB
"""


@pytest.fixture(autouse=True)
def _forget_server_ruleset():
    """The server caches its RuleSet per process; this test loads its own rules."""
    serving.forget_ruleset()
    yield
    serving.forget_ruleset()


@pytest.fixture
def loaded(db):
    """Blocks, boosts and opt-outs as the benchmark loads them, a hundredth as many."""
    bench.load_rules(blocks=BLOCKS, boosts=BOOSTS, actor=bench.bench_user())
    return bench.load_optouts(customers=CUSTOMERS)


@pytest.fixture
def workload(loaded):
    _figures, document = bench.measure_snapshot_build(repeat=1)
    return bench.build_workload(
        RuleSet.from_document(document),
        candidates=200,
        optout_check_ids=100,
        optout_customers=CUSTOMERS,
    )


def test_load__tiny_scale__writes_every_rule_and_optout(loaded):
    assert Block.objects.count() == BLOCKS
    assert Boost.objects.count() == BOOSTS
    # Everyone opted out of personalisation, every third customer of training too.
    assert loaded == OptOut.objects.count() == CUSTOMERS + (CUSTOMERS + 2) // 3


def test_workload__tiny_scale__mixes_blocked_boosted_and_plain_candidates(workload):
    candidates = workload.rank_body["candidates"]
    item_ids = [candidate["item_id"] for candidate in candidates]
    assert len(item_ids) == len(set(item_ids)) == 200
    assert workload.blocked_ids and workload.boosted_ids
    assert workload.blocked_ids | workload.boosted_ids <= set(item_ids)
    assert len(workload.optout_body["customer_ids"]) == 100
    assert "customer_id" not in workload.anonymous_rank_body


@pytest.mark.urls("benchmarks.urls")
def test_endpoints__benchmark_bodies__answers_pass_the_benchmark_checks(
    workload, api_key_for
):
    # Given the benchmark's bodies and a serving key
    client = Client(HTTP_AUTHORIZATION=f"Bearer {api_key_for('serving:read')}")

    def post(path, body):
        response = client.post(path, body, content_type="application/json")
        assert response.status_code == 200, response.content
        return response.json()

    # When each endpoint the benchmark loads answers them
    rank = post(bench.RANK_PATH, workload.rank_body)
    anonymous_rank = post(bench.RANK_PATH, workload.anonymous_rank_body)
    optouts = post(bench.OPTOUTS_PATH, workload.optout_body)
    baseline = post(bench.BASELINE_PATH, workload.rank_body)

    # Then the answers are the ones the benchmark refuses to time without
    bench.check_rank_answer(rank, workload, personalized=False)
    bench.check_rank_answer(anonymous_rank, workload, personalized=True)
    bench.check_optouts_answer(optouts, workload)
    assert 0 < len(baseline["items"]) <= len(workload.rank_body["candidates"])


def test_check_rank_answer__nothing_removed__refuses_to_measure(workload):
    answer = {
        "personalized": False,
        "removed": [],
        "items": [
            {**candidate, "boosted": False}
            for candidate in workload.rank_body["candidates"]
        ],
    }
    with pytest.raises(bench.BenchmarkError, match="removed 0"):
        bench.check_rank_answer(answer, workload, personalized=False)


def test_snapshot_and_local_rank__tiny_scale__report_figures(loaded, workload):
    figures, document = bench.measure_snapshot_build(
        surface=bench.SCOPE_SURFACE, region=bench.SCOPE_REGION, repeat=2
    )
    assert 0 < figures["blocked"] == len(document["blocked"]) < BLOCKS
    assert figures["bytes"] > 0 and len(figures["build_ms"]) == 2

    local = bench.measure_client_local_rank(
        document,
        workload.rank_body["candidates"],
        surface=bench.SCOPE_SURFACE,
        region=bench.SCOPE_REGION,
        rounds=2,
        number=3,
    )
    assert len(local["rank_us"]) == len(local["floor_us"]) == 2
    assert local["ratio"] > 0


def test_measure_view_work__tiny_scale__rank_phases_and_baseline(loaded, workload):
    rules = serving.ruleset()
    work = bench.measure_view_work(
        rules,
        workload.rank_body,
        surface=bench.SCOPE_SURFACE,
        region=bench.SCOPE_REGION,
        rounds=2,
        number=3,
    )
    assert work["rank_us"] > 0 and work["baseline_us"] > 0
    assert set(work["rank_phases_us"]) == {"check", "rules_and_sort", "json"}
    assert all(value > 0 for value in work["rank_phases_us"].values())


def test_plain_python_floor__drops_blocked__sorts_by_score():
    candidates = [
        {"item_id": "a", "score": 0.1},
        {"item_id": "b", "score": 0.9},
        {"item_id": "c", "score": 0.5},
    ]
    ranked = bench.plain_python_floor(candidates, {"b"})
    assert [item["item_id"] for item in ranked] == ["c", "a"]


class _VersionReader:
    """Stands in for the client: sees a version once the console has it."""

    @property
    def version(self) -> int:
        return serving.current_version()


def test_measure_propagation__committed_blocks__times_each_change(transactional_db):
    result = bench.measure_propagation(
        client=_VersionReader(),
        make_change=bench.block_change(bench.bench_user(), prefix="smoke"),
        changes=3,
        pause_seconds=0,
    )
    assert result["missed"] == 0
    assert len(result["latencies_ms"]) == 3
    assert Block.objects.filter(item_id__startswith="smoke-").count() == 3


def test_parse_wrk__post_run__reads_rate_percentiles_and_errors():
    result = bench.parse_wrk(WRK_POST_OUTPUT)
    assert result["requests_per_second"] == 330.18
    assert result["requests"] == 4953
    assert result["p50_ms"] == 0.85
    assert result["p99_ms"] == 1200.0
    assert result["socket_errors"]["read"] == 4953
    assert result["non_2xx_3xx"] == 0


def test_parse_wrk__not_modified_script__reads_the_answer_counts():
    output = WRK_POST_OUTPUT.replace(
        "Requests/sec",
        "Non-2xx or 3xx responses: 7\nAnswers 304: 4946, other: 7\nRequests/sec",
    )
    result = bench.parse_wrk(output)
    assert result["non_2xx_3xx"] == 7
    assert (result["answers_304"], result["answers_other"]) == (4946, 7)


def test_parse_wrk__not_wrk_output__raises():
    with pytest.raises(bench.BenchmarkError):
        bench.parse_wrk("connection refused")


def test_percentile__hundred_values__is_nearest_rank():
    values = list(range(1, 101))
    assert bench.percentile(values, 0.5) == 50
    assert bench.percentile(values, 0.99) == 99
    assert bench.percentile([7.0], 0.99) == 7.0


def test_summary_rows__figures__marks_each_target_pass_or_miss():
    wrk_figures = {
        "requests_per_second": 100.0,
        "p50_ms": 1.0,
        "p90_ms": 2.0,
        "p99_ms": 3.0,
    }
    built = {"blocked": 10, "build_ms_median": 5.0, "encode_ms_median": 1.0}
    results = {
        "rest_rank": {
            "rank": wrk_figures,
            "rank_anonymous": wrk_figures,
            "baseline": {**wrk_figures, "requests_per_second": 200.0},
            "ratio": 0.5,
        },
        "client_local_rank": {
            "rank_us_min": 200.0,
            "floor_us_min": 100.0,
            "ratio": 2.0,
            "ratio_of_medians": 2.1,
        },
        "propagation": {
            "changes": 100,
            "median_ms": 50.0,
            "p99_ms": 90.0,
            "max_ms": 95.0,
            "missed": 0,
        },
        "optouts_check": wrk_figures,
        "snapshot": {**built, "bytes": 1000},
        "snapshot_scoped": {**built, "bytes": 100},
        "snapshot_http": {"first_ms": 10.0, "cached_ms": 2.0},
        "snapshot_304": wrk_figures,
        "healthz": wrk_figures,
        "rank_after_change": {"first_ms_median": 9.0, "max_ms": 12.0},
        "scale": {"wrk_connections": 2},
        "view_work": {
            "extra_us": 2500.0,
            "rank_phases_us": {"check": 1.0, "rules_and_sort": 2.0, "json": 3.0},
        },
    }
    rows = {row[0]: row for row in bench.summary_rows(results)}
    # 2 connections at 200 req/s: 10 ms a request, 12.5 with rank's own work
    assert rows["rank view's own work over baseline's"][1].endswith("ratio <= 0.80x")
    assert rows["REST rank req/s, 1,000 cand., c=2"][3] == "MISS"
    assert rows["client-local rank vs floor, 1,000 cand."][3] == "PASS"
    assert rows["snapshot 304 p50 (p99)"][3] == "PASS"
    assert rows["baseline p50 / p90 / p99"][2:] == ("", "")
    assert "MISS" in bench.format_table(list(rows.values()))


# benchmarks/explanations.py ---------------------------------------------------------

EXPLANATIONS_TINY = explanations_bench.Scale(
    features=6,
    training_rows=300,
    lightgbm_trees=10,
    sklearn_trees=5,
    uncached_calls=3,
    cached_calls=4,
    batch_size=20,
    batches=2,
    warmup_calls=2,
)


class _InProcessServer:
    """Django's test client in place of gunicorn, with LiveServer's interface."""

    workers = 1

    def __init__(self, api_key: str):
        self.client = Client(HTTP_AUTHORIZATION=f"Bearer {api_key}")

    def request(self, method: str, path: str, *, data=b"", headers=None):
        started = time.perf_counter()
        response = self.client.generic(
            method, path, data, content_type="application/json"
        )
        elapsed_ms = (time.perf_counter() - started) * 1000
        if response.status_code >= 400:
            raise bench.BenchmarkError(f"{path} answered {response.status_code}")
        return elapsed_ms, response

    def pids(self) -> list[int]:
        return [os.getpid()]


@pytest.fixture
def explanation_workload(db, settings, tmp_path):
    """The benchmark's two models and predictions, tiny, on the test database."""
    settings.MODEL_ARTIFACT_DIR = tmp_path / "models"
    explainers.forget_explainers()
    yield explanations_bench.prepare(
        EXPLANATIONS_TINY, artifact_dir=tmp_path / "models", log=lambda *_: None
    )
    explainers.forget_explainers()


@pytest.mark.urls("benchmarks.urls")
def test_explanation_benchmark__tiny_scale__every_measurement_runs(
    explanation_workload,
):
    # Given the benchmark's models, predictions and key, at a tiny scale
    workload, data = explanation_workload
    api_key = explanations_bench.create_api_key()

    # When every measurement runs, the test client standing in for gunicorn
    results = {
        "data": data,
        **explanations_bench.measure_over_http(
            _InProcessServer(api_key), workload, EXPLANATIONS_TINY, log=lambda *_: None
        ),
        **explanations_bench.measure_in_process(workload, api_key, EXPLANATIONS_TINY),
    }

    # Then the answers were checked against shap and every figure is there
    assert data["models"]["lightgbm"]["trees"] == 10
    assert data["models"]["sklearn"]["trees"] == 5
    for kind in explanations_bench.KINDS:
        uncached = results["uncached"][kind]
        assert uncached["calls"] == 3 and uncached["budget_ms"] > 0
        assert results["page_weight"][kind]["bytes"] > 0
    assert Explanation.objects.count() == 2 * (3 + 2)
    assert len(results["cached_in_process"]["queries"]) == 1
    assert results["batch_logging"]["predictions_per_second"] > 0
    assert Prediction.objects.filter(prediction_id__startswith="batch-").count() == 40
    rows = explanations_bench.summary_rows(results)
    assert {row[3] for row in rows} <= {"PASS", "MISS", ""}
    assert "uncached explanation API, LightGBM" in bench.format_table(rows)


def test_check_explanation__values_not_shaps__refuses_to_measure():
    answer = {
        "prediction_id": "p-1",
        "base_value": 0.0,
        "output": 1.0,
        "contributions": [
            {"feature": "a", "shap": 0.5},
            {"feature": "b", "shap": 0.5},
        ],
    }
    explanations_bench.check_explanation(answer, [0.5, 0.5], ["a", "b"])

    with pytest.raises(bench.BenchmarkError, match="from shap"):
        explanations_bench.check_explanation(answer, [0.7, 0.3], ["a", "b"])


def test_explanation_summary_rows__over_budget__miss():
    uncached = {
        "api_ms_median": 7.0,
        "bare_ms_median": 3.0,
        "empty_ms_median": 1.0,
        "budget_ms": 5.5,
        "empty_api_ms_median": 1.4,
        "ratio_to_bare": 7 / 3,
    }
    results = {
        "uncached": {
            "lightgbm": uncached,
            "sklearn": {**uncached, "api_ms_median": 5.0},
        },
        "cached_in_process": {"ms_median": 1.2, "ms_p90": 1.5, "queries": ["q"]},
        "cached_http": {kind: {"ms_median": 2.0} for kind in explanations_bench.KINDS},
        "page_weight": {"lightgbm": {"bytes": 31_000, "gzip_bytes": 4_000}},
        "batch_logging": {
            "batch_size": 1000,
            "predictions_per_second": 5000.0,
            "seconds_median": 0.2,
        },
    }

    rows = {row[0]: row for row in explanations_bench.summary_rows(results)}

    assert rows["uncached explanation API, LightGBM"][3] == "MISS"
    assert rows["uncached explanation API, sklearn GBC"][3] == "PASS"
    assert rows["cached explanation, server time (p90)"][3] == "PASS"
    assert rows["prediction page HTML, 30 features"][3] == "MISS"


def test_fault_summary__over_fifty_wrong_answers__counts_every_one():
    from benchmarks import faults

    class Checks(faults.Activity):
        def step(self) -> bool:
            return True

    # Given a client activity that noted more wrong answers than it keeps samples of
    activity = Checks("client")
    for number in range(60):
        activity.note_failure(f"wrong answer {number}")
    deletions = dict.fromkeys(
        [
            "requests_not_completed",
            "deliveries_expected",
            "deliveries",
            "deliveries_not_acknowledged",
            "acknowledgements_not_exactly_once",
            "deliveries_not_processed_downstream",
            "customers",
            "downstream_calls",
            "customers_with_two_requests",
            "keys_with_differing_bodies",
            "bad_signatures",
            "processed_downstream_unknown_to_console",
        ],
        0,
    )
    overrides = dict.fromkeys(
        ["missing_in_database", "missing_in_change_feed", "missing_in_client", "sent"],
        0,
    )

    summary = faults.summarise(
        {
            "deletions": deletions,
            "overrides": overrides,
            "faults": [],
            "rank_load": {},
            "client": activity.report(versions_seen=1),
        }
    )

    assert len(activity.report()["failure_samples"]) == 50
    assert summary["client_wrong_answers"] == 60
