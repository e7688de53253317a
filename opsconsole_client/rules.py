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
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter

FOREVER = math.inf
_id_and_score = itemgetter("item_id", "score")
_first = itemgetter(0)
_second = itemgetter(1)


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

    `items` are `(item_id, score)` pairs, best first, scores after boosts; `boosted`
    maps each boosted item to `(original score, boost rule id)`; `removed` lists the
    blocked candidates. `to_response()` gives the REST contract's shape.
    """

    items: list[tuple[str, float]]
    boosted: dict[str, tuple[float, int]]
    removed: list[dict]
    version: int | None = None
    personalized: bool = True

    def item_dicts(self) -> list[dict]:
        """The items as the contract writes them (rule_id added on boosted ones)."""
        boosted = self.boosted
        return [
            {
                "item_id": item_id,
                "score": score,
                "original_score": score,
                "boosted": False,
            }
            if item_id not in boosted
            else {
                "item_id": item_id,
                "score": score,
                "original_score": boosted[item_id][0],
                "boosted": True,
                "rule_id": boosted[item_id][1],
            }
            for item_id, score in self.items
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

    def _remove_block(self, rule_id: int) -> None:
        rule = self.blocks.pop(rule_id, None)
        if rule is not None:
            _put(self._blocks_by_item, rule["item_id"], rule_id, None)

    def _remove_boost(self, rule_id: int) -> None:
        rule = self.boosts.pop(rule_id, None)
        if rule is not None:
            _put(self._boosts_by_item, rule["item_id"], rule_id, None)

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
        """Remove blocked candidates, boost the rest, sort by score (stable)."""
        now = time.time() if now is None else now
        blocks = self._blocks_by_item
        boosts = self._boosts_by_item if apply_boosts else {}
        # C-level passes over the candidates; Python only touches the few that a
        # rule names.
        pairs = list(map(_id_and_score, candidates))
        ids = list(map(_first, pairs))
        named = set(filter(blocks.__contains__, ids))
        named.update(filter(boosts.__contains__, ids))
        removed: list[dict] = []
        boosted: dict[str, tuple[float, int]] = {}
        if named:
            position = dict(zip(ids, range(len(ids)), strict=True))
            if len(position) == len(ids):
                occurrences = [
                    (position[i], i) for i in filter(named.__contains__, ids)
                ]
            else:  # repeated ids: every occurrence is ruled, not only the last
                occurrences = [(n, i) for n, i in enumerate(ids) if i in named]
            dropped: list[int] = []
            for index, item_id in occurrences:
                score = pairs[index][1]
                rule_id = (
                    self.blocking_rule(item_id, surface=surface, region=region, now=now)
                    if item_id in blocks
                    else None
                )
                if rule_id is not None:
                    removed.append(
                        {"item_id": item_id, "reason": "blocked", "rule_id": rule_id}
                    )
                    dropped.append(index)
                    continue
                found = (
                    self.boost(item_id, surface=surface, region=region, now=now)
                    if item_id in boosts
                    else None
                )
                if found is not None:
                    boosted[item_id] = (score, found[1])
                    pairs[index] = (item_id, score * found[0])
            for index in reversed(dropped):
                del pairs[index]
        pairs.sort(key=_second, reverse=True)
        return RankResult(items=pairs, boosted=boosted, removed=removed)
