"""Bad input at scale, part 2: through a real HTTP server (pytest-django's live
server) with `requests`. Every bad request gets a clear 4xx in the contract's error
shape, `{"error": {"code", "message", "fields"}}`, and writes nothing.

The 100 MB uploads are streamed, and the server's memory is traced while it answers:
the endpoint reads at most its limit (DATA_UPLOAD_MAX_MEMORY_SIZE, 5 MB) and never
holds the whole body.
"""

import json
import random
import tracemalloc
from datetime import timedelta

import pytest
import requests
from django.conf import settings
from django.core.servers import basehttp
from django.utils import timezone

from overrides import services

from .input_props import written_state

pytestmark = pytest.mark.django_db(transaction=True)

MB = 1024 * 1024
UPLOAD_SIZE = 100 * MB
BULK = "/api/v1/blocks/bulk"
PREDICTIONS = "/api/v1/predictions"
RANK = "/api/v1/serving/rank"
OPTOUTS = "/api/v1/privacy/optouts"
OPTOUTS_WITHDRAW = "/api/v1/privacy/optouts/withdraw"
DELETION_REQUESTS = "/api/v1/privacy/deletion-requests"
BLOCKS = "/api/v1/blocks"
SCOPES = {
    BULK: "overrides:write",
    BLOCKS: "overrides:write",
    PREDICTIONS: "predictions:write",
    RANK: "serving:read",
    OPTOUTS: "privacy:write",
    OPTOUTS_WITHDRAW: "privacy:write",
    DELETION_REQUESTS: "privacy:write",
}
JSON_ENDPOINTS = [RANK, PREDICTIONS, OPTOUTS, OPTOUTS_WITHDRAW, DELETION_REQUESTS, BULK]


