"""Every write to override rules. The UI, the REST API and the commands all call these.

Each service validates, writes, records the audit entry (django-simple-history, with
the actor and the reason) and the change-feed entry under a new override version, all
in one transaction. The version row is locked first, so rule writes are serialized and
the overlap checks below cannot race.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from opsconsole.customer_ids import hash_customer_id
from opsconsole.errors import ConflictError, validation_messages
from opsconsole.identifiers import FORBIDDEN_CHARACTER, validate_item_id

from . import optout_mirror, serving
from .models import (
    MAX_VERSION,
    REASON_MAX_LENGTH,
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
from .selectors import rule_document


def _reserve_versions(count: int) -> list[int]:
    """Raise the override version by `count` and return the new numbers, in order.

    The UPDATE takes the row lock (the write lock on SQLite) that serializes writers.
    """
    OverrideVersion.objects.filter(pk=OverrideVersion.SINGLETON_ID).update(
        value=F("value") + count
    )
    last = OverrideVersion.objects.values_list("value", flat=True).get(
        pk=OverrideVersion.SINGLETON_ID
    )
    return list(range(last - count + 1, last + 1))


def _record_changes(
    changes: list[tuple[str, OverrideRule]], versions: list[int]
) -> None:
    OverrideChange.objects.bulk_create(
        OverrideChange(version=version, action=action, rule=rule_document(rule))
        for version, (action, rule) in zip(versions, changes, strict=True)
    )
    last_version = versions[-1]
    transaction.on_commit(lambda: serving.announce_version(last_version))


def _clean_reason(reason: object) -> str:
    text = reason.strip() if isinstance(reason, str) else ""
    if not text:
        raise ValidationError({"reason": "A reason is required."})
    if len(text) > REASON_MAX_LENGTH:
        raise ValidationError(
            {"reason": f"At most {REASON_MAX_LENGTH} characters (it has {len(text)})."}
        )
    return text


def _validate_scope(surface: str | None, region: str | None) -> None:
    """Management writes accept only configured, active surfaces and regions.

    A code with a null character is unknown without asking: PostgreSQL refuses it
    in a query.
    """
    errors = {}
    for name, model, code in (
        ("surface", Surface, surface),
        ("region", Region, region),
    ):
        if code is None:
            continue
        active = model.objects.filter(is_active=True)
        if "\x00" in code or not active.filter(code=code).exists():
            known = ", ".join(active.values_list("code", flat=True))
            errors[name] = f"Unknown {name} {code!r}. Configured {name}s: {known}."
    if errors:
        raise ValidationError(errors)


def _describe_window(rule: OverrideRule) -> str:
    end = rule.window_end
    until = (
        f"until {timezone.localtime(end):%Y-%m-%d %H:%M %Z}" if end else "with no end"
    )
    return f"from {timezone.localtime(rule.starts_at):%Y-%m-%d %H:%M %Z} {until}"


def _raise_if_overlapping(rule: OverrideRule) -> None:
    kind = type(rule)
    clash = (
        kind.objects.for_scope(rule.surface_id, rule.region_id)
        .filter(item_id=rule.item_id)
        .overlapping(starts_at=rule.starts_at, ends_at=rule.window_end)
        .exclude(pk=rule.pk)
        .first()
    )
    if clash is None:
        return
    noun = kind._meta.verbose_name
    raise ConflictError(
        f"{rule.item_id} already has an open {noun} on {clash.scope_label} "
        f"({noun} #{clash.pk}, {_describe_window(clash)}). "
        f"{'Lift' if kind is Block else 'End'} it first or choose another time window.",
        existing_id=clash.pk,
    )


def _times_in_utc(rule: OverrideRule) -> dict[str, list[str]]:
    """Put the rule's times in UTC, or say why one cannot be (naive, out of range).

    Python compares and subtracts two times of one zone by their wall clocks, which
    is wrong across a DST change (an hour off the boost duration, a window that
    ends "after" it starts but not in the database); in UTC they are instants.
    """
    errors = {}
    for name in ("starts_at", rule.window_end_field):
        value = getattr(rule, name)
        if not isinstance(value, datetime):
            continue
        if timezone.is_naive(value):
            errors[name] = ["Give a time zone, e.g. 2026-11-02T09:30:00Z."]
            continue
        try:
            setattr(rule, name, value.astimezone(UTC))
        except OverflowError:
            errors[name] = ["Out of range: give a time from year 1 to 9999 in UTC."]
    return errors


def _validate_new_rule(rule: OverrideRule, *, now: datetime) -> None:
    """Collect every problem with a new rule into one ValidationError."""
    errors = _times_in_utc(rule)
    unusable_times = bool(errors)
    try:
        _validate_scope(rule.surface_id, rule.region_id)
    except ValidationError as error:
        errors.update(error.message_dict)
    if unusable_times:  # the checks below compare the times
        raise ValidationError(errors)
    try:
        rule.full_clean(exclude=["surface", "region", "created_by"])
    except ValidationError as error:
        for name, messages in error.message_dict.items():
            errors.setdefault(name, []).extend(messages)
    end_field = rule.window_end_field
    if (
        rule.window_end is not None
        and rule.window_end <= now
        and end_field not in errors
    ):
        errors[end_field] = ["The end must be in the future."]
    if errors:
        raise ValidationError(errors)


def _save_with_history(rule: OverrideRule, *, actor, reason: str) -> None:
    rule._history_user = actor
    rule._change_reason = reason
    rule.save()


def _save_new_rule(rule: OverrideRule, *, action: str, versions: list[int]) -> None:
    """Refuse an overlap (409), then save with history and feed the change."""
    _raise_if_overlapping(rule)
    rule.changed_version = versions[0]
    _save_with_history(rule, actor=rule.created_by, reason=rule.reason)
    _record_changes([(action, rule)], versions)


def _prepare_block(
    *,
    item_id: str,
    surface: str | None,
    region: str | None,
    reason: str,
    actor: AbstractBaseUser,
    starts_at: datetime | None,
    expires_at: datetime | None,
    now: datetime,
) -> Block:
    """Build and validate a block without saving it (shared by single and bulk)."""
    block = Block(
        item_id=item_id,
        surface_id=surface or None,
        region_id=region or None,
        reason=reason.strip() if isinstance(reason, str) else reason,
        created_by=actor,
        created_at=now,
        starts_at=starts_at or now,
        expires_at=expires_at,
    )
    _validate_new_rule(block, now=now)
    return block


@transaction.atomic
def block_item(
    *,
    item_id: str,
    surface: str | None,
    region: str | None,
    reason: str,
    actor: AbstractBaseUser,
    starts_at: datetime | None = None,
    expires_at: datetime | None = None,
) -> Block:
    """Stop showing an item in a scope, now or from `starts_at`, until `expires_at`."""
    versions = _reserve_versions(1)
    block = _prepare_block(
        item_id=item_id,
        surface=surface,
        region=region,
        reason=reason,
        actor=actor,
        starts_at=starts_at,
        expires_at=expires_at,
        now=timezone.now(),
    )
    _save_new_rule(block, action=OverrideChange.Action.BLOCK, versions=versions)
    return block


def _withdraw(
    rule: OverrideRule, *, reason: str, actor, action: str, verb: str
) -> None:
    reason = _clean_reason(reason)
    now = timezone.now()
    status = rule.status_at(now)
    if status not in (RuleStatus.ACTIVE, RuleStatus.SCHEDULED):
        noun = rule._meta.verbose_name
        raise ConflictError(
            f"{noun.capitalize()} #{rule.pk} is already "
            f"{RuleStatus(status).label.lower()}; "
            f"there is nothing to {verb}.",
            existing_id=rule.pk,
        )
    versions = _reserve_versions(1)
    rule.withdrawn_at = now
    rule.withdrawn_by = actor
    rule.withdrawal_reason = reason
    rule.changed_version = versions[0]
    _save_with_history(rule, actor=actor, reason=reason)
    _record_changes([(action, rule)], versions)


@transaction.atomic
def lift_block(*, block_id: int, reason: str, actor: AbstractBaseUser) -> Block:
    """Lift an active or scheduled block; the lift is itself a recorded change."""
    block = Block.objects.select_for_update().get(pk=block_id)
    _withdraw(
        block,
        reason=reason,
        actor=actor,
        action=OverrideChange.Action.UNBLOCK,
        verb="lift",
    )
    return block


@transaction.atomic
def boost_create(
    *,
    item_id: str,
    factor: float,
    surface: str | None,
    region: str | None,
    reason: str,
    actor: AbstractBaseUser,
    ends_at: datetime,
    starts_at: datetime | None = None,
) -> Boost:
    """Multiply an item's score by `factor` in a scope for a bounded time."""
    versions = _reserve_versions(1)
    now = timezone.now()
    boost = Boost(
        item_id=item_id,
        factor=factor,
        surface_id=surface or None,
        region_id=region or None,
        reason=reason.strip() if isinstance(reason, str) else reason,
        created_by=actor,
        created_at=now,
        starts_at=starts_at or now,
        ends_at=ends_at,
    )
    _validate_new_rule(boost, now=now)
    _save_new_rule(boost, action=OverrideChange.Action.BOOST, versions=versions)
    return boost


