"""Rank semantics (contract, Serving), on the evaluation shared by server and client."""

from datetime import UTC, datetime, timedelta

import pytest

from opsconsole_client.rules import RuleSet

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def _block(
    rule_id, item_id, surface=None, region=None, start=NOW - timedelta(days=1), end=None
):
    return {
        "id": rule_id,
        "item_id": item_id,
        "surface": surface,
        "region": region,
        "starts_at": _iso(start),
        "expires_at": _iso(end),
    }


def _boost(
    rule_id,
    item_id,
    factor,
    surface=None,
    region=None,
    start=NOW - timedelta(days=1),
    end=NOW + timedelta(days=1),
):
    return {
        "id": rule_id,
        "item_id": item_id,
        "factor": factor,
        "surface": surface,
        "region": region,
        "starts_at": _iso(start),
        "ends_at": _iso(end),
    }


def _rank(blocks=(), boosts=(), candidates=(), surface="home", region="SG", at=NOW):
    rules = RuleSet.from_document(
        {"version": 7, "blocked": list(blocks), "boosts": list(boosts)}
    )
    return rules.rank(
        list(candidates), surface=surface, region=region, now=at.timestamp()
    )


def _ids(result):
    return [item_id for item_id, _score in result.items]


def test_rank__block_beats_boost__item_removed_with_the_block_id():
    result = _rank(
        blocks=[_block(1, "a")],
        boosts=[_boost(2, "a", 3.0)],
        candidates=[{"item_id": "a", "score": 0.9}, {"item_id": "b", "score": 0.1}],
    )
    assert result.removed == [{"item_id": "a", "reason": "blocked", "rule_id": 1}]
    assert _ids(result) == ["b"]


def test_rank__several_boosts__largest_factor_not_product():
    result = _rank(
        boosts=[
            _boost(1, "a", 2.0),
            _boost(2, "a", 3.0, surface="home"),
            _boost(3, "a", 1.5, region="SG"),
        ],
        candidates=[{"item_id": "a", "score": 0.5}],
    )
    assert result.item_dicts() == [
        {
            "item_id": "a",
            "score": 1.5,
            "original_score": 0.5,
            "boosted": True,
            "rule_id": 2,
        }
    ]


def test_rank__ties__keep_input_order():
    candidates = [{"item_id": name, "score": 0.5} for name in "dcab"]
    assert _ids(_rank(candidates=candidates)) == ["d", "c", "a", "b"]


def test_rank__sorted_by_boosted_score_descending():
    result = _rank(
        boosts=[_boost(1, "low", 4.0)],
        candidates=[
            {"item_id": "high", "score": 0.6},
            {"item_id": "low", "score": 0.2},
        ],
    )
    assert _ids(result) == ["low", "high"]
    assert result.item_dicts()[0]["score"] == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("rule_surface", "rule_region", "applies"),
    [
        (None, None, True),
        ("home", None, True),
        (None, "SG", True),
        ("home", "SG", True),
        ("search", None, False),
        (None, "SA", False),
        ("home", "SA", False),
    ],
)
def test_rank__scope__rule_applies_only_to_its_surface_and_region(
    rule_surface, rule_region, applies
):
    result = _rank(
        blocks=[_block(1, "a", surface=rule_surface, region=rule_region)],
        candidates=[{"item_id": "a", "score": 1.0}],
    )
    assert bool(result.removed) is applies


def test_rank__request_without_surface__only_rules_for_all_surfaces_apply():
    result = _rank(
        blocks=[_block(1, "a", surface="home"), _block(2, "b")],
        candidates=[{"item_id": "a", "score": 1.0}, {"item_id": "b", "score": 1.0}],
        surface=None,
    )
    assert [removed["item_id"] for removed in result.removed] == ["b"]


@pytest.mark.parametrize(
    ("offset", "blocked"),
    [
        (timedelta(seconds=-1), False),
        (timedelta(0), True),
        (timedelta(hours=1), True),
        (timedelta(hours=2) - timedelta(microseconds=1), True),
        (timedelta(hours=2), False),
    ],
)
def test_rank__block_window_boundaries__start_inclusive_end_exclusive(offset, blocked):
    result = _rank(
        blocks=[_block(1, "a", start=NOW, end=NOW + timedelta(hours=2))],
        candidates=[{"item_id": "a", "score": 1.0}],
        at=NOW + offset,
    )
    assert bool(result.removed) is blocked


@pytest.mark.parametrize(
    ("offset", "boosted"),
    [(timedelta(seconds=-1), False), (timedelta(0), True), (timedelta(days=1), False)],
)
def test_rank__boost_window_boundaries(offset, boosted):
    result = _rank(
        boosts=[_boost(1, "a", 2.0, start=NOW, end=NOW + timedelta(days=1))],
        candidates=[{"item_id": "a", "score": 1.0}],
        at=NOW + offset,
    )
    assert result.item_dicts()[0]["boosted"] is boosted


def test_rank__boosts_off__blocks_still_apply():
    rules = RuleSet.from_document(
        {"version": 1, "blocked": [_block(1, "a")], "boosts": [_boost(2, "b", 2.0)]}
    )
    result = rules.rank(
        [{"item_id": "a", "score": 1.0}, {"item_id": "b", "score": 1.0}],
        surface="home",
        region="SG",
        now=NOW.timestamp(),
        apply_boosts=False,
    )
    assert result.removed[0]["item_id"] == "a"
    assert result.item_dicts()[0]["boosted"] is False


