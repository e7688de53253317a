"""Faults that fit in the suite (benchmarks/faults.py runs them all, at scale).

- The console's gunicorn is really stopped under a running OverridesClient: the
  client keeps answering from its last rules (blocks applied, opt-outs failing
  closed), and catches up on what changed meanwhile once gunicorn is back.
- The fault script itself, small: a private PostgreSQL cluster restarted (as in a
  crash) while deletion requests are filed and carried out; nothing is lost.

The worker SIGKILL and the Redis restart mid-deletion are in
tests/privacy/test_worker.py.
"""

import json
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.db import connection

from benchmarks import serving as bench
from opsconsole_client import OverridesClient
from overrides import services
from tests.conftest import ROOT, wait_until

pytestmark = pytest.mark.services

SURFACE, REGION = "home", "SG"
ANSWERS_WHILE_DOWN = 30
OPEN_AT_RESTART = 5


def _console_env(monkeypatch) -> None:
    """gunicorn (bench.start_server) on this test's database, Redis and channel."""
    database = connection.settings_dict
    for name, value in {
        "DATABASE_URL": (
            f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/"
            f"{database['NAME']}"
        ),
        "REDIS_URL": settings.REDIS_URL,
        "CACHE_KEY_PREFIX": settings.CACHES["default"]["KEY_PREFIX"],
        "OVERRIDES_CHANNEL": settings.OVERRIDES_CHANNEL,
    }.items():
        monkeypatch.setitem(bench.BENCH_ENV, name, value)


def _block(item_id: str, actor) -> int:
    block = services.block_item(
        item_id=item_id,
        surface=SURFACE,
        region=REGION,
        reason="Fault injection test",
        actor=actor,
    )
    return block.changed_version


def test_console_stopped__client_answers_from_last_rules__catches_up_after(
    transactional_db, api_key_for, agent, monkeypatch, tmp_path
):
    # Given a real console (gunicorn) and a client that has its rules
    _block("sku-blocked-before", agent)
    _console_env(monkeypatch)
    port = bench.free_port()
    console = bench.start_server(port, tmp_path / "gunicorn-1.log")
    client = None
    try:
        client = OverridesClient(
            f"http://127.0.0.1:{port}",
            api_key_for("serving:read"),
            surface=SURFACE,
            region=REGION,
            redis_url=settings.REDIS_URL,
            channel=settings.OVERRIDES_CHANNEL,
            snapshot_path=tmp_path / "snapshot.json",
            poll_interval=0.1,
            timeout=1.0,
        )
        assert client.is_blocked("sku-blocked-before")
        candidates = [
            {"item_id": "sku-blocked-before", "score": 0.9},
            {"item_id": "sku-ok", "score": 0.5},
        ]
        assert client.rank(candidates, customer_id="c-up").personalized is True

        # When the console stops, and a block is written meanwhile
        bench.stop_server(console)
        console = None
        new_version = _block("sku-blocked-while-down", agent)
        # Then every call is answered from the last rules: the block applies,
        # and customers it cannot ask about are not personalised (a count, not a
        # time: a busy machine answers as many, only more slowly)
        started = time.monotonic()
        for answer in range(ANSWERS_WHILE_DOWN):
            result = client.rank(candidates, customer_id=f"c-down-{answer}")
            assert [item for item, _score in result.items] == ["sku-ok"]
            assert result.personalized is False
            assert client.is_blocked("sku-blocked-before")
            time.sleep(0.02)
        # And promptly: a generous bound (they take about a second here), which
        # answers that each waited out the client's 1 s timeout would miss
        assert time.monotonic() - started < 15
        assert client.version < new_version
        assert not client.is_blocked("sku-blocked-while-down")

        # And once the console is back, the client catches up with the change
        console = bench.start_server(port, tmp_path / "gunicorn-2.log")
        wait_until(lambda: client.version >= new_version, timeout=20, interval=0.1)
        assert client.is_blocked("sku-blocked-while-down")
        assert client.rank(candidates, customer_id="c-back").personalized is True
    finally:
        if client is not None:
            client.close()
        if console is not None:
            bench.stop_server(console)


def test_fault_script__postgres_restarted_during_deletions__nothing_lost(tmp_path):
    # Given the fault script at a small scale, with only the PostgreSQL restart
    output = tmp_path / "faults.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.faults",
            "--requests",
            "40",
            "--scale",
            "0.3",
            "--only",
            "postgres",
            # Downstreams slower than the intake (2 workers x 2 deliveries/s, 3 per
            # request) build a backlog, and the restart waits for 5 open requests
            "--downstream-delay",
            "0.5",
            "--fault-when-open",
            str(OPEN_AT_RESTART),
            "--output",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    # Then it completes, and the restart came while requests were still open
    assert completed.returncode == 0, (
        completed.stdout[-3000:] + completed.stderr[-3000:]
    )
    results = json.loads(output.read_text())
    (fault,) = results["faults"]
    assert fault["fault"].startswith("restart PostgreSQL")
    assert fault["deletions_open_before"] >= OPEN_AT_RESTART
    summary = results["summary"]
    assert summary["lost"] == 0
    assert summary["requests"]["deletion requests"] == 40
    assert results["deletions"]["completed"] == 40
    assert summary["client_errors"] == 0