@transaction.atomic
def end_boost(*, boost_id: int, reason: str, actor: AbstractBaseUser) -> Boost:
    """End a running or scheduled boost early; recorded like any other change."""
    boost = Boost.objects.select_for_update().get(pk=boost_id)
    _withdraw(
        boost,
        reason=reason,
        actor=actor,
        action=OverrideChange.Action.UNBOOST,
        verb="end",
    )
    return boost


@transaction.atomic
def record_expired_rules(*, now: datetime | None = None) -> int:
    """Mark rules whose window has passed, so screens and the change feed show it.

    Correctness never depends on this: every read compares times itself.
    """
    now = now or timezone.now()
    pending: list[tuple[str, OverrideRule]] = []
    for model, action in (
        (Block, OverrideChange.Action.UNBLOCK),
        (Boost, OverrideChange.Action.UNBOOST),
    ):
        expired = model.objects.expired(now).filter(expiry_recorded_at__isnull=True)
        pending.extend((action, rule) for rule in expired.select_for_update())
    if not pending:
        return 0
    versions = _reserve_versions(len(pending))
    for (_action, rule), version in zip(pending, versions, strict=True):
        rule.expiry_recorded_at = now
        rule.changed_version = version
        _save_with_history(
            rule,
            actor=None,
            reason=f"Expired at {rule.window_end.isoformat()}",
        )
    _record_changes(pending, versions)
    return len(pending)