def test_apply_changes__block_unblock_boost_unboost__rules_follow_the_feed():
    rules = RuleSet.from_document({"version": 1, "blocked": [], "boosts": []})
    rules.apply_changes(
        [
            {"version": 2, "action": "block", "rule": _block(10, "a")},
            {"version": 3, "action": "boost", "rule": _boost(11, "b", 2.0)},
            {"version": 4, "action": "unblock", "rule": _block(10, "a")},
        ],
        version=4,
    )
    assert rules.version == 4
    assert (
        rules.blocking_rule("a", surface="home", region="SG", now=NOW.timestamp())
        is None
    )
    assert rules.boost("b", surface="home", region="SG", now=NOW.timestamp()) == (
        2.0,
        11,
    )
    rules.apply_change(
        {"version": 5, "action": "unboost", "rule": _boost(11, "b", 2.0)}
    )
    assert rules.boost("b", surface="home", region="SG", now=NOW.timestamp()) is None
    assert rules.to_document() == {"version": 5, "blocked": [], "boosts": []}


def test_apply_changes__item_keeps_a_rule_of_the_other_kind__still_ruled():
    # Given an item both blocked and boosted, and one only blocked
    rules = RuleSet.from_document(
        {
            "version": 1,
            "blocked": [_block(1, "a"), _block(2, "b")],
            "boosts": [_boost(3, "a", 2.0)],
        }
    )
    candidates = [{"item_id": "a", "score": 1.0}, {"item_id": "b", "score": 0.5}]

    # When both blocks are lifted
    for rule_id, item_id in ((1, "a"), (2, "b")):
        rules.apply_change(
            {
                "version": 1 + rule_id,
                "action": "unblock",
                "rule": _block(rule_id, item_id),
            }
        )

    # Then the boost of "a" still applies, and "b" is ranked as a plain item
    result = rules.rank(candidates, surface="home", region="SG", now=NOW.timestamp())
    assert result.items == [("a", 2.0), ("b", 0.5)]
    assert rules._ruled_items == {"a"}


def test_apply_change__unknown_action__value_error():
    rules = RuleSet.from_document({"version": 1, "blocked": [], "boosts": []})
    with pytest.raises(ValueError, match="Unknown change action"):
        rules.apply_change({"version": 2, "action": "delete", "rule": {"id": 1}})


def test_rank__repeated_candidate__every_occurrence_ruled():
    result = _rank(
        blocks=[_block(1, "a")],
        boosts=[_boost(2, "b", 2.0)],
        candidates=[
            {"item_id": "a", "score": 0.9},
            {"item_id": "b", "score": 0.4},
            {"item_id": "a", "score": 0.8},
            {"item_id": "b", "score": 0.3},
        ],
    )
    assert [removed["item_id"] for removed in result.removed] == ["a", "a"]
    assert result.items == [("b", 0.8), ("b", 0.6)]


def test_rank_result__to_response__contract_shape():
    result = _rank(
        boosts=[_boost(2, "b", 2.0)],
        candidates=[{"item_id": "a", "score": 0.5}, {"item_id": "b", "score": 0.2}],
    )
    result.version, result.personalized = 7, False
    assert result.to_response() == {
        "version": 7,
        "personalized": False,
        "items": [
            {"item_id": "a", "score": 0.5, "original_score": 0.5, "boosted": False},
            {
                "item_id": "b",
                "score": 0.4,
                "original_score": 0.2,
                "boosted": True,
                "rule_id": 2,
            },
        ],
        "removed": [],
    }


def test_rank_in_place__same_answer_as_rank():
    # Given blocks and boosts in and out of scope, and ties
    blocks = [_block(1, "a"), _block(2, "b", surface="search"), _block(3, "c")]
    boosts = [_boost(4, "c", 2.0), _boost(5, "d", 3.0), _boost(6, "e", 1.5)]
    scores = {"a": 0.9, "b": 0.1, "c": 0.8, "d": 0.25, "e": 0.25, "f": 0.375}
    scores |= {"g": 0.5, "h": 5}
    candidates = [{"item_id": name, "score": score} for name, score in scores.items()]
    rules = RuleSet.from_document({"version": 7, "blocked": blocks, "boosts": boosts})
    expected = rules.rank(
        candidates, surface="home", region="SG", now=NOW.timestamp()
    ).to_response()
    # When the endpoint's variant ranks copies of the same candidates in place
    items, removed = rules.rank_in_place(
        [dict(candidate) for candidate in candidates],
        ids=[candidate["item_id"] for candidate in candidates],
        distinct_ids={candidate["item_id"] for candidate in candidates},
        surface="home",
        region="SG",
        now=NOW.timestamp(),
    )
    # Then both answer the same, in the same order
    assert items == expected["items"]
    assert (
        removed
        == expected["removed"]
        == [
            {"item_id": "a", "reason": "blocked", "rule_id": 1},
            {"item_id": "c", "reason": "blocked", "rule_id": 3},
        ]
    )
    assert [item["item_id"] for item in items] == ["h", "d", "g", "e", "f", "b"]


def test_rank__does_not_change_the_callers_candidates():
    candidates = [{"item_id": "a", "score": 0.5}, {"item_id": "b", "score": 0.2}]
    _rank(boosts=[_boost(1, "b", 4.0)], blocks=[_block(2, "a")], candidates=candidates)
    assert candidates == [
        {"item_id": "a", "score": 0.5},
        {"item_id": "b", "score": 0.2},
    ]