@pytest.fixture
def post(live_server, api_key_for):
    """`post(path, body, content_type)`: a POST with a key holding the path's scope."""
    keys = {}

    def _post(path: str, body, content_type: str = "application/json", **kwargs):
        scope = SCOPES[path]
        if scope not in keys:
            keys[scope] = api_key_for(scope)
        headers = {"Authorization": f"Bearer {keys[scope]}"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        return requests.post(
            live_server.url + path, data=body, headers=headers, timeout=120, **kwargs
        )

    return _post


def assert_contract_error(response, status: int) -> dict:
    """The status, and the contract's error shape with a message worth reading."""
    assert response.status_code == status, response.text[:500]
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and len(error["message"]) > 10
    assert isinstance(error["fields"], dict)
    return error


# 100 MB uploads --------------------------------------------------------------------


class RepeatedBody:
    """A request body of `size` bytes made by repeating `unit`, produced as it is
    sent: `requests` streams any object with `read` and `__len__`."""

    def __init__(self, unit: bytes, size: int, head: bytes = b""):
        self.head, self.size, self.sent = head, size, 0
        self.block = unit * (64 * 1024 // len(unit) + 1)

    def __len__(self) -> int:
        return self.size

    def read(self, amount: int = -1) -> bytes:
        left = self.size - self.sent
        if left <= 0:
            return b""
        if self.sent == 0 and self.head:
            chunk = self.head
        else:
            wanted = left if amount is None or amount < 0 else min(amount, left)
            chunk = self.block[: min(wanted, len(self.block))]
        chunk = chunk[:left]
        self.sent += len(chunk)
        return chunk


@pytest.fixture
def server_peak_memory(monkeypatch):
    """Trace this process's allocations (the live server runs in a thread of it)
    and record the peak when the server has answered a request.

    The development server then drains the unread rest of the body in one read
    (basehttp.ServerHandler.close); that is the test server's doing, not the
    console's, so the peak is taken just before it.
    """
    peaks: list[int] = []
    original_close = basehttp.ServerHandler.close

    def close(handler):
        peaks.append(tracemalloc.get_traced_memory()[1])
        original_close(handler)

    monkeypatch.setattr(basehttp.ServerHandler, "close", close)
    tracemalloc.start()
    tracemalloc.reset_peak()
    yield peaks
    tracemalloc.stop()


@pytest.mark.parametrize(
    ("path", "content_type", "head", "unit"),
    [
        (BULK, "text/csv", b"item_id,reason\n", b"sku-000001,Recall\n"),
        (BULK, "application/json", b"[", b'{"item_id": "sku-1", "reason": "x"},'),
        (
            PREDICTIONS,
            "application/json",
            b"[",
            b'{"prediction_id": "p-1", "model": "m", "model_version": "1", '
            b'"features": {"a": 1}, "output": 0.5},',
        ),
    ],
    ids=["bulk-csv", "bulk-json", "predictions"],
)
def test_upload__100_mb_streamed__413_without_buffering_it(
    post, server_peak_memory, path, content_type, head, unit, record_property
):
    before = written_state()
    body = RepeatedBody(unit, UPLOAD_SIZE, head=head)

    response = post(path, body, content_type)

    error = assert_contract_error(response, 413)
    assert error["code"] == "too_large"
    assert body.sent == UPLOAD_SIZE  # streamed in full: the server kept reading
    [peak] = server_peak_memory
    record_property("server_peak_bytes", peak)
    print(f"{path} {content_type}: traced peak while answering {peak / MB:.1f} MB")
    # The limit plus parsing overhead, far from the 100 MB sent.
    assert peak < settings.DATA_UPLOAD_MAX_MEMORY_SIZE * 3
    assert written_state() == before


# Rank: 10,000 candidates --------------------------------------------------------


def _candidates(count: int) -> list[dict]:
    return [
        {"item_id": f"sku-{index:05d}", "score": 1 / (index + 1)}
        for index in range(count)
    ]


def test_rank__10000_candidates__200_sorted(post):
    candidates = _candidates(10_000)
    random.Random(6).shuffle(candidates)

    response = post(RANK, json.dumps({"candidates": candidates}))

    assert response.status_code == 200, response.text[:300]
    scores = [item["score"] for item in response.json()["items"]]
    assert len(scores) == 10_000
    assert scores == sorted(scores, reverse=True)


def test_rank__duplicates_among_10000_or_10001_candidates__400_names_the_problem(post):
    # Duplicates anywhere (first pair, middle, last) and a list over the limit.
    cases = []
    for duplicate_at in (1, 5_000, 9_999):
        candidates = _candidates(10_000)
        candidates[duplicate_at] = {"item_id": "sku-00000", "score": 0.1}
        cases.append(
            (candidates, f"Item {duplicate_at}: duplicate item_id 'sku-00000'.")
        )
    cases.append(
        ([{"item_id": "sku-1", "score": 0.5}] * 10_000, "Item 1: duplicate item_id")
    )
    cases.append((_candidates(10_001), "At most 10000 candidates (got 10001)."))
    before = written_state()

    for candidates, expected in cases:
        response = post(RANK, json.dumps({"candidates": candidates}))

        error = assert_contract_error(response, 400)
        assert list(error["fields"]) == ["candidates"]
        assert error["fields"]["candidates"][0].startswith(expected)
    assert written_state() == before


def test_rank__boosted_score_past_the_largest_float__still_a_number(post, manager):
    # A finite score is valid input; a boost must not turn it into JSON null.
    services.boost_create(
        item_id="sku-1",
        factor=5.0,
        surface=None,
        region=None,
        reason="Launch",
        actor=manager,
        ends_at=timezone.now() + timedelta(days=1),
    )
    candidates = [
        {"item_id": "sku-1", "score": 1.5e308},
        {"item_id": "sku-2", "score": 1.7e308},
    ]

    response = post(RANK, json.dumps({"candidates": candidates}))

    assert response.status_code == 200, response.text[:300]
    items = response.json()["items"]
    assert [item["item_id"] for item in items] == ["sku-1", "sku-2"]
    assert all(isinstance(item["score"], float) for item in items)


# Deeply nested, malformed and mistyped bodies, on every JSON endpoint ---------------
# One test per kind of input walks every endpoint (a test costs a database flush on
# the live server's database; the cases are cheap), and lists every case that fails.


def _failures(post, cases) -> list[str]:
    """Send each (path, body, content type, status, words the error must contain);
    return what went wrong with any of them (a wrong answer or a write)."""
    failures = []
    for path, body, content_type, status, words in cases:
        before = written_state()
        response = post(path, body, content_type)
        label = f"{path} {content_type} {body[:40]!r}"
        try:
            error = assert_contract_error(response, status)
            text = json.dumps(error, ensure_ascii=False)
            assert all(word in text for word in words), text[:300]
            assert written_state() == before, "it wrote something"
        except (AssertionError, ValueError, KeyError) as failure:
            failures.append(f"{label}: {failure}")
    return failures


NESTED_BODIES = [
    "[" * 100_000 + "]" * 100_000,
    '{"a": ' * 100_000 + "1" + "}" * 100_000,
    '{"candidates": ' + "[" * 100_000 + "]" * 100_000 + "}",
]
MALFORMED_BODIES = [
    b'{"customer_id": "c-1",',
    b"{'customer_id': 'c-1'}",
    b'{"customer_id": "c-1"} trailing',
    b'{"customer_id": "\xff\xfe"}',
    b'{"customer_id": "\\ud800"}',
    b"\x00\x01\x02",
    b'{"candidates": [{"item_id": "sku-1", "score": NaN}]}',
    b'{"candidates": [{"item_id": "sku-1", "score": Infinity}]}',
    b'{"candidates": [{"item_id": "sku-1", "score": -Infinity}]}',
]


def test_json_endpoints__100000_levels_of_nesting__400_and_nothing_written(post):
    cases = [
        (path, body, "application/json", 400, ["JSON parse error"])
        for path in JSON_ENDPOINTS
        for body in NESTED_BODIES
    ]

    assert _failures(post, cases) == []


def test_json_endpoints__malformed_json_or_non_finite_literals__400_nothing_written(
    post,
):
    cases = [
        (path, body, "application/json", 400, ["JSON parse error"])
        for path in JSON_ENDPOINTS
        for body in MALFORMED_BODIES
    ]
    cases.append(
        (
            RANK,
            b'{"candidates": [{"item_id": "a", "score": 1e999}]}',
            "application/json",
            400,
            [],  # orjson refuses it, or reads it as infinity: a 400 either way
        )
    )

    assert _failures(post, cases) == []


def test_json_endpoints__wrong_content_type__415_and_nothing_written(post):
    body = b'{"customer_id": "c-1", "kinds": ["training"], "source": "T-1"}'
    content_types = [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
        "image/png",
    ]
    cases = [
        (path, body, content_type, 415, ["unsupported_media_type"])
        for path in JSON_ENDPOINTS
        for content_type in content_types
    ]
    cases += [
        (path, b"item_id\nsku-1\n", "text/csv", 415, ["text/csv"])
        for path in (RANK, PREDICTIONS, OPTOUTS, DELETION_REQUESTS)
    ]

    assert _failures(post, cases) == []


INVALID_VALUES = [
    (OPTOUTS, {"customer_id": "c 1", "kinds": ["training"], "source": "T-1"}),
    (OPTOUTS, {"customer_id": "c-1", "kinds": ["everything"], "source": "T-1"}),
    (OPTOUTS, {"customer_id": "c-1", "kinds": ["training"], "source": "a\x00b"}),
    (
        OPTOUTS_WITHDRAW,
        {"customer_id": "x" * 257, "kinds": ["training"], "source": "T"},
    ),
    (DELETION_REQUESTS, {"customer_id": "c\u200b1", "source": "T-1"}),
    (DELETION_REQUESTS, {"customer_id": "c-1", "source": "T-1", "received_at": "soon"}),
    (DELETION_REQUESTS, {"customer_id": ["c-1"], "source": "T-1"}),
    (
        PREDICTIONS,
        {
            "prediction_id": "p 1",
            "model": "m",
            "model_version": "1",
            "features": {},
            "output": 1,
        },
    ),
    (PREDICTIONS, [{"prediction_id": f"p-{n}"} for n in range(1_001)]),
    (RANK, {"candidates": [{"item_id": "sku\ue000", "score": 1}]}),  # private use
    (RANK, {"candidates": [{"item_id": "sku\u0600", "score": 1}]}),  # Cf
    (RANK, {"customer_id": "c\ue000", "candidates": [{"item_id": "a", "score": 1}]}),
    (BLOCKS, {"item_id": "sku\ue000", "surface": None, "region": None, "reason": "R"}),
    (
        BLOCKS,
        {
            "item_id": "sku-1",
            "surface": None,
            "region": None,
            "reason": "R",
            "expires_at": "9999-12-31T23:00:00-05:00",
        },
    ),
    (BULK, [{"item_id": ["sku-1"], "reason": "Recall"}]),
    (BULK, [{"item_id": "sku-1", "reason": "Recall", "surface": "ho\x00me"}]),
    (BULK, [{"item_id": "sku-1", "reason": "Re\x00call"}]),
    (
        BULK,
        [{"item_id": "sku-1", "reason": "R", "expires_at": "9999-12-31T23:00-05:00"}],
    ),
]


def test_json_endpoints__invalid_values__400_and_nothing_written(post):
    cases = [
        (path, json.dumps(body).encode(), "application/json", 400, [])
        for path, body in INVALID_VALUES
    ]

    assert _failures(post, cases) == []


# Bulk CSV: encodings and rows ---------------------------------------------------


def test_bulk_csv__not_utf_8__400_names_the_encoding_and_nothing_written(post):
    uploads = [
        "item_id,reason\nsku-1,Rückruf\nsku-é,Recall\n".encode("latin-1"),
        "item_id,reason\nsku-1,Recall\n".encode("utf-16"),
        bytes(random.Random(6).getrandbits(8) for _ in range(4096)),
        b"item_id,reason\nsku-1,Recall\n\xc3\x28\n",
    ]
    cases = [
        (BULK, data, "text/csv", 400, ["not UTF-8", "Save it as CSV UTF-8"])
        for data in uploads
    ]

    assert _failures(post, cases) == []


def test_bulk_csv__unreadable_or_bad_rows__400_says_why_and_nothing_written(post):
    uploads = [
        (b"item_id," + b"x" * 200_000 + b"\nsku-1,y\n", "header cannot be read"),
        (b'item_id,reason\n"' + b"x" * 200_000 + b'",R\n', "cannot be read"),
        (b"item_id,reason\nsku-1,Recall,extra\n", "Line 2: This row has more values"),
        (b"reason\nRecall\n", "item_id column"),
        ("\ufeffitem_id,reason\nsku 1,Recall\n".encode(), "Line 2: item_id"),
        (b'item_id,reason\r\nsku-1,"Re\x00call"\r\n', "Line 2: reason"),
        (b"item_id,reason\nsku-1,R\n" * 5_001, "At most 5000 rows"),
    ]
    cases = [(BULK, data, "text/csv", 400, [words]) for data, words in uploads]

    assert _failures(post, cases) == []


def test_bulk_csv__bom_and_crlf__201_applies_every_row(post):
    data = '\ufeffitem_id,reason\r\nsku-1,Recall\r\n"sku-2","Recall, again"\r\n'
    before = written_state()

    response = post(BULK, data.encode(), "text/csv")

    assert response.status_code == 201, response.text[:300]
    assert written_state()["blocks"] == before["blocks"] + 2
    assert written_state()["version"] == before["version"] + 2