@transaction.atomic
def prune_change_log(*, now: datetime | None = None) -> int:
    """Drop change-feed entries past retention; clients that far behind re-snapshot."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.CHANGE_LOG_RETENTION_DAYS)
    latest = (
        OverrideChange.objects.order_by("-version")
        .values_list("version", flat=True)
        .first()
    )
    deleted, _ = (
        OverrideChange.objects.filter(created_at__lt=cutoff)
        .exclude(version=latest)
        .delete()
    )
    return deleted


# Bulk blocking ---------------------------------------------------------------------


@dataclass
class BulkBlockRow:
    """One row of a bulk upload, with what validating it found."""

    line: int
    item_id: str
    surface: str | None = None
    region: str | None = None
    reason: str = ""
    starts_at: datetime | None = None
    expires_at: datetime | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class BulkBlockResult:
    rows: list[BulkBlockRow]
    applied: bool = False
    blocks: list[Block] = field(default_factory=list)

    @property
    def error_count(self) -> int:
        return sum(1 for row in self.rows if row.errors)

    @property
    def is_valid(self) -> bool:
        return bool(self.rows) and self.error_count == 0


def _row_messages(error: ValidationError) -> list[str]:
    return [
        message if name == "non_field_errors" else f"{name}: {message}"
        for name, messages in validation_messages(error).items()
        for message in messages
    ]


def _validate_bulk_rows(
    rows: list[BulkBlockRow], *, actor, now: datetime
) -> list[Block]:
    # An id with a forbidden character is invalid anyway, and some cannot even be
    # sent in a query (NUL for PostgreSQL, a lone surrogate for any database): it is
    # not looked up.
    known_items = set(
        CatalogItem.objects.filter(
            item_id__in=[
                row.item_id
                for row in rows
                if isinstance(row.item_id, str)
                and not FORBIDDEN_CHARACTER.search(row.item_id)
            ]
        ).values_list("item_id", flat=True)
    )
    seen: dict[tuple, int] = {}
    blocks = []
    for row in rows:
        try:
            block = _prepare_block(
                item_id=row.item_id,
                surface=row.surface,
                region=row.region,
                reason=row.reason,
                actor=actor,
                starts_at=row.starts_at,
                expires_at=row.expires_at,
                now=now,
            )
            _raise_if_overlapping(block)
        except ValidationError as error:
            row.errors.extend(_row_messages(error))
            continue
        except ConflictError as error:
            row.errors.append(error.message)
            continue
        key = (block.item_id, block.surface_id, block.region_id)
        if key in seen:
            row.errors.append(f"Same item and scope as line {seen[key]}.")
            continue
        seen[key] = row.line
        if block.item_id not in known_items:
            row.warnings.append("Not in the catalog; it will be blocked anyway.")
        blocks.append(block)
    return blocks


@transaction.atomic
def block_items_in_bulk(
    *, rows: Iterable[BulkBlockRow], actor: AbstractBaseUser, dry_run: bool
) -> BulkBlockResult:
    """Validate every row; unless `dry_run`, apply them all in one transaction, or none.

    The result always carries per-row errors and warnings, so a preview and a refused
    upload explain themselves the same way.
    """
    result = BulkBlockResult(rows=list(rows))
    if not result.rows:
        raise ValidationError({"rows": "There are no rows to block."})
    if len(result.rows) > settings.BULK_MAX_ROWS:
        raise ValidationError(
            {
                "rows": f"At most {settings.BULK_MAX_ROWS} rows at once "
                f"(got {len(result.rows)})."
            }
        )
    versions = [] if dry_run else _reserve_versions(len(result.rows))
    blocks = _validate_bulk_rows(result.rows, actor=actor, now=timezone.now())
    if dry_run or not result.is_valid:
        # Nothing was written but the version bump, which this rollback undoes.
        transaction.set_rollback(True)
        return result
    for block, version in zip(blocks, versions, strict=True):
        block.changed_version = version
        _save_with_history(block, actor=actor, reason=block.reason)
    _record_changes(
        [(OverrideChange.Action.BLOCK, block) for block in blocks], versions
    )
    result.blocks = blocks
    result.applied = True
    return result


# Catalog ---------------------------------------------------------------------------


@dataclass
class CatalogImportResult:
    created: int
    updated: int


@transaction.atomic
def import_catalog(*, rows: Iterable[dict]) -> CatalogImportResult:
    """Insert or update catalog items from parsed CSV rows; a bad row writes nothing."""
    items: dict[str, CatalogItem] = {}
    errors: dict[str, list[str]] = {}
    for line, row in enumerate(rows, start=2):
        item = CatalogItem(
            item_id=(row.get("item_id") or "").strip(),
            title=(row.get("title") or "").strip(),
            category=(row.get("category") or "").strip(),
            created_at=row.get("created"),
        )
        try:
            item.full_clean(validate_unique=False)
        except ValidationError as error:
            errors[f"line {line}"] = _row_messages(error)
            continue
        if item.item_id in items:
            errors[f"line {line}"] = [f"Duplicate item id {item.item_id!r}."]
            continue
        items[item.item_id] = item
    if errors:
        raise ValidationError(errors)
    if not items:
        raise ValidationError({"rows": "The file has no rows."})
    existing = set(
        CatalogItem.objects.filter(item_id__in=items).values_list("item_id", flat=True)
    )
    now = timezone.now()
    for item in items.values():
        item.imported_at = now
    CatalogItem.objects.bulk_create(
        items.values(),
        update_conflicts=True,
        unique_fields=["item_id"],
        update_fields=["title", "category", "created_at", "imported_at"],
        batch_size=1000,
    )
    return CatalogImportResult(
        created=len(items) - len(existing), updated=len(existing)
    )


# Opt-outs --------------------------------------------------------------------------


def _validate_kinds(kinds: object) -> list[str]:
    if not isinstance(kinds, list | tuple) or not kinds:
        raise ValidationError(
            {"kinds": f"Give one or more of: {', '.join(OptOutKind.values)}."}
        )
    unknown = sorted({str(kind) for kind in kinds} - set(OptOutKind.values))
    if unknown:
        raise ValidationError(
            {
                "kinds": f"Unknown kind(s): {', '.join(unknown)}. "
                f"Known: {', '.join(OptOutKind.values)}."
            }
        )
    return sorted(set(kinds))


def validate_source(source: object) -> str:
    """A trimmed, non-empty source (ticket id) of at most 200 characters; shared by
    opt-outs and deletion requests."""
    text = source.strip() if isinstance(source, str) else ""
    if not text:
        raise ValidationError({"source": "Say where this came from, e.g. a ticket id."})
    if len(text) > 200:
        raise ValidationError({"source": "At most 200 characters."})
    return text


@transaction.atomic
def optout_register(
    *, customer_id: str, kinds: list[str], source: str, actor=None
) -> list[OptOut]:
    """Opt a customer out of the given uses; serving sees it on its next request.

    Registering an opt-out that is already active changes nothing (idempotent).
    """
    try:
        customer_hash = hash_customer_id(customer_id)
    except ValidationError as error:
        raise ValidationError({"customer_id": error.messages}) from error
    kinds = _validate_kinds(kinds)
    source = validate_source(source)
    active = set(
        OptOut.objects.select_for_update()
        .filter(customer_hash=customer_hash, withdrawn_at__isnull=True)
        .values_list("kind", flat=True)
    )
    created = []
    for kind in kinds:
        if kind in active:
            continue
        optout = OptOut(
            customer_hash=customer_hash, kind=kind, source=source, created_by=actor
        )
        optout._history_user = actor
        optout._change_reason = source
        optout.save()
        created.append(optout)
    new_kinds = [optout.kind for optout in created]
    if new_kinds:
        # Into the serving copy before commit (fail closed) and again after it.
        optout_mirror.add(customer_hash, new_kinds)
        transaction.on_commit(lambda: optout_mirror.add(customer_hash, new_kinds))
    return created


@transaction.atomic
def optout_withdraw(
    *, customer_id: str, kinds: list[str], source: str, actor=None
) -> list[OptOut]:
    """Withdraw active opt-outs of these kinds; the records stay, marked withdrawn."""
    try:
        customer_hash = hash_customer_id(customer_id)
    except ValidationError as error:
        raise ValidationError({"customer_id": error.messages}) from error
    kinds = _validate_kinds(kinds)
    source = validate_source(source)
    withdrawn = []
    now = timezone.now()
    for optout in OptOut.objects.select_for_update().filter(
        customer_hash=customer_hash, kind__in=kinds, withdrawn_at__isnull=True
    ):
        optout.withdrawn_at = now
        optout.withdrawn_by = actor
        optout.withdrawal_source = source
        optout._history_user = actor
        optout._change_reason = source
        optout.save()
        withdrawn.append(optout)
    gone = [optout.kind for optout in withdrawn]
    if gone:
        transaction.on_commit(lambda: optout_mirror.remove(customer_hash, gone))
    return withdrawn


# Serving instances -----------------------------------------------------------------


def record_heartbeat(*, instance: str, version: int, api_key=None) -> ServingInstance:
    """Remember which override version a serving instance runs, and when it said so."""
    errors = {}
    try:
        validate_item_id(instance)
    except ValidationError as error:
        errors["instance"] = [
            message.replace("Item id", "Instance name") for message in error.messages
        ]
    if (
        isinstance(version, bool)
        or not isinstance(version, int)
        or not 0 <= version <= MAX_VERSION
    ):
        errors["version"] = [f"A whole number from 0 to {MAX_VERSION}."]
    if errors:
        raise ValidationError(errors)
    serving_instance, _ = ServingInstance.objects.update_or_create(
        name=instance,
        defaults={
            "version": version,
            "last_seen_at": timezone.now(),
            "api_key": api_key,
        },
    )
    return serving_instance
