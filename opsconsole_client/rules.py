"""Evaluate override rules against one request's candidates. Pure Python, no Django.

The console's `rank` endpoint, its preview page and the Python client all call this
module, so a rule means the same thing everywhere:

- a rule applies when its surface and region are the request's or null ("all"),
  and `starts_at <= now < end` (no end: forever);
- a blocked item is removed (a block beats a boost);
- a boosted item's score is multiplied by the largest factor that applies;
- items are sorted by score, descending; ties keep their input order.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime
from itertools import compress
from operator import itemgetter

FOREVER = math.inf
_item_id = itemgetter("item_id")
_score = itemgetter("score")
_id_and_score = itemgetter("item_id", "score")
# The sort key of a blocked candidate: below every score, so it ranks last.
_BELOW_ANY_SCORE = -math.inf


def _boosted(score: float, factor: float) -> float:
    """The boosted score; a finite score stays finite, capped at the largest float
    (JSON has no infinity: orjson would write null). Runs for boosted items only."""
    boosted = score * factor
    if math.isinf(boosted) and math.isfinite(score):
        return math.copysign(sys.float_info.max, boosted)
    return boosted


def parse_time(value: str | None) -> float:
    """An ISO 8601 time from the snapshot as epoch seconds; None means forever."""
    if value is None:
        return FOREVER
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# (rule id, surface, region, start, end) and, for boosts, the factor last.
_BlockEntry = tuple[int, str | None, str | None, float, float]
_BoostEntry = tuple[int, str | None, str | None, float, float, float]


def _put(index: dict[str, dict], item_id: str, rule_id: int, entry) -> None:
    """Set (or, with None, drop) one rule of an item by replacing the item's map.

    Readers in other threads may be iterating the old map; they finish on it
    unharmed, and the next lookup sees the new one (copy-on-write per item).
    """
    entries = dict(index.get(item_id, ()))
    if entry is None:
        entries.pop(rule_id, None)
    else:
        entries[rule_id] = entry
    if entries:
        index[item_id] = entries
    else:
        index.pop(item_id, None)


@dataclass
class RankResult:
    """A ranking, kept light for the serving hot path.

    `ranked` holds the surviving candidates, best first, as the caller passed them,
    except that each boosted one is replaced by its answer item (a new dict with the
    boosted score); `items` gives `(item_id, score)` pairs from it. `boosted` maps
    each boosted item to `(original score, boost rule id)`; `removed` lists the
    blocked candidates in input order. `to_response()` gives the REST contract's
    shape.
    """

    ranked: list[Mapping]
    boosted: dict[str, tuple[float, int]]
    removed: list[dict]
    version: int | None = None
    personalized: bool = True
    # id() of each dict in `ranked` that this ranking made (a boosted item).
    made: frozenset[int] = frozenset()

    @property
    def items(self) -> list[tuple[str, float]]:
        """`(item_id, score)` pairs, best first, scores after boosts."""
        return list(map(_id_and_score, self.ranked))

    def item_dicts(self) -> list[dict]:
        """The items as the contract writes them (rule_id added on boosted ones)."""
        made = self.made
        return [
            candidate
            if id(candidate) in made
            else {
                "item_id": candidate["item_id"],
                "score": candidate["score"],
                "original_score": candidate["score"],
                "boosted": False,
            }
            for candidate in self.ranked
        ]

    def to_response(self) -> dict:
        """The REST `rank` answer."""
        return {
            "version": self.version,
            "personalized": self.personalized,
            "items": self.item_dicts(),
            "removed": self.removed,
        }


@dataclass
class RuleSet:
    """The rules of one snapshot version, indexed by item id for fast lookups.

    `blocks` and `boosts` hold the snapshot's rule documents by rule id, so a change
    from the feed replaces or removes one rule without rebuilding the others.
    """

    version: int
    blocks: dict[int, dict] = field(default_factory=dict)
    boosts: dict[int, dict] = field(default_factory=dict)
    _blocks_by_item: dict[str, dict[int, _BlockEntry]] = field(default_factory=dict)
    _boosts_by_item: dict[str, dict[int, _BoostEntry]] = field(default_factory=dict)
    # Every item some block or boost names: one lookup per candidate finds the
    # few that need a closer look (with 100,000 rules, each lookup is a cache miss).
    _ruled_items: set[str] = field(default_factory=set)

    @classmethod
    def from_document(cls, document: Mapping) -> RuleSet:
        """Build from a snapshot document (the contract's `snapshot` response)."""
        rules = cls(version=int(document["version"]))
        for rule in document.get("blocked", ()):
            rules._add_block(rule)
        for rule in document.get("boosts", ()):
            rules._add_boost(rule)
        return rules

    def to_document(self) -> dict:
        return {
            "version": self.version,
            "blocked": list(self.blocks.values()),
            "boosts": list(self.boosts.values()),
        }

    # Changes -------------------------------------------------------------------

    def _add_block(self, rule: Mapping) -> None:
        rule_id = int(rule["id"])
        self._remove_block(rule_id)
        self.blocks[rule_id] = dict(rule)
        _put(
            self._blocks_by_item,
            rule["item_id"],
            rule_id,
            (
                rule_id,
                rule.get("surface"),
                rule.get("region"),
                parse_time(rule.get("starts_at"))
                if rule.get("starts_at")
                else -FOREVER,
                parse_time(rule.get("expires_at")),
            ),
        )
        self._ruled_items.add(rule["item_id"])

    def _add_boost(self, rule: Mapping) -> None:
        rule_id = int(rule["id"])
        self._remove_boost(rule_id)
        self.boosts[rule_id] = dict(rule)
        _put(
            self._boosts_by_item,
            rule["item_id"],
            rule_id,
            (
                rule_id,
                rule.get("surface"),
                rule.get("region"),
                parse_time(rule.get("starts_at"))
                if rule.get("starts_at")
                else -FOREVER,
                parse_time(rule.get("ends_at")),
                float(rule["factor"]),
            ),
        )
        self._ruled_items.add(rule["item_id"])

    def _remove_block(self, rule_id: int) -> None:
        rule = self.blocks.pop(rule_id, None)
        if rule is not None:
            _put(self._blocks_by_item, rule["item_id"], rule_id, None)
            self._forget_if_unruled(rule["item_id"])

    def _remove_boost(self, rule_id: int) -> None:
        rule = self.boosts.pop(rule_id, None)
        if rule is not None:
            _put(self._boosts_by_item, rule["item_id"], rule_id, None)
            self._forget_if_unruled(rule["item_id"])

    def _forget_if_unruled(self, item_id: str) -> None:
        if item_id not in self._blocks_by_item and item_id not in self._boosts_by_item:
            self._ruled_items.discard(item_id)

    def apply_change(self, change: Mapping) -> None:
        """Apply one change-feed entry: `{"version", "action", "rule"}`."""
        action, rule = change["action"], change["rule"]
        if action == "block":
            self._add_block(rule)
        elif action == "unblock":
            self._remove_block(int(rule["id"]))
        elif action == "boost":
            self._add_boost(rule)
        elif action == "unboost":
            self._remove_boost(int(rule["id"]))
        else:
            raise ValueError(f"Unknown change action {action!r}.")
        self.version = max(self.version, int(change["version"]))

    def apply_changes(self, changes: Iterable[Mapping], version: int) -> None:
        for change in changes:
            self.apply_change(change)
        self.version = max(self.version, int(version))

    # Reads ---------------------------------------------------------------------

    def blocking_rule(
        self, item_id: str, *, surface: str | None, region: str | None, now: float
    ) -> int | None:
        """The id of a block that applies to this item now, or None."""
        entries = self._blocks_by_item.get(item_id)
        if entries:
            for rule_id, rule_surface, rule_region, start, end in entries.values():
                if (
                    (rule_surface is None or rule_surface == surface)
                    and (rule_region is None or rule_region == region)
                    and start <= now < end
                ):
                    return rule_id
        return None

    def boost(
        self, item_id: str, *, surface: str | None, region: str | None, now: float
    ) -> tuple[float, int] | None:
        """(largest factor, its rule id) of the boosts that apply now, or None."""
        best = None
        entries = self._boosts_by_item.get(item_id)
        if entries:
            for (
                rule_id,
                rule_surface,
                rule_region,
                start,
                end,
                factor,
            ) in entries.values():
                if (
                    (rule_surface is None or rule_surface == surface)
                    and (rule_region is None or rule_region == region)
                    and start <= now < end
                    and (best is None or factor > best[0])
                ):
                    best = (factor, rule_id)
        return best

    def rank(
        self,
        candidates: Iterable[Mapping],
        *,
        surface: str | None,
        region: str | None,
        now: float | None = None,
        apply_boosts: bool = True,
    ) -> RankResult:
        """Remove blocked candidates, boost the rest, sort by score (stable).

        Only C-level passes touch every candidate, as in a plain filter-and-sort;
        Python code runs for the few that a rule names.
        """
        if not isinstance(candidates, list):
            candidates = list(candidates)
        now = time.time() if now is None else now
        ids = list(map(_item_id, candidates))
        distinct_ids = set(ids)
        blocked_by, boost_by = self._rulings(
            distinct_ids, surface=surface, region=region, now=now, boosts=apply_boosts
        )
        if not blocked_by and not boost_by:
            return RankResult(
                ranked=sorted(candidates, key=_score, reverse=True),
                boosted={},
                removed=[],
            )
        # What replaces each named candidate: its answer item if boosted, None if
        # blocked (dropped below). Keyed by item id, or by object when ids repeat.
        unique = len(distinct_ids) == len(ids)
        replacements: dict = {}
        removed: list[dict] = []
        boosted: dict[str, tuple[float, int]] = {}
        ruled = blocked_by.keys() | boost_by.keys()
        for candidate in compress(candidates, map(ruled.__contains__, ids)):
            item_id, score = candidate["item_id"], candidate["score"]
            key = item_id if unique else id(candidate)
            rule_id = blocked_by.get(item_id)
            if rule_id is not None:
                removed.append(
                    {"item_id": item_id, "reason": "blocked", "rule_id": rule_id}
                )
                replacements[key] = None
                continue
            factor, rule_id = boost_by[item_id]
            boosted[item_id] = (score, rule_id)
            replacements[key] = {
                "item_id": item_id,
                "score": _boosted(score, factor),
                "original_score": score,
                "boosted": True,
                "rule_id": rule_id,
            }
        keys = ids if unique else map(id, candidates)
        ranked = list(filter(None, map(replacements.get, keys, candidates)))
        ranked.sort(key=_score, reverse=True)
        made = frozenset(map(id, filter(None, replacements.values())))
        return RankResult(ranked=ranked, boosted=boosted, removed=removed, made=made)

    def rank_in_place(
        self,
        candidates: list[dict],
        *,
        ids: list[str],
        distinct_ids: AbstractSet[str],
        surface: str | None,
        region: str | None,
        now: float | None = None,
    ) -> tuple[list[dict], list[dict]]:
        """`rank` for the REST endpoint: its answer's `items` and `removed`.

        The candidates must be checked `{"item_id", "score"}` dicts with distinct ids
        and finite scores (`ids` their ids in order, `distinct_ids` as a set),
        which the caller owns: each one becomes its answer item
        (two keys added; a boosted one gets its new score and rule id) and the list
        is sorted in place, so a request makes no object per candidate.
        """
        now = time.time() if now is None else now
        blocked_by, boost_by = self._rulings(
            distinct_ids, surface=surface, region=region, now=now, boosts=True
        )
        # Every item becomes its own, unboosted answer (a plain loop: faster here
        # than map() over dict.__setitem__, which builds an argument tuple per call)...
        for candidate in candidates:
            candidate["original_score"] = candidate["score"]
            candidate["boosted"] = False
        removed: list[dict] = []
        if not blocked_by and not boost_by:
            candidates.sort(key=_score, reverse=True)
            return candidates, removed
        # ...and the few that a rule names are visited again, in input order. A
        # blocked one gets a score below any other: the sort puts it last, cut off.
        blocked: list[dict] = []
        ruled = blocked_by.keys() | boost_by.keys()
        named = map(ruled.__contains__, ids)
        for candidate in compress(candidates, named):
            item_id = candidate["item_id"]
            rule_id = blocked_by.get(item_id)
            if rule_id is not None:
                removed.append(
                    {"item_id": item_id, "reason": "blocked", "rule_id": rule_id}
                )
                candidate["score"] = _BELOW_ANY_SCORE
                blocked.append(candidate)
            else:
                factor, rule_id = boost_by[item_id]
                candidate["score"] = _boosted(candidate["score"], factor)
                candidate["boosted"] = True
                candidate["rule_id"] = rule_id
        candidates.sort(key=_score, reverse=True)
        if blocked:
            kept = len(candidates) - len(blocked)
            blocked_objects = set(map(id, blocked))
            if blocked_objects.issuperset(map(id, candidates[kept:])):
                del candidates[kept:]
            else:  # a non-finite score: the blocked ones are not all at the end
                candidates[:] = [
                    item for item in candidates if id(item) not in blocked_objects
                ]
        return candidates, removed

    def _rulings(
        self,
        distinct_ids: AbstractSet[str],
        *,
        surface: str | None,
        region: str | None,
        now: float,
        boosts: bool,
    ) -> tuple[dict[str, int], dict[str, tuple[float, int]]]:
        """({item: blocking rule id}, {item: (largest factor, its boost rule id)})
        for the items among `distinct_ids` that a rule applies to now; an item that
        is blocked is not boosted. One C-level pass over the ids finds those some
        rule names; only they are looked at in Python."""
        blocked_by: dict[str, int] = {}
        boost_by: dict[str, tuple[float, int]] = {}
        for item_id in self._ruled_items & distinct_ids:
            rule_id = self.blocking_rule(
                item_id, surface=surface, region=region, now=now
            )
            if rule_id is not None:
                blocked_by[item_id] = rule_id
            elif boosts:
                found = self.boost(item_id, surface=surface, region=region, now=now)
                if found is not None:
                    boost_by[item_id] = found
        return blocked_by, boost_by
