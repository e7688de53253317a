"""Every read of override rules, already shaped and filtered for the caller."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import compress

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import CharField, Model, OuterRef, Q, QuerySet, Subquery, Value
from django.utils import timezone

from opsconsole.auth import RedisQuestion
from opsconsole.customer_ids import customer_id_digests
from opsconsole.times import iso_utc

from . import optout_mirror
from .models import (
    Block,
    Boost,
    CatalogItem,
    OptOut,
    OptOutKind,
    OverrideChange,
    OverrideRule,
    OverrideVersion,
    Region,
    RuleStatus,
    ServingInstance,
    Surface,
)

# A filter value meaning "the rules that apply to every surface (or region)".
ALL_SCOPES = "all"


def rule_document(rule: OverrideRule) -> dict:
    """A rule as serving clients see it in the snapshot and the change feed."""
    document = {
        "id": rule.pk,
        "item_id": rule.item_id,
        "surface": rule.surface_id,
        "region": rule.region_id,
        "starts_at": iso_utc(rule.starts_at),
    }
    if isinstance(rule, Boost):
        document["factor"] = rule.factor
        document["ends_at"] = iso_utc(rule.ends_at)
    else:
        document["expires_at"] = iso_utc(rule.expires_at)
    return document


def current_version() -> int:
    return OverrideVersion.objects.values_list("value", flat=True).get(
        pk=OverrideVersion.SINGLETON_ID
    )


def _scope_filter(surface: str | None, region: str | None) -> Q:
    """Rules that can apply in a scope: theirs or "all". No parameter: every rule.

    Serving accepts any string; one with a NUL cannot be a configured code (and
    PostgreSQL refuses it in a query), so only the rules for "all" apply to it.
    """
    condition = Q()
    for name, value in (("surface", surface), ("region", region)):
        if value is not None:
            for_all = Q(**{f"{name}__isnull": True})
            if "\x00" not in value:
                for_all |= Q(**{f"{name}_id": value})
            condition &= for_all
    return condition


def serving_snapshot(
    *,
    surface: str | None = None,
    region: str | None = None,
    now: datetime | None = None,
) -> dict:
    """Every rule in force or scheduled that can apply to the scope (contract, Serving).

    The version is read first, so the rules are at least that new; clients replay
    changes from it, which is harmless for rules they already have.
    """
    now = now or timezone.now()
    version = current_version()
    scope = _scope_filter(surface, region)
    blocks = (
        Block.objects.current_or_scheduled(now)
        .filter(scope)
        .order_by("id")
        .values_list("id", "item_id", "surface", "region", "starts_at", "expires_at")
    )
    boosts = (
        Boost.objects.current_or_scheduled(now)
        .filter(scope)
        .order_by("id")
        .values_list(
            "id", "item_id", "factor", "surface", "region", "starts_at", "ends_at"
        )
    )
    return {
        "version": version,
        "generated_at": iso_utc(now),
        "blocked": [
            {
                "id": rule_id,
                "item_id": item_id,
                "surface": rule_surface,
                "region": rule_region,
                "starts_at": iso_utc(starts_at),
                "expires_at": iso_utc(expires_at),
            }
            for (
                rule_id,
                item_id,
                rule_surface,
                rule_region,
                starts_at,
                expires_at,
            ) in (blocks)
        ],
        "boosts": [
            {
                "id": rule_id,
                "item_id": item_id,
                "factor": factor,
                "surface": rule_surface,
                "region": rule_region,
                "starts_at": iso_utc(starts_at),
                "ends_at": iso_utc(ends_at),
            }
            for (
                rule_id,
                item_id,
                factor,
                rule_surface,
                rule_region,
                starts_at,
                ends_at,
            ) in boosts
        ],
    }


class ChangesGone(Exception):
    """The change feed no longer holds changes that old: take a snapshot."""


def changes_since(since: int, *, limit: int) -> tuple[int, list[dict], bool]:
    """(current version, changes after `since` in order, whether more remain)."""
    version = current_version()
    oldest = (
        OverrideChange.objects.order_by("version")
        .values_list("version", flat=True)
        .first()
    )
    if since < version and (oldest is None or since < oldest - 1):
        raise ChangesGone(
            f"Changes after version {since} are no longer kept "
            f"(oldest kept: {oldest}); fetch a snapshot."
        )
    rows = list(
        OverrideChange.objects.filter(version__gt=since, version__lte=version)
        .order_by("version")
        .values_list("version", "action", "rule")[: limit + 1]
    )
    changes = [
        {"version": change_version, "action": action, "rule": rule}
        for change_version, action, rule in rows[:limit]
    ]
    return version, changes, len(rows) > limit


def opted_out(customer_hashes: list[str]) -> dict[str, set[str]]:
    """{kind: hashes among those given with an active opt-out of that kind}.

    From the Redis copy when it is ready (one round trip), else from the database.
    """
    mirrored = optout_mirror.lookup(customer_hashes)
    if mirrored is not None:
        return mirrored
    found: dict[str, set[str]] = {kind: set() for kind in OptOutKind.values}
    if connection.vendor == "postgresql":
        # One array parameter instead of an IN list of a thousand.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT customer_hash, kind FROM overrides_optout "
                "WHERE customer_hash = ANY(%s) AND withdrawn_at IS NULL",
                [customer_hashes],
            )
            rows = cursor.fetchall()
    else:
        rows = OptOut.objects.filter(
            customer_hash__in=customer_hashes, withdrawn_at__isnull=True
        ).values_list("customer_hash", "kind")
    for customer_hash, kind in rows:
        found[kind].add(customer_hash)
    return found


def opted_out_among(customer_ids: list[str]) -> dict[str, list[str]]:
    """{kind: the given (validated) raw ids with an active opt-out of it, sorted}.

    For serving's bulk check: the ids are hashed to digests, which the Redis copy
    is keyed by, and the answers are mapped back to the ids in C-level passes.
    """
    digests = customer_id_digests(customer_ids)
    answers = optout_mirror.lookup_digests(digests)
    if answers is not None:
        return {
            kind: sorted(set(compress(customer_ids, map(codes.__contains__, answers))))
            for kind, codes in optout_mirror.ANSWERS_WITH.items()
        }
    by_hash = dict(zip(map(bytes.hex, digests), customer_ids, strict=True))
    return {
        kind: sorted({by_hash[customer_hash] for customer_hash in hashes})
        for kind, hashes in opted_out(list(by_hash)).items()
    }


def is_opted_out(customer_hash: str, kind: str) -> bool:
    return customer_hash in opted_out([customer_hash])[kind]


class OptOutCheck:
    """`is_opted_out` for serving's `rank`, as a question the API-key rate limiter
    carries to Redis with its count (one round trip, not two); asked on its own
    when the limiter did not carry it."""

    def __init__(self, customer_hash: str, kind: str):
        self.customer_hash, self.kind = customer_hash, kind
        self._digests = [optout_mirror.field(customer_hash)]
        # No question without the copy (a Redis cache alone may hold a stale one).
        self.question = (
            RedisQuestion(*optout_mirror.lookup_command(self._digests))
            if optout_mirror.enabled()
            else None
        )

    def opted_out(self) -> bool:
        if self.question is None:
            return is_opted_out(self.customer_hash, self.kind)
        reply = self.question.reply
        if reply is self.question.NOT_ASKED:
            answers = optout_mirror.lookup_digests(self._digests)
        else:
            answers = optout_mirror.answers_from(reply)
        if answers is None:  # not ready, or Redis away: the database decides
            return is_opted_out(self.customer_hash, self.kind)
        return answers[0] in optout_mirror.ANSWERS_WITH[self.kind]


def serving_instances() -> list[ServingInstance]:
    return list(ServingInstance.objects.select_related("api_key"))


def active_serving_instances(*, now: datetime | None = None) -> list[ServingInstance]:
    """Instances that reported within SERVING_INSTANCE_ACTIVE_MINUTES."""
    now = now or timezone.now()
    cutoff = now - timedelta(minutes=settings.SERVING_INSTANCE_ACTIVE_MINUTES)
    return list(ServingInstance.objects.filter(last_seen_at__gte=cutoff))


def live_counts(rules) -> list[tuple[int, int]]:
    """For each rule, in order: (active instances at or past its latest change,
    active instances). One query for the whole list, whatever mix of kinds."""
    versions = [instance.version for instance in active_serving_instances()]
    return [
        (
            sum(1 for version in versions if version >= rule.changed_version),
            len(versions),
        )
        for rule in rules
    ]


def active_surfaces() -> QuerySet[Surface]:
    return Surface.objects.filter(is_active=True)


def active_regions() -> QuerySet[Region]:
    return Region.objects.filter(is_active=True)


def _with_item_title(rules: QuerySet) -> QuerySet:
    title = CatalogItem.objects.filter(item_id=OuterRef("item_id")).values("title")[:1]
    return rules.annotate(item_title=Subquery(title))


def _filter_rules(
    rules: QuerySet,
    *,
    search: str = "",
    item_id: str = "",
    surface: str = "",
    region: str = "",
    status: str = "",
    now: datetime,
) -> QuerySet:
    if search:
        matching_titles = CatalogItem.objects.filter(title__icontains=search).values(
            "item_id"
        )
        rules = rules.filter(
            Q(item_id__icontains=search) | Q(item_id__in=matching_titles)
        )
    if item_id:
        rules = rules.filter(item_id=item_id)
    if surface:
        rules = (
            rules.filter(surface__isnull=True)
            if surface == ALL_SCOPES
            else rules.filter(surface_id=surface)
        )
    if region:
        rules = (
            rules.filter(region__isnull=True)
            if region == ALL_SCOPES
            else rules.filter(region_id=region)
        )
    if status:
        rules = rules.with_status(status, now)
    return rules


def block_list(*, now: datetime | None = None, **filters: str) -> QuerySet[Block]:
    """Blocks, newest first, with catalog titles; filters as in `_filter_rules`."""
    now = now or timezone.now()
    blocks = Block.objects.select_related("created_by", "withdrawn_by")
    return _with_item_title(_filter_rules(blocks, now=now, **filters))


def boost_list(*, now: datetime | None = None, **filters: str) -> QuerySet[Boost]:
    now = now or timezone.now()
    boosts = Boost.objects.select_related("created_by", "withdrawn_by")
    return _with_item_title(_filter_rules(boosts, now=now, **filters))


def search_catalog(query: str, *, limit: int = 10) -> list[CatalogItem]:
    """Items whose id starts with, or whose title contains, the query."""
    query = query.strip()
    if not query:
        return []
    exact = list(CatalogItem.objects.filter(item_id=query))
    others = CatalogItem.objects.filter(
        Q(item_id__istartswith=query) | Q(title__icontains=query)
    ).exclude(item_id=query)
    return exact + list(others.order_by("title")[: limit - len(exact)])


def catalog_title(item_id: str) -> str | None:
    return (
        CatalogItem.objects.filter(item_id=item_id)
        .values_list("title", flat=True)
        .first()
    )


@dataclass
class Dashboard:
    active_blocks: int
    scheduled_blocks: int
    active_boosts: int
    scheduled_boosts: int
    boosts_ending_soon: list[Boost]
    recent_changes: list["AuditEntry"]
    version: int


def dashboard(*, kinds: list[str], now: datetime | None = None) -> Dashboard:
    """Counts, boosts ending within 48 h, recent changes of the kinds the user sees."""
    now = now or timezone.now()
    ending_soon = (
        _with_item_title(Boost.objects.active(now))
        .filter(ends_at__lte=now + timedelta(hours=48))
        .order_by("ends_at")[:20]
    )
    return Dashboard(
        active_blocks=Block.objects.active(now).count(),
        scheduled_blocks=Block.objects.scheduled(now).count(),
        active_boosts=Boost.objects.active(now).count(),
        scheduled_boosts=Boost.objects.scheduled(now).count(),
        boosts_ending_soon=list(ending_soon),
        recent_changes=audit_entries_for_page(audit_log(kinds=kinds)[:10]),
        version=current_version(),
    )


@dataclass
class ItemOverview:
    item_id: str
    catalog_item: CatalogItem | None
    blocks: list[Block]
    boosts: list[Boost]
    open_blocks: list[Block]
    open_boosts: list[Boost]
    history: list["AuditEntry"]


def item_overview(
    item_id: str,
    *,
    include_blocks: bool,
    include_boosts: bool,
    now: datetime | None = None,
) -> ItemOverview:
    """Everything about one item: its rules in every scope, and their history."""
    now = now or timezone.now()
    blocks = (
        list(
            Block.objects.filter(item_id=item_id).select_related(
                "created_by", "withdrawn_by"
            )
        )
        if include_blocks
        else []
    )
    boosts = (
        list(
            Boost.objects.filter(item_id=item_id).select_related(
                "created_by", "withdrawn_by"
            )
        )
        if include_boosts
        else []
    )
    kinds = [
        kind
        for kind, wanted in (("block", include_blocks), ("boost", include_boosts))
        if wanted
    ]
    return ItemOverview(
        item_id=item_id,
        catalog_item=CatalogItem.objects.filter(item_id=item_id).first(),
        blocks=blocks,
        boosts=boosts,
        open_blocks=[rule for rule in blocks if rule.status_at(now) in OPEN_STATUSES],
        open_boosts=[rule for rule in boosts if rule.status_at(now) in OPEN_STATUSES],
        history=audit_entries_for_page(audit_log(item_id=item_id, kinds=kinds))
        if kinds
        else [],
    )


OPEN_STATUSES = (RuleStatus.ACTIVE, RuleStatus.SCHEDULED)


# Audit trail -----------------------------------------------------------------------


# {kind: model or "app.Model" label} of everything the audit trail shows; models of
# other apps are named by label (their apps import this one): see audited_models().
_AUDITED = dict(
    block=Block,
    boost=Boost,
    surface=Surface,
    region=Region,
    optout=OptOut,
    deletion_request="privacy.DeletionRequest",
    downstream="privacy.Downstream",
    api_key="opsconsole.ApiKey",
    model_version="explanations.ModelVersion",
    catalog_item=CatalogItem,
    user=settings.AUTH_USER_MODEL,  # accounts and roles: opsconsole/user_history.py
)
# The kinds, known at import time (the API's and the page's filter choices).
AUDITED_KINDS: tuple[str, ...] = tuple(_AUDITED)


@cache
def audited_models() -> dict[str, type[Model]]:
    """{kind: model}, labels resolved on first use, once the app registry is ready."""
    return {
        kind: apps.get_model(model) if isinstance(model, str) else model
        for kind, model in _AUDITED.items()
    }


_HIDDEN_FIELDS = {
    "id",
    "history_id",
    "history_date",
    "history_type",
    "history_user",
    "history_change_reason",
    "created_at",
    "changed_version",
}


def _or_dash(value: object) -> object:
    return "—" if value is None else value


@dataclass
class AuditChange:
    field: str
    before: object
    after: object


@dataclass
class AuditEntry:
    """One recorded change: who, when, why, what it was before and after."""

    kind: str
    object_id: int | str  # a UUID (as text) for deletion requests
    history_id: int
    when: datetime
    actor: str
    action: str
    reason: str
    item_id: str | None
    changes: list[AuditChange] = field(default_factory=list)

    @property
    def object_ref(self) -> str:
        return str(self.object_id)

    @property
    def summary(self) -> str:
        return "; ".join(
            f"{change.field}: {change.before} → {change.after}"
            for change in self.changes
        )


def audit_log(
    *,
    kinds: list[str] | None = None,
    actor: str = "",
    item_id: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet:
    """All recorded changes, newest first, as one queryset of plain rows (a UNION)."""
    # Any ISO 8601 offset is valid input, but PostgreSQL refuses offsets beyond
    # ±15:59 in a comparison: the same instant in UTC always works.
    since = since.astimezone(UTC) if since else None
    until = until.astimezone(UTC) if until else None
    parts = []
    for kind, model in audited_models().items():
        if kinds and kind not in kinds:
            continue
        if item_id and kind not in _ITEM_KINDS:
            continue
        records = model.history.all()
        if actor:
            records = records.filter(history_user__username=actor)
        if item_id:
            records = records.filter(item_id=item_id)
        if since:
            records = records.filter(history_date__gte=since)
        if until:
            records = records.filter(history_date__lt=until)
        # "audit_kind", not "kind": opt-outs have a field of that name.
        parts.append(
            records.annotate(audit_kind=Value(kind, output_field=CharField()))
            .values("audit_kind", "history_id", "history_date")
            .order_by()
        )
    if not parts:
        return Block.history.none().values("history_id")
    log = parts[0].union(*parts[1:], all=True) if len(parts) > 1 else parts[0]
    return log.order_by("-history_date", "-history_id")


_ITEM_KINDS = ("block", "boost", "catalog_item")


_USER_FIELDS = {"created_by", "withdrawn_by", "revoked_by", "registered_by", "user"}


def _display(
    value: object, field_name: str = "", usernames: dict | None = None
) -> object:
    if field_name in _USER_FIELDS and usernames is not None and value is not None:
        return usernames.get(value, value)
    if isinstance(value, datetime):
        return iso_utc(value)
    return None if value == "" else value


_CREATED = {
    "block": "Blocked",
    "boost": "Boosted",
    "optout": "Opted out",
    "deletion_request": "Deletion requested",
    "model_version": "Registered model",
    "user": "Created user",
}


def _user_action(record, changed: set[str]) -> str | None:
    if "is_active" in changed:
        return "Reactivated user" if record.is_active else "Deactivated user"
    if "roles" in changed:
        return "Changed roles"
    if "usable_password" in changed:
        return (
            "Enabled password sign-in"
            if record.usable_password
            else "Disabled password sign-in"
        )
    if changed == {"password"}:
        return "Changed password"
    return None


def _action_label(kind: str, record, changed: set[str]) -> str:
    if record.history_type == "+":
        return _CREATED.get(kind, f"Created {kind.replace('_', ' ')}")
    if record.history_type == "-":
        return f"Deleted {kind.replace('_', ' ')}"
    if kind == "user" and (label := _user_action(record, changed)):
        return label
    if "withdrawn_at" in changed:
        return {"block": "Lifted", "boost": "Ended early"}.get(kind, "Withdrawn")
    if "revoked_at" in changed:
        return "Revoked"
    if "extended_at" in changed:
        return "Deadline extended"
    if "retried_at" in changed:
        return "Retried downstreams"
    if "expiry_recorded_at" in changed:
        return "Expired"
    return f"Changed {kind.replace('_', ' ')}"


def audit_entries_for_page(rows) -> list[AuditEntry]:
    """Turn audit_log() rows into entries with actor, before and after (one page).

    A few queries per page whatever its size: the page's records, their objects'
    earlier records (to diff against), and the usernames they mention.
    """
    rows = list(rows)
    wanted: dict[str, list[int]] = {}
    for row in rows:
        wanted.setdefault(row["audit_kind"], []).append(row["history_id"])
    records = {}
    previous_of = {}
    for kind, ids in wanted.items():
        history = audited_models()[kind].history
        page_records = list(
            history.filter(history_id__in=ids).select_related("history_user")
        )
        records.update({(kind, record.history_id): record for record in page_records})
        timeline = history.filter(
            id__in={record.id for record in page_records},
            history_date__lte=max(record.history_date for record in page_records),
        ).order_by("id", "history_date", "history_id")
        latest_by_object = {}
        for record in timeline:
            previous_of[(kind, record.history_id)] = latest_by_object.get(record.id)
            latest_by_object[record.id] = record
    user_ids = {
        getattr(record, name + "_id", None)
        for record in records.values()
        for name in _USER_FIELDS
    } - {None}
    usernames = dict(
        get_user_model().objects.filter(pk__in=user_ids).values_list("pk", "username")
    )
    entries = []
    for row in rows:
        kind = row["audit_kind"]
        record = records[(kind, row["history_id"])]
        previous = previous_of.get((kind, record.history_id))
        if record.history_type == "+":
            previous = None
        # Fields only the history has (a user's roles): compared like the others.
        snapshot = getattr(record, "audit_snapshot_fields", ())
        if previous is not None:
            delta = record.diff_against(
                previous,
                included_fields=(
                    {f.name for f in record.tracked_fields if f.editable}
                    | set(snapshot)
                )
                if snapshot
                else None,
            )
            changes = [
                AuditChange(
                    change.field,
                    _display(change.old, change.field, usernames),
                    _display(change.new, change.field, usernames),
                )
                for change in delta.changes
                if change.field not in _HIDDEN_FIELDS
            ]
        else:
            changes = [
                AuditChange(
                    f.name,
                    None,
                    _display(getattr(record, f.attname), f.name, usernames),
                )
                for f in audited_models()[kind]._meta.concrete_fields
                if f.name not in _HIDDEN_FIELDS
                # Fields kept out of the history (secrets, encrypted ids) are absent.
                and getattr(record, f.attname, None) not in (None, "")
            ] + [
                AuditChange(name, None, getattr(record, name))
                for name in snapshot
                if getattr(record, name) not in (None, "")
            ]
        if record.history_type == "~" and getattr(record, "password_changed", False):
            # The hash is never kept: only that it changed.
            changes.append(AuditChange("password", None, "changed"))
        entries.append(
            AuditEntry(
                kind=kind,
                object_id=record.id,
                history_id=record.history_id,
                when=record.history_date,
                actor=record.history_user.get_username()
                if record.history_user
                else "system",
                action=_action_label(
                    kind, record, {change.field for change in changes}
                ),
                reason=record.history_change_reason or "",
                item_id=getattr(record, "item_id", None),
                changes=changes,
            )
        )
    return entries
